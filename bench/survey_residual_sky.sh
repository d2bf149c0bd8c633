#!/usr/bin/env bash
# A brighter sky than the recipe's, and the cutouts' noise maps: 300 `survey` lenses of seed
# 16 (a seed no training or calibration step uses) written as FITS cutouts whose background
# variance is FACTOR (default 2) times the recipe's, each with its RMS map
# (bench/sky_maps.py), through `predict` with its defaults twice: the fit weighted by the
# maps (`--fit-noise map`, the default) and by the recipe's sky (`--fit-noise recipe`); and
# the lenses as they are. `evaluate` scores each, and the fits' chi^2 per pixel is summarised.
#
#   PY=.venv/bin/python [FACTOR=2] [MODEL=bundled:survey-residual-classifier] \
#       bench/survey_residual_sky.sh [OUT_DIR]
#
# PY needs numpy, pyarrow and astropy. About 3 minutes a run on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/survey-residual/sky}
PY=${PY:-python}
B=${LENSMAE:-./target/release/lensmae}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae
MODEL=${MODEL:-bundled:survey-residual-classifier}
FACTOR=${FACTOR:-2}
mkdir -p "$OUT"
$B simulate --preset survey --n-per-class 100 --seed 16 --out "$OUT/own" --overwrite --quiet
rm -rf "$OUT/cutouts"
"$PY" bench/sky_maps.py "$OUT/own/dataset.parquet" "$OUT/cutouts" "$FACTOR"
run() {  # NAME INPUT... -- PREDICT OPTIONS
    local name=$1; shift
    local started rc=0
    started=$(date +%s)
    # Exit code 3: some rows failed, which the table says row by row.
    $B predict "$@" --model "$MODEL" --keep id --out "$OUT/pred-$name.parquet" --overwrite > /dev/null 2>&1 || rc=$?
    [ "$rc" = 0 ] || [ "$rc" = 3 ] || exit "$rc"
    echo "== $name: predict $(( $(date +%s) - started )) s"
    $B evaluate --predictions "$OUT/pred-$name.parquet" --input "$OUT/own/dataset.parquet" \
        --report "$OUT/eval-$name.json" --overwrite 2>&1 | sed -n 1,3p
    "$PY" - "$OUT/pred-$name.parquet" <<'PYEOF'
import sys, collections
import numpy as np, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1]).to_pydict()
chi2 = np.array([c for c in t["fit_chi2"] if c is not None])
print("fit_chi2 per pixel: median %.3f, 10-90%% %.3f-%.3f; noise map used on %d of %d rows; status %s" % (
    np.median(chi2), *np.percentile(chi2, [10, 90]), sum(bool(m) for m in t["fit_noise_map"]), len(t["id"]),
    dict(collections.Counter(t["status"]))))
PYEOF
}
run own --input "$OUT/own/dataset.parquet"
run map --input "$OUT"/cutouts/*.fits --fit-noise map
run recipe --input "$OUT"/cutouts/*.fits --fit-noise recipe
