#!/usr/bin/env bash
# Where `infer::residuals::CORE_CHI2_TYPICAL` comes from: N survey lenses a class (default
# 500) of seed 26, the seed the bundled residual classifier was calibrated on (no held-out
# seed), through `predict` with one fit a cutout, and the quantiles of `fit_core_chi2`
# overall and by class; CORE_CHI2_TYPICAL is the 0.9 quantile of all of them.
#
#   PY=/path/to/python bench/core_chi2_limit.sh [N_PER_CLASS] [OUT_DIR]
#
# The Python needs numpy and pyarrow. 500 a class: ~8 minutes of the 2-core VM.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-500}
OUT=${2:-$(mktemp -d)}
PY=${PY:-python3}
B=${LENSMAE:-./target/release/lensmae}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae
$B simulate --preset survey --n-per-class "$N" --seed 26 --out "$OUT/lenses" --quiet --overwrite
$B predict --input "$OUT/lenses/dataset.parquet" --model bundled:survey-residual-classifier --keep id \
    --fit-refits 0 --out "$OUT/predictions.parquet" --overwrite >/dev/null 2>&1 || [ $? = 3 ]
"$PY" - "$OUT/lenses/dataset.parquet" "$OUT/predictions.parquet" <<'PYEOF'
import json, sys
import numpy as np, pyarrow.parquet as pq
labels = np.array(pq.read_table(sys.argv[1], columns=["label"]).column("label").to_pylist())
core = np.array([np.nan if c is None else c for c in pq.read_table(sys.argv[2]).column("fit_core_chi2").to_pylist()])
q = lambda v, p: round(float(np.nanquantile(v, p)), 2)
print(json.dumps({"lenses": int(np.isfinite(core).sum()),
                  "all": {p: q(core, p) for p in [0.5, 0.9, 0.99, 0.995, 0.999]},
                  **{c: {p: q(core[labels == c], p) for p in [0.5, 0.9, 0.99, 0.995]} for c in ["no_sub", "cdm", "axion"]}}))
PYEOF
