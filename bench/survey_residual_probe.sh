#!/usr/bin/env bash
# Would a classifier see more substructure once the smooth lens is fitted? For survey
# lenses of the pipeline's seeds, examples/residual_probe.rs fits the smooth lens (SIE +
# shear) and the Sersic source to each noisy cutout and writes the residual (data - fit)
# / sigma as the row's image: from the drawn smooth lens (the deflector's light as
# drawn; an upper bound), from that start displaced by a rough first guess, and from the
# cutout alone (the light fitted too). The small ViT of pipelines/survey.toml
# (`vit-w64-d4-p4`) is trained from scratch on the training lenses' residuals (seed 21,
# 3,000 a class: the first 9,000 lenses of the pipeline's training set) and evaluated on
# the held-out lenses' (seed 22: the pipeline's held-out lenses, or their first 1,500
# for the blind fit), and, where LENSTRONOMY_LENSES exists (bench/survey_second_simulator.sh
# writes it), on the blind fits of the first 1,500 of lenstronomy's lenses.
# bench/residual_chi2.py adds the detection AUC of the fit's chi^2 alone and of the
# shipped classifier on the same lenses.
#
#   PY=.venv/bin/python [LENSTRONOMY_LENSES=runs/lenstronomy-survey/lens-1000-7.parquet] \
#       bench/survey_residual_probe.sh [OUT_DIR]
#
# PY needs numpy, pyarrow and scikit-learn. About 2 h on 2 cores (the blind fits ~1 s
# a lens, the ViT's 20 epochs ~15 min).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/residual}
PY=${PY:-python}
B=${LENSMAE:-./target/release/lensmae}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae
cargo build --release --quiet --example residual_probe
P=target/release/examples/residual_probe
mkdir -p "$OUT"

[ -f "$OUT/train/dataset.parquet" ] || $P 3000 21 "$OUT/train"
[ -f "$OUT/heldout/dataset.parquet" ] || $P 1000 22 "$OUT/heldout"
[ -f "$OUT/heldout-j1/dataset.parquet" ] || $P 1000 22 "$OUT/heldout-j1" 1
[ -f "$OUT/heldout-blind/dataset.parquet" ] || $P 500 22 "$OUT/heldout-blind" blind
LENSES=${LENSTRONOMY_LENSES:-runs/lenstronomy-survey/lens-1000-7.parquet}
SETS=(heldout heldout-j1 heldout-blind)
if [ -f "$LENSES" ]; then
    [ -f "$OUT/lenstronomy-blind/dataset.parquet" ] || $P --input "$LENSES" 500 0 "$OUT/lenstronomy-blind" blind
    SETS+=(lenstronomy-blind)
fi

[ -f "$OUT/vit.safetensors" ] || $B finetune --task classify --data "$OUT/train/dataset.parquet" --scratch \
    --model pipelines/models/vit-w64-d4-p4.json --scaling noise-asinh --pooling mean --augment dihedral \
    --epochs 20 --batch-size 64 --lr 1e-3 --seed 42 --out "$OUT/vit.safetensors" --overwrite

# The shipped classifier on the same lenses as they are (no fit).
$B simulate --preset survey --n-per-class 1000 --seed 22 --out "$OUT/plain-heldout" --overwrite --quiet
$B predict --input "$OUT/plain-heldout/dataset.parquet" --model bundled:survey-classifier --keep id \
    --out "$OUT/bundled-heldout.parquet" --overwrite > /dev/null
[ ! -f "$LENSES" ] || $B predict --input "$LENSES" --model bundled:survey-classifier --keep id \
    --out "$OUT/bundled-lenstronomy.parquet" --overwrite > /dev/null
for set in "${SETS[@]}"; do
    bundled=$OUT/bundled-heldout.parquet
    [ "$set" != lenstronomy-blind ] || bundled=$OUT/bundled-lenstronomy.parquet
    echo "== $set: the ViT on the residuals"
    $B evaluate --model "$OUT/vit.safetensors" --input "$OUT/$set/dataset.parquet" --report "$OUT/vit-$set.json" \
        --overwrite 2>&1 | grep -E "macro AUC|domain|no_sub called"
    $B predict --input "$OUT/$set/dataset.parquet" --model "$OUT/vit.safetensors" --keep id \
        --out "$OUT/vit-$set.parquet" --overwrite > /dev/null
    against=(--against "$OUT/heldout/fits.csv")
    [ "$set" != lenstronomy-blind ] || against=()
    $PY bench/residual_chi2.py "$OUT/$set/fits.csv" bundled="$bundled" vit="$OUT/vit-$set.parquet" "${against[@]}"
    for subset in all goal; do
        flag=()
        [ "$subset" = all ] || flag=(--goal)
        echo "paired, $subset: $($PY bench/paired_auc.py "$OUT/$set/dataset.parquet" \
            residuals="$OUT/vit-$set.parquet" bundled="$bundled" "${flag[@]}")"
    done
done
