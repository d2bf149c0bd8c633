#!/usr/bin/env bash
# How a survey classifier answers on cutouts centred a pixel or more off their
# deflector: the pipeline's held-out lenses (seed 22) moved by whole pixels
# (bench/shift_lenses.py), each scored by `evaluate` (macro AUC, the `sub_snr` >= 10
# subset, the in-domain fraction).
#
#   [PYTHON=python3] [LENSMAE=target/release/lensmae] [MODEL=bundled:survey-classifier] \
#       [SHIFTS="0,0 1,0 ..."] [COPIES_CHECK=0] bench/survey_centring.sh [OUT_DIR]
#
# SHIFTS lists the moves as DX,DY pairs (columns right, rows down); COPIES_CHECK=0
# skips the 16-bit check at the end. LENSMAE names the binary, so that one built at
# another commit scores the same cutouts. Needs runs/survey/heldout/dataset.parquet (`lensmae run
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
SHIFTS=${SHIFTS:-0,0 1,0 1,1 2,0 2,2 3,0}
for shift in $SHIFTS; do
    set -- ${shift/,/ }
    moved="$OUT/heldout-$1-$2.parquet"
    [ -f "$moved" ] || "$PYTHON" bench/shift_lenses.py "$LENSES" "$moved" "$1" "$2"
    report="$OUT/$(basename "$LENSMAE")-$1-$2.json"
    echo "moved by ($1, $2) pixels:"
    $LENSMAE evaluate --model "$MODEL" --input "$moved" --report "$report" --overwrite 2>&1 \
        | grep -E '^macro AUC|^in the|^sub_snr >= ' || true
done

[ "${COPIES_CHECK:-1}" = 0 ] && exit 0

# The centring is a whole-pixel decision: does 16-bit storage ever flip it, or the
# in-domain flag? The largest change of a probability between float32 cutouts and
# their uint16 / int16 copies (bench/ood_sets.py), and the rows whose `geometry` or
# `in_domain` differ, on the 15,000 lenses of bench/survey_large_heldout.sh when they
# are there, else on the held-out.
COPIES=runs/survey-large/heldout-25/dataset.parquet
[ -f "$COPIES" ] || COPIES=$LENSES
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$PYTHON" bench/ood_sets.py "$COPIES" "$TMP" > /dev/null
for set in float32:"$COPIES" uint16:"$TMP/uint16.parquet" int16:"$TMP/int16.parquet"; do
    $LENSMAE predict --model "$MODEL" --input "${set#*:}" --out "$TMP/pred-${set%%:*}.parquet" --overwrite > /dev/null 2>&1
done
"$PYTHON" - "$TMP" "$COPIES" <<'PY'
import sys
import numpy as np
import pyarrow.parquet as pq
tmp, copies = sys.argv[1:]
tables = {k: pq.read_table(f"{tmp}/pred-{k}.parquet").to_pandas() for k in ["float32", "uint16", "int16"]}
p = {k: t.filter(like="p_").to_numpy() for k, t in tables.items()}
for k in ["uint16", "int16"]:
    d = np.abs(p[k] - p["float32"]).max(axis=1)
    print(f"{copies}: {k} against float32, max |dp| {d.max():.4f}, rows above 0.02: {(d > 0.02).sum()} of {len(d)}")
    # The whole-pixel decisions: where the deflector was put, and the in-domain flag.
    moved = (tables[k]["geometry"] != tables["float32"]["geometry"]).sum()
    flag = (tables[k]["in_domain"] != tables["float32"]["in_domain"]).sum()
    print(f"{copies}: {k} against float32, geometry differs on {moved} rows, in_domain on {flag}")
PY
