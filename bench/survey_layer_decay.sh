#!/usr/bin/env bash
# MAE's layer-wise learning-rate decay in the survey classifier's fine-tuning: the
# pipeline's MAE (`runs/survey/mae.safetensors`, the `pretrain` step of
# `pipelines/survey.toml`) fine-tuned exactly as its `finetune-classify` step does,
# with `--layer-decay DECAY` added, then scored on the held-out lenses (seed 22) with
# one view and with the 8 turned views, against the shipped model and the ResNet-18
# of bench/survey_tta.sh by a paired bootstrap (bench/paired_auc.py).
#
#   [DECAY=0.75] [PYTHON=python3] bench/survey_layer_decay.sh [OUT_DIR]
#
# Needs runs/survey/{train,heldout}/dataset.parquet and runs/survey/mae.safetensors
# (the pipeline's `simulate-train`, `simulate-heldout` and `pretrain` steps: `lensmae
# run pipelines/survey.toml`, or those steps' commands as `--dry-run` prints them),
# and runs/survey-tta/ from bench/survey_tta.sh for the comparisons. The fine-tuning
# takes ~10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/survey-layer-decay}
DECAY=${DECAY:-0.75}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
cargo build --release --quiet --bin lensmae
B=./target/release/lensmae
source bench/score_views.sh
TRAIN=runs/survey/train/dataset.parquet
HELDOUT=runs/survey/heldout/dataset.parquet
CLF="$OUT/classifier-$DECAY.safetensors"
$B finetune --task classify --data "$TRAIN" --init runs/survey/mae.safetensors --scaling antisymmetric-asinh \
    --pooling mean --augment dihedral --epochs 20 --batch-size 64 --lr 1e-3 --seed 42 --layer-decay "$DECAY" \
    --out "$CLF" --overwrite 2>&1 | tail -2
score_views "$CLF" "$HELDOUT" "$OUT/classifier-$DECAY"
compare() { "$PYTHON" bench/paired_auc.py "$HELDOUT" "$@"; }
compare layer-decay="$OUT/classifier-$DECAY-none.parquet" bundled=runs/survey-tta/survey-classifier-none.parquet
compare layer-decay-tta="$OUT/classifier-$DECAY-dihedral.parquet" \
    bundled-tta=runs/survey-tta/survey-classifier-dihedral.parquet
compare layer-decay="$OUT/classifier-$DECAY-none.parquet" resnet=runs/survey-tta/resnet18-heldout.parquet
compare layer-decay-tta="$OUT/classifier-$DECAY-dihedral.parquet" resnet-tta=runs/survey-tta/resnet18-heldout.tta.parquet
