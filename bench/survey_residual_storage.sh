#!/usr/bin/env bash
# Does a classifier of smooth-lens residuals answer the same for a cutout however it
# is stored? 900 `survey` lenses of seed 16 (a seed no training or calibration step
# uses) as float32 and as uint16 and int16 BSCALE/BZERO copies over each image's range
# (bench/ood_sets.py, the copies keep `psf_fwhm` / `exposure_time`), each through
# `predict` with its defaults (the blind fit and two refits per cutout), then how far
# the answers move (bench/storage_dp.py --rows: the issue's max |dp| <= 0.02, split by
# `status`), and `evaluate` on the float32 copy.
#
#   PY=.venv/bin/python [MODEL=bundled:survey-residual-classifier] [REFITS=2] [COPIES="uint16 int16"] \
#       bench/survey_residual_storage.sh [OUT_DIR]
#
# About 13 minutes a copy on 2 cores with the default two refits (`--fit-refits`).
# The int16 copy answers as the uint16 one to 6e-8: COPIES=uint16 saves its third.
# PY needs numpy and pyarrow.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/survey-residual/storage}
PY=${PY:-python}
B=${LENSMAE:-./target/release/lensmae}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae
MODEL=${MODEL:-bundled:survey-residual-classifier}
REFITS=${REFITS:-2}
COPIES=${COPIES:-uint16 int16}
mkdir -p "$OUT"
$B simulate --preset survey --n-per-class 300 --seed 16 --out "$OUT/own" --overwrite --quiet
"$PY" bench/ood_sets.py "$OUT/own/dataset.parquet" "$OUT" 0 > /dev/null
for copy in own/dataset $COPIES; do
    name=${copy%%/*}
    started=$(date +%s)
    # Exit code 3: some rows failed, which the table says row by row.
    rc=0
    $B predict --input "$OUT/$copy.parquet" --model "$MODEL" --keep id --fit-refits "$REFITS" \
        --out "$OUT/pred-$name.parquet" --overwrite > /dev/null 2>&1 || rc=$?
    [ "$rc" = 0 ] || [ "$rc" = 3 ] || exit "$rc"
    echo "predict on the $name copy: $(( $(date +%s) - started )) s"
done
$B evaluate --predictions "$OUT/pred-own.parquet" --input "$OUT/own/dataset.parquet" --report "$OUT/own-eval.json" \
    --overwrite 2>&1 | sed -n 1,3p
for copy in $COPIES; do
    echo "== $copy against float32"
    "$PY" bench/storage_dp.py "$OUT/pred-own.parquet" "$OUT/pred-$copy.parquet" --rows
done
if [[ " $COPIES " == *" uint16 "* && " $COPIES " == *" int16 "* ]]; then
    echo "== int16 against uint16"
    "$PY" bench/storage_dp.py "$OUT/pred-uint16.parquet" "$OUT/pred-int16.parquet"
fi
