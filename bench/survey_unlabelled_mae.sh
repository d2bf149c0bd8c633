#!/usr/bin/env bash
# Does the survey classifier's MAE gain from lenses nobody labelled? The MAE of
# `pipelines/survey.toml` (4x4-patch ViT, antisymmetric-asinh, mask 0.75) pretrained
# instead on N_PER_CLASS x 3 other survey lenses (seed 23, labels unused) for
# MAE_EPOCHS epochs, then fine-tuned exactly as the pipeline fine-tunes
# `bundled:survey-classifier` (the same 24,000 training lenses, seed 21, 20 epochs),
# and compared on the pipeline's held-out lenses (seed 22) with the shipped model and
# the ResNet-18 by a paired bootstrap (bench/paired_auc.py).
#
#   [N_PER_CLASS=32000] [MAE_EPOCHS=25] [PYTHON=python3] bench/survey_unlabelled_mae.sh [OUT_DIR]
#
# The defaults give the MAE the pipeline's compute (2.4 million image passes: 100
# epochs of 24,000) on four times as many lenses, each seen a quarter as often.
# Needs runs/survey/{train,heldout}/dataset.parquet (`lensmae run pipelines/survey.toml`)
# and, for the comparison, runs/survey/survey-classifier-heldout-predictions.parquet and
# runs/resnet/resnet18-heldout.parquet (RESULTS.md says how they were made); PYTHON
# needs numpy, pyarrow and scikit-learn.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/survey-unlabelled-mae}
N=${N_PER_CLASS:-32000}
EPOCHS=${MAE_EPOCHS:-25}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
cargo build --release --quiet --bin lensmae
B=./target/release/lensmae
TRAIN=runs/survey/train/dataset.parquet
HELDOUT=runs/survey/heldout/dataset.parquet
SCALE=(--scaling antisymmetric-asinh --batch-size 64 --seed 42 --overwrite)
$B simulate --preset survey --n-per-class "$N" --seed 23 --out "$OUT/unlabelled" --overwrite --quiet
$B pretrain --data "$OUT/unlabelled/dataset.parquet" --model pipelines/models/vit-w64-d2-p4.json "${SCALE[@]}" \
    --mask-ratio 0.75 --epochs "$EPOCHS" --lr 1.5e-3 --out "$OUT/mae.safetensors" 2>&1 | tail -2
$B finetune --task classify --data "$TRAIN" --init "$OUT/mae.safetensors" "${SCALE[@]}" --pooling mean \
    --augment dihedral --epochs 20 --lr 1e-3 --out "$OUT/classifier.safetensors" 2>&1 | tail -2
$B evaluate --model "$OUT/classifier.safetensors" --input "$HELDOUT" --report "$OUT/classifier-heldout.json" \
    --overwrite 2>&1 | grep -E '^macro AUC|^in the|^ECE' || true
$B predict --model "$OUT/classifier.safetensors" --input "$HELDOUT" --keep id --out "$OUT/heldout-predictions.parquet" \
    --overwrite
"$PYTHON" bench/paired_auc.py "$HELDOUT" unlabelled-mae="$OUT/heldout-predictions.parquet" \
    bundled=runs/survey/survey-classifier-heldout-predictions.parquet
"$PYTHON" bench/paired_auc.py "$HELDOUT" unlabelled-mae="$OUT/heldout-predictions.parquet" \
    resnet18=runs/resnet/resnet18-heldout.parquet
