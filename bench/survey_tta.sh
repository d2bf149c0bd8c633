#!/usr/bin/env bash
# Does averaging over the 8 turns and mirrors of each cutout (`--tta dihedral`) help
# the survey classifiers? `bundled:survey-classifier` and the ResNet-18 baseline
# (bench/resnet18_baseline.py, the same training lenses and split) each scored on
# the held-out lenses of `pipelines/survey.toml` (seed 22) with one view and with
# the eight, compared by a paired bootstrap (bench/paired_auc.py).
#
#   [PYTHON=python3] [EPOCHS=10] bench/survey_tta.sh [OUT_DIR]
#
# Makes what is missing of runs/survey/{train,heldout}/dataset.parquet (the
# pipeline's `simulate-train` and `simulate-heldout` steps) and of the pipeline's
# split (`runs/survey/classifier.split.json`, written by a one-epoch fine-tuning with
# the pipeline's seed, which splits as the 20-epoch one does). PYTHON needs torch,
# numpy, pyarrow and scikit-learn (bench/requirements-torch.txt); the ResNet-18
# trains for EPOCHS epochs on the 2 cores (~15-30 min), the rest takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/survey-tta}
PYTHON=${PYTHON:-python3}
EPOCHS=${EPOCHS:-10}
mkdir -p "$OUT"
cargo build --release --quiet --bin lensmae
B=./target/release/lensmae
source bench/score_views.sh
TRAIN=runs/survey/train/dataset.parquet
HELDOUT=runs/survey/heldout/dataset.parquet
SPLIT=runs/survey/classifier.split.json
[ -f "$TRAIN" ] || $B simulate --preset survey --n-per-class 8000 --seed 21 --out runs/survey/train --overwrite --quiet
[ -f "$HELDOUT" ] || $B simulate --preset survey --n-per-class 1000 --seed 22 --refit-detectability \
    --out runs/survey/heldout --overwrite --quiet
if [ ! -f "$SPLIT" ]; then
    $B finetune --task classify --data "$TRAIN" --scratch --model pipelines/models/vit-w64-d2-p4.json \
        --scaling antisymmetric-asinh --pooling mean --augment dihedral --epochs 1 --batch-size 64 --lr 1e-3 \
        --seed 42 --out "$OUT/split-only.safetensors" --overwrite 2>&1 | tail -1
    cp "$OUT/split-only.split.json" "$SPLIT"
fi

score_views bundled:survey-classifier "$HELDOUT" "$OUT/survey-classifier"

RESNET="$OUT/resnet18-heldout.parquet"
if [ ! -f "${RESNET%.parquet}.tta.parquet" ]; then
    "$PYTHON" bench/resnet18_baseline.py "$TRAIN" "$SPLIT" "$OUT/resnet18.json" "$EPOCHS" "$HELDOUT" "$RESNET" --tta \
        | tail -1
fi

# The baseline's probabilities through the ViT's report (ECE, bins), then one table.
for preds in "$RESNET" "${RESNET%.parquet}.tta.parquet"; do
    $B evaluate --predictions "$preds" --input "$HELDOUT" --report "${preds%.parquet}-report.json" --overwrite \
        2>&1 | grep -E '^macro AUC|^sub_snr(_refit)? >= ' || true
done
"$PYTHON" bench/compare_reports.py vit="$OUT/survey-classifier-none.json" vit-tta="$OUT/survey-classifier-dihedral.json" \
    resnet="${RESNET%.parquet}-report.json" resnet-tta="${RESNET%.parquet}.tta-report.json"

compare() { "$PYTHON" bench/paired_auc.py "$HELDOUT" "$@"; }
compare vit-tta="$OUT/survey-classifier-dihedral.parquet" vit="$OUT/survey-classifier-none.parquet"
compare resnet-tta="${RESNET%.parquet}.tta.parquet" resnet="$RESNET"
compare vit-tta="$OUT/survey-classifier-dihedral.parquet" resnet-tta="${RESNET%.parquet}.tta.parquet"
compare vit="$OUT/survey-classifier-none.parquet" resnet="$RESNET"

# The same ViT from scratch (the pipeline's `finetune-scratch` step, when it has run):
# what the MAE is worth.
if [ -f runs/survey/scratch.safetensors ]; then
    $B predict --model runs/survey/scratch.safetensors --input "$HELDOUT" --keep id --out "$OUT/scratch-none.parquet" \
        --overwrite > /dev/null
    compare vit="$OUT/survey-classifier-none.parquet" scratch="$OUT/scratch-none.parquet"
fi
