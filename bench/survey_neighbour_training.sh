#!/usr/bin/env bash
# Does training with neighbours in the cutouts mend what a neighbour costs the survey
# classifier (RESULTS.md, "A neighbour in the cutout")? Fine-tunes the survey pipeline's
# MAE (`pipelines/survey.toml`'s `pretrain` output, MAE_INIT) with the bundled recipe's
# settings on its own training lenses (seed 21, 8,000 a class) of which half carry one
# neighbour (bench/survey_neighbours.py `mixed 0.5`: a galaxy (70%) or a star of
# magnitude 18-24, 2-3" out), then scores it on the held-out lenses with and without a
# neighbour as bench/survey_neighbours.sh does for the bundled model. NEIGHBOURS=simulator
# renders the training set's neighbours in the simulator instead
# (`pipelines/recipes/survey-neighbours.toml`: the survey preset with a `[neighbour]` table
# of the same mixture; galaxies' e1, e2 uniform in +-0.2).
#
#   PY=.venv/bin/python [NEIGHBOURS=pasted|simulator] bench/survey_neighbour_training.sh [OUT_DIR] [MAE_INIT] [MAG...]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/survey-neighbour-train}
MAE_INIT=${2:-runs/survey/mae.safetensors}
shift 2 || shift $#
MAGS=("$@")
[ ${#MAGS[@]} -gt 0 ] || MAGS=(24 22 20 18)
PY=${PY:-python}
B=${LENSMAE:-./target/release/lensmae}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae
mkdir -p "$OUT"
if [ "${NEIGHBOURS:-pasted}" = simulator ]; then
    [ -f "$OUT/mixed/dataset.parquet" ] || $B simulate --config pipelines/recipes/survey-neighbours.toml \
        --n-per-class 8000 --seed 21 --out "$OUT/mixed" --overwrite --quiet
    ln -sf mixed/dataset.parquet "$OUT/mixed.parquet"
else
    [ -f "$OUT/clean/dataset.parquet" ] || $B simulate --preset survey --n-per-class 8000 --seed 21 \
        --out "$OUT/clean" --overwrite --quiet
    [ -f "$OUT/mixed.parquet" ] || $PY bench/survey_neighbours.py "$OUT/clean/dataset.parquet" "$OUT/mixed.parquet" mixed 0.5 1
fi
[ -f "$OUT/classifier.safetensors" ] || $B finetune --task classify --data "$OUT/mixed.parquet" --init "$MAE_INIT" \
    --scaling antisymmetric-asinh --pooling mean --augment dihedral --layer-decay 0.75 --epochs 20 --batch-size 64 \
    --lr 1e-3 --seed 42 --out "$OUT/classifier.safetensors" --overwrite
LENSMAE=$B PY=$PY bench/survey_neighbours.sh "$OUT/scores" "$OUT/classifier.safetensors" "${MAGS[@]}"
