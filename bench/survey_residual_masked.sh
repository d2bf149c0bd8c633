#!/usr/bin/env bash
# Flagged pixels on the arcs and a classifier of smooth-lens residuals: 102 `survey`
# lenses of seed 16 (a seed no training or calibration step uses) as they are and with a
# 3 x 7 streak of NaN pixels on each arc (bench/mask_streaks.py), each through `predict
# --nan-policy zero` with its defaults (the blind fit and two refits per cutout), then how
# the statuses and answers compare. LENSMAE picks the build (to run one from before the
# fit masked such pixels, which filled them with 0).
#
#   PY=.venv/bin/python [LENSMAE=path/to/lensmae] [MODEL=bundled:survey-residual-classifier] \
#       bench/survey_residual_masked.sh [OUT_DIR]
#
# PY needs numpy and pyarrow.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/survey-residual/masked}
PY=${PY:-python}
B=${LENSMAE:-./target/release/lensmae}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae
MODEL=${MODEL:-bundled:survey-residual-classifier}
mkdir -p "$OUT"
$B simulate --preset survey --n-per-class 34 --seed 16 --out "$OUT/own" --overwrite --quiet
"$PY" bench/mask_streaks.py write "$OUT/own/dataset.parquet" "$OUT/masked.parquet"
for input in own/dataset masked; do
    name=${input%%/*}
    started=$(date +%s)
    # Exit code 3: some rows failed, which the table says row by row.
    rc=0
    $B predict --input "$OUT/$input.parquet" --model "$MODEL" --keep id --nan-policy zero \
        --out "$OUT/pred-$name.parquet" --overwrite > /dev/null 2>&1 || rc=$?
    [ "$rc" = 0 ] || [ "$rc" = 3 ] || exit "$rc"
    echo "predict on the $name copy: $(( $(date +%s) - started )) s"
done
"$PY" bench/mask_streaks.py compare "$OUT/pred-own.parquet" "$OUT/pred-masked.parquet"
