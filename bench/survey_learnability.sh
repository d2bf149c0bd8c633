#!/usr/bin/env bash
# Can a small ViT tell `axion` from `no_sub` on survey lenses? Three settings on the
# same 6,000 lenses (seed 31), 10 epochs from scratch, as RESULTS.md reports them
# (test-split macro AUC printed by each `finetune`).
#
#   bench/survey_learnability.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/survey-learnability}
cargo build --release --quiet --bin lensmae
B=./target/release/lensmae
M=pipelines/models/vit-w64-d4-p8.json
$B simulate --preset survey --classes axion,no_sub --n-per-class 3000 --seed 31 --out "$OUT/data" --overwrite --quiet
common=(finetune --task classify --scratch --data "$OUT/data/dataset.parquet" --model "$M" --epochs 10 --batch-size 64)
echo "A: noise-asinh, mean pooling, dihedral, lr 1e-3"
$B "${common[@]}" --scaling noise-asinh --pooling mean --augment dihedral --lr 1e-3 --out "$OUT/A.safetensors" 2>&1 | tail -1
echo "B: min-max + per-pixel standardisation, flatten head, no augmentation, lr 1e-3"
$B "${common[@]}" --scaling minmax --standardise-pixels --pooling flatten --augment none --lr 1e-3 --out "$OUT/B.safetensors" 2>&1 | tail -1
echo "C: noise-asinh, flatten head, no augmentation, lr 3e-4"
$B "${common[@]}" --scaling noise-asinh --pooling flatten --augment none --lr 3e-4 --out "$OUT/C.safetensors" 2>&1 | tail -1
