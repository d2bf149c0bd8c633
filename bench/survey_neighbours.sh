#!/usr/bin/env bash
# A neighbouring galaxy or star in the cutout: does the survey classifier still answer as
# on the lens alone, and when does it say the cutout is out of its domain? Adds one
# neighbour 2-3" from the centre (bench/survey_neighbours.py) to every held-out lens of
# `pipelines/survey.toml` (seed 22, 1,000 a class, rendered here) and predicts them with
# MODEL; then the galaxies again with the pixels they light flagged and zeroed
# (`--nan-policy zero`), as a segmentation map lets one. Each line: macro AUC, the goal
# subset's, the fraction in the model's domain and those rows' macro AUC.
#
#   PY=.venv/bin/python bench/survey_neighbours.sh [OUT_DIR] [MODEL] [MAG...]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/survey-neighbours}
MODEL=${2:-bundled:survey-classifier}
shift 2 || shift $#
MAGS=("$@")
[ ${#MAGS[@]} -gt 0 ] || MAGS=(24 22 21 20 19 18)
PY=${PY:-python}
mkdir -p "$OUT"
B=${LENSMAE:-./target/release/lensmae}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae
[ -f "$OUT/lenses/dataset.parquet" ] || $B simulate --preset survey --n-per-class 1000 --seed 22 \
    --out "$OUT/lenses" --overwrite --quiet

# predict_and_score NAME DATA [PREDICT_OPTION...]
predict_and_score() {
    $B predict --input "$2" --model "$MODEL" --keep id --out "$OUT/$1-pred.parquet" --overwrite "${@:3}" > /dev/null
    echo "$1: $($B evaluate --predictions "$OUT/$1-pred.parquet" --input "$2" 2>/dev/null | $PY bench/report_line.py)"
}

predict_and_score "no neighbour" "$OUT/lenses/dataset.parquet"
for kind in galaxy star; do
    for mag in "${MAGS[@]}"; do
        $PY bench/survey_neighbours.py "$OUT/lenses/dataset.parquet" "$OUT/$kind-$mag.parquet" "$kind" "$mag"
        predict_and_score "$kind of magnitude $mag" "$OUT/$kind-$mag.parquet"
    done
done
for mag in "${MAGS[@]}"; do
    $PY bench/survey_neighbours.py "$OUT/lenses/dataset.parquet" "$OUT/galaxy-masked-$mag.parquet" galaxy-masked "$mag"
    predict_and_score "galaxy of magnitude $mag, its pixels flagged" "$OUT/galaxy-masked-$mag.parquet" --nan-policy zero
done
