#!/usr/bin/env bash
# The DeepLense papers' baseline on the residual classifier's own data: a ResNet-18
# trained in PyTorch (bench/resnet18_baseline.py) on the blind-fit residuals the
# pipeline's `finetune-classify` step trained on (pipelines/survey-residual.toml,
# seeds 27 and 28 joined), with that step's train / validation / test rows
# (`$RUN/classifier.split.json`) and its epochs, scored on the pipeline's held-out
# residuals (seed 22) through `lensmae evaluate --predictions` (the same report as the
# ViT's), and paired (bench/paired_auc.py) against the shipped ViT
# (`bundled:survey-residual-classifier`) on the same rows, overall and on the goal subset.
#
#   TORCH_PY=.venv-torch/bin/python PY=.venv/bin/python [RUN=runs/survey-residual] \
#       [EPOCHS=20] [DATA=a.parquet,b.parquet SPLIT=x.split.json MODEL=x.safetensors] \
#       [WIDTH=64] bench/survey_residual_resnet.sh [OUT_DIR]
#
# DATA, SPLIT and MODEL train on another run's datasets and split (e.g. the 36,000 lenses
# of bench/survey_residual_36000.sh) and pair against that run's ViT. WIDTH gives the
# ResNet's first stage that many channels (bench/resnet18_baseline.py --width); another
# width than 64 writes its files as resnet18-w<WIDTH>*.
#
# Needs `lensmae run pipelines/survey-residual.toml` first. TORCH_PY needs
# bench/requirements-torch.txt; PY numpy, pyarrow and scikit-learn. About 40 minutes
# on 2 cores for 20 epochs.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/survey-residual}
OUT=${1:-$RUN/resnet}
PY=${PY:-python}
TORCH_PY=${TORCH_PY:-$PY}
EPOCHS=${EPOCHS:-20}
WIDTH=${WIDTH:-64}
NAME=resnet18
[ "$WIDTH" = 64 ] || NAME=resnet18-w$WIDTH
MODEL=${MODEL:-bundled:survey-residual-classifier}
B=${LENSMAE:-./target/release/lensmae}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae
mkdir -p "$OUT"
HELDOUT="$RUN/heldout-residuals/dataset.parquet"
TRAIN=${DATA:-$RUN/train-s27/dataset.parquet,$RUN/train-s28/dataset.parquet}
SPLIT=${SPLIT:-$RUN/classifier.split.json}

/usr/bin/time -f "ResNet-18 of width $WIDTH, $EPOCHS epochs: %e s" "$TORCH_PY" bench/resnet18_baseline.py "$TRAIN" \
    "$SPLIT" "$OUT/$NAME.json" "$EPOCHS" "$HELDOUT" "$OUT/$NAME-heldout.parquet" --width "$WIDTH"
$B predict --input "$HELDOUT" --model "$MODEL" --keep id --out "$OUT/vit-heldout.parquet" --overwrite > /dev/null 2>&1
for name in "$NAME" vit; do
    echo "== $name on the held-out"
    $B evaluate --predictions "$OUT/$name-heldout.parquet" --input "$HELDOUT" --report "$OUT/$name-heldout-report.json" \
        --overwrite 2>&1 >/dev/null | grep -E "macro AUC|sub_snr >= 10"
done
for flag in "" --goal; do
    echo "ViT against $NAME, ${flag:-all}: $($PY bench/paired_auc.py "$HELDOUT" vit="$OUT/vit-heldout.parquet" \
        $NAME="$OUT/$NAME-heldout.parquet" $flag | tr -d '\n ')"
done
