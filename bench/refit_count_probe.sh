#!/usr/bin/env bash
# Would more refits flag the rows that one 16-bit copy answers `ok` and another
# answers more than 0.02 away? From bench/survey_residual_storage.sh's output
# directory: for every row whose float32 and uint16 answers differ by more than 0.02
# and exactly one copy says `ok`, the cutout of the copy that says `ok`, through
# `predict` with 2, 4 and 8 refits (`--fit-refits`): id, status, fit_refit_spread,
# refit_answer_spread.
#
#   PY=.venv/bin/python bench/refit_count_probe.sh STORAGE_DIR
#
# A few minutes on 2 cores for a handful of rows. PY needs numpy and pyarrow.
set -euo pipefail
cd "$(dirname "$0")/.."
S=${1:?the output directory of bench/survey_residual_storage.sh}
PY=${PY:-python}
B=${LENSMAE:-./target/release/lensmae}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae
"$PY" - "$S" <<'PYEOF'
import sys
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
s = sys.argv[1]
def answers(name):
    t = pq.read_table(f"{s}/pred-{name}.parquet").sort_by("id").to_pydict()
    return np.array(t["id"]), np.array([t[c] for c in sorted(k for k in t if k.startswith("p_"))]).T, np.array(t["status"])
ids, a, status_a = answers("own")
ids_b, b, status_b = answers("uint16")
assert np.array_equal(ids, ids_b)
apart = np.abs(a - b).max(axis=1) > 0.02
tables = []
for copy, ok, other in [("own/dataset", status_a, status_b), ("uint16", status_b, status_a)]:
    chosen = ids[apart & (ok == "ok") & (other != "ok")].tolist()
    t = pq.read_table(f"{s}/{copy}.parquet").select(["id", "image", "psf_fwhm", "exposure_time"])
    t = t.take([t.column("id").to_pylist().index(i) for i in chosen])
    tables.append(t.cast(pa.schema([pa.field(f.name, f.type) for f in t.schema])))
    print(f"{copy}: {chosen}")
pq.write_table(pa.concat_tables(tables), f"{s}/ok-in-one-copy.parquet")
PYEOF
for refits in 2 4 8; do
    started=$(date +%s)
    $B predict --input "$S/ok-in-one-copy.parquet" --model bundled:survey-residual-classifier --keep id \
        --fit-refits "$refits" --out "$S/ok-in-one-copy-r$refits.parquet" --overwrite > /dev/null 2>&1
    echo "--fit-refits $refits ($(( $(date +%s) - started )) s): $("$PY" -c "
import sys, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1]).to_pydict()
print([(i, s, round(c, 1), round(a, 4)) for i, s, c, a in
       zip(t['id'], t['status'], t['fit_refit_spread'], t['refit_answer_spread'])])" "$S/ok-in-one-copy-r$refits.parquet")"
done
