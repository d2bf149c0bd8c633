#!/usr/bin/env bash
# How a survey classifier answers on cutouts centred a pixel or more off their
# deflector: the pipeline's held-out lenses (seed 22) moved by whole pixels
# (bench/shift_lenses.py), each scored by `evaluate` (macro AUC, the `sub_snr` >= 10
# subset, the in-domain fraction).
#
#   [PYTHON=python3] [LENSMAE=target/release/lensmae] [MODEL=bundled:survey-classifier] \
#       bench/survey_centring.sh [OUT_DIR]
#
# LENSMAE names the binary, so that one built at another commit scores the same
# cutouts. Needs runs/survey/heldout/dataset.parquet (`lensmae run
# pipelines/survey.toml`, its `simulate-heldout` step); PYTHON needs numpy and pyarrow.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/survey-centring}
PYTHON=${PYTHON:-python3}
MODEL=${MODEL:-bundled:survey-classifier}
if [ -z "${LENSMAE:-}" ]; then
    cargo build --release --quiet --bin lensmae
    LENSMAE=./target/release/lensmae
fi
LENSES=runs/survey/heldout/dataset.parquet
mkdir -p "$OUT"
echo "$($LENSMAE --version) on $LENSES, model $MODEL"
for shift in "0 0" "1 0" "1 1" "2 0" "2 2" "3 0"; do
    set -- $shift
    moved="$OUT/heldout-$1-$2.parquet"
    [ -f "$moved" ] || "$PYTHON" bench/shift_lenses.py "$LENSES" "$moved" "$1" "$2"
    report="$OUT/$(basename "$LENSMAE")-$1-$2.json"
    echo "moved by ($1, $2) pixels:"
    $LENSMAE evaluate --model "$MODEL" --input "$moved" --report "$report" --overwrite 2>&1 \
        | grep -E '^macro AUC|^in the|^sub_snr >= ' || true
done
