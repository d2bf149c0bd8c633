#!/usr/bin/env bash
# The next point of bench/survey_residual_data_scaling.sh: the pipeline's
# `finetune-classify` step (pipelines/survey-residual.toml, the same arguments) on
# 36,000 blind-fit residuals, the pipeline's seeds 27 and 28 and two seeds no other
# step uses (29 and 30, 3,000 a class each), scored on the pipeline's held-out
# residuals (seed 22) with `evaluate`, and paired (bench/paired_auc.py) against the
# pipeline's own 18,000-lens classifier before calibration (`$RUN/classifier.safetensors`,
# the shipped model's tensors before `model calibrate`), overall and on the goal subset.
#
#   PY=.venv/bin/python [RUN=runs/survey-residual] bench/survey_residual_36000.sh [OUT_DIR]
#
# CONFIG=pipelines/models/<network>.json trains another network (a ViT encoder, or the
# ResNet of pipelines/models/resnet18-w16.json) on the same lenses, split and training
# seed, as `$OUT/<network>.safetensors`, and pairs it against the pipeline's model and
# against the default encoder's 36,000-lens model when that exists.
#
# Needs `lensmae run pipelines/survey-residual.toml` first. About 110 minutes on 2
# cores: the blind fits of 18,000 lenses (~0.22 s of the two cores each) and 30-40
# minutes of training. PY needs numpy, pyarrow and scikit-learn.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/survey-residual}
OUT=${1:-runs/survey-residual-36k}
PY=${PY:-python}
B=${LENSMAE:-./target/release/lensmae}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae
mkdir -p "$OUT"
HELDOUT="$RUN/heldout-residuals/dataset.parquet"
for seed in 29 30; do
    [ -f "$OUT/train-s$seed/dataset.parquet" ] || /usr/bin/time -f "fits of seed $seed: %e s" $B simulate \
        --preset survey --n-per-class 3000 --seed $seed --smooth-lens-residuals --out "$OUT/train-s$seed" \
        --overwrite --quiet
done
DEFAULT_CONFIG=pipelines/models/vit-w64-d4-p4.json
CONFIG=${CONFIG:-$DEFAULT_CONFIG}
NAME=n36000
[ "$CONFIG" = "$DEFAULT_CONFIG" ] || NAME=$(basename "$CONFIG" .json)
# A ViT's head reads the mean patch token; a ResNet (a config naming its `width`) pools globally.
POOLING=(--pooling mean)
grep -q '"width"' "$CONFIG" && POOLING=()
[ -f "$OUT/$NAME.safetensors" ] || /usr/bin/time -f "training $NAME on 36000: %e s" $B finetune --task classify \
    --data "$RUN/train-s27/dataset.parquet" "$RUN/train-s28/dataset.parquet" \
    "$OUT/train-s29/dataset.parquet" "$OUT/train-s30/dataset.parquet" \
    --scratch --model "$CONFIG" --scaling noise-asinh "${POOLING[@]}" --augment dihedral \
    --epochs 20 --batch-size 64 --lr 1e-3 --seed 42 --out "$OUT/$NAME.safetensors" --overwrite > "$OUT/$NAME.log" 2>&1
echo "== $NAME, 36000 lenses: $(grep -E '^best epoch|^test:' "$OUT/$NAME.log" | tr '\n' ' ')"
for name in "$NAME" n18000; do
    model="$OUT/$name.safetensors"
    [ "$name" = n18000 ] && model="$RUN/classifier.safetensors"
    echo "== $name on the held-out"
    $B evaluate --model "$model" --input "$HELDOUT" --report "$OUT/$name-heldout.json" --overwrite 2>&1 >/dev/null \
        | grep -E "macro AUC|domain|sub_snr >= 10"
    $B predict --input "$HELDOUT" --model "$model" --keep id --out "$OUT/$name-heldout.parquet" --overwrite \
        > /dev/null 2>&1
done
others=(n18000)
[ "$NAME" != n36000 ] && [ -f "$OUT/n36000-heldout.parquet" ] && others+=(n36000)
for other in "${others[@]}"; do
    for flag in "" --goal; do
        echo "$NAME against $other, ${flag:-all}: $($PY bench/paired_auc.py "$HELDOUT" $NAME="$OUT/$NAME-heldout.parquet" \
            $other="$OUT/$other-heldout.parquet" $flag | tr -d '\n ')"
    done
done
