#!/usr/bin/env bash
# Does a classifier of smooth-lens residuals gain from knowing where the arcs are?
# A residual (data - fit) / sigma is noise of unit variance everywhere, so the model
# cannot tell a fluctuation on an arc, where substructure acts, from one in empty sky.
# This probe keeps only the residual pixels where the fitted lensed source (without
# the deflector's light) is brighter than F of its peak (`examples/residual_probe.rs`
# with ARC_MASK=F), and trains the pipeline's `finetune-classify` step (the small ViT
# from scratch, 20 epochs, seed 42) on the masked and on the plain residuals of the
# same fits. Fits start at the drawn smooth lens with its light as drawn (the probe's
# upper bound, cheap: ~0.05 s of a core a lens), on the first 9,000 lenses of the
# survey pipeline's training set (seed 21) and its held-out (seed 22, 3,000).
#
#   PY=.venv/bin/python [ARC_FILL=checker] bench/survey_arc_mask.sh OUT_DIR [F ...]     (F default 0.02)
#
# Masked pixels are 0, which makes `noise-asinh`'s sigma, estimated from the image,
# collapse; with ARC_FILL=checker they are a checkerboard of +-0.477 instead, which
# gives the estimate what unit noise gives (the probe's doc says why).
#
# Then `evaluate` of each on its own held-out (macro AUC, the goal subset) and a
# paired bootstrap (bench/paired_auc.py) of each masked model against the plain one.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?OUT_DIR}
shift
FRACTIONS=("$@")
[ ${#FRACTIONS[@]} -gt 0 ] || FRACTIONS=(0.02)
PY=${PY:-python}
B=${LENSMAE:-./target/release/lensmae}
PROBE=${PROBE:-./target/release/examples/residual_probe}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae --example residual_probe
mkdir -p "$OUT"
common=(--task classify --scratch --model pipelines/models/vit-w64-d4-p4.json --scaling noise-asinh --pooling mean
    --augment dihedral --epochs 20 --batch-size 64 --lr 1e-3 --seed 42 --overwrite)
for variant in plain "${FRACTIONS[@]}"; do
    mask=()
    [ "$variant" = plain ] || mask=(env ARC_MASK="$variant")
    for part in "3000 21 train" "1000 22 heldout"; do
        set -- $part
        dir="$OUT/$variant-$3"
        [ -f "$dir/dataset.parquet" ] || { /usr/bin/time -f "$variant $3 fits: %e s" "${mask[@]}" "$PROBE" "$1" "$2" \
            "$dir" > /dev/null 2> "$dir.log" || { tail -3 "$dir.log"; exit 1; }; tail -1 "$dir.log"; }
    done
    [ -f "$OUT/$variant.safetensors" ] || /usr/bin/time -f "$variant training: %e s" $B finetune "${common[@]}" \
        --data "$OUT/$variant-train/dataset.parquet" --out "$OUT/$variant.safetensors" > "$OUT/$variant.log" 2>&1
    echo "== $variant: $(grep -E '^best epoch|^test:' "$OUT/$variant.log" | tr '\n' ' ')"
    $B evaluate --model "$OUT/$variant.safetensors" --input "$OUT/$variant-heldout/dataset.parquet" \
        --report "$OUT/$variant-heldout.json" --overwrite 2>&1 >/dev/null | sed -n 1,3p
    $B predict --input "$OUT/$variant-heldout/dataset.parquet" --model "$OUT/$variant.safetensors" --keep id \
        --out "$OUT/$variant-heldout.parquet" --overwrite > /dev/null 2>&1
done
for variant in "${FRACTIONS[@]}"; do
    for flag in "" --goal; do
        echo "arcs $variant against plain, ${flag:-all}: $($PY bench/paired_auc.py "$OUT/plain-heldout/dataset.parquet" \
            "arcs$variant=$OUT/$variant-heldout.parquet" plain="$OUT/plain-heldout.parquet" $flag | tr -d '\n ')"
    done
done
