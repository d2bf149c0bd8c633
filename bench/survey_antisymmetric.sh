#!/usr/bin/env bash
# `pipelines/survey.toml`'s three-class classifiers (MAE-initialised and from
# scratch) again with `--scaling antisymmetric-asinh`: the same training lenses
# (seed 21), model, epochs and seeds, only the inputs' scaling changed; evaluated on
# the pipeline's held-out lenses (seed 22, with sub_snr_refit).
#
#   [MODEL=model.json] [RUNS="classifier scratch"] [MAE_EPOCHS=6] bench/survey_antisymmetric.sh [OUT_DIR]
#
# MODEL defaults to the pipeline's `vit-w64-d4-p8`; RUNS picks the MAE-initialised
# (`classifier`) and/or the from-scratch (`scratch`) model; MAE_EPOCHS the MAE's
# pretraining epochs. RESULTS.md also quotes MODEL=pipelines/models/vit-w64-d2-p4.json
# RUNS=classifier (4x4 patches, depth 2), with MAE_EPOCHS 6 and 30.
#
# Needs runs/survey/{train,heldout}/dataset.parquet (`lensmae run pipelines/survey.toml`).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/survey-antisymmetric}
mkdir -p "$OUT"
cargo build --release --quiet --bin lensmae
B=./target/release/lensmae
M=${MODEL:-pipelines/models/vit-w64-d4-p8.json}
RUNS=${RUNS:-"classifier scratch"}
TRAIN=runs/survey/train/dataset.parquet
HELDOUT=runs/survey/heldout/dataset.parquet
COMMON=(--data "$TRAIN" --scaling antisymmetric-asinh --batch-size 64 --seed 42 --overwrite)
CLASSIFY=(--task classify --pooling mean --augment dihedral --epochs 20 --lr 1e-3)
for name in $RUNS; do
    case $name in
    classifier)
        $B pretrain "${COMMON[@]}" --model "$M" --mask-ratio 0.75 --epochs "${MAE_EPOCHS:-6}" --lr 1.5e-3 \
            --out "$OUT/mae.safetensors" 2>&1 | tail -1
        $B finetune "${COMMON[@]}" "${CLASSIFY[@]}" --init "$OUT/mae.safetensors" \
            --out "$OUT/classifier.safetensors" 2>&1 | tail -1 ;;
    scratch)
        $B finetune "${COMMON[@]}" "${CLASSIFY[@]}" --scratch --model "$M" --out "$OUT/scratch.safetensors" \
            2>&1 | tail -1 ;;
    *) echo "unknown run '$name' in RUNS (classifier, scratch)" >&2; exit 2 ;;
    esac
done
for name in $RUNS; do
    echo "== $name on the held-out lenses =="
    $B evaluate --model "$OUT/$name.safetensors" --input "$HELDOUT" --report "$OUT/$name-heldout.json" --overwrite \
        2>&1 | grep -E '^macro AUC|^in the|^sub_snr_refit'
done
