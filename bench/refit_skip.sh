#!/usr/bin/env bash
# What skipping the refits of out-of-range cutouts changed (f8a88aa): `predict` with
# the residual classifier, by a build from before (BASE) and this one, on
#   1. 24 noise cutouts: the first 12 uniform- and 12 Gaussian-noise images that
#      bench/ood_sets.py makes from 900 `survey` lenses of seed 16 (one observation
#      for all: PSF 0.17", 2264 s) - time each build;
#   2. 59 of those lenses: ids 0-48 and the 11 that bench/survey_residual_storage.sh's
#      float32 copy answers `out_of_domain` with the 18,000-lens model - which cells
#      differ (bench/compare_datasets.py: silent for equal columns).
#
#   BASE=/path/to/older/lensmae PY=.venv/bin/python bench/refit_skip.sh [OUT_DIR]
#
# About 6 minutes on 2 cores. PY needs numpy and pyarrow.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/refit-skip}
PY=${PY:-python}
B=${LENSMAE:-./target/release/lensmae}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae
BASE=${BASE:?a lensmae build from before f8a88aa}
mkdir -p "$OUT"
$B simulate --preset survey --n-per-class 300 --seed 16 --out "$OUT/own" --overwrite --quiet
"$PY" bench/ood_sets.py "$OUT/own/dataset.parquet" "$OUT" 0 > /dev/null
"$PY" - "$OUT" <<'PYEOF'
import sys
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
out = sys.argv[1]
uniform = pq.read_table(f"{out}/uniform-noise.parquet").slice(0, 12)
gaussian = pq.read_table(f"{out}/gaussian-noise.parquet").slice(0, 12)
gaussian = gaussian.set_column(0, "id", pc.add(gaussian.column("id"), 100)).select(uniform.column_names)
pq.write_table(pa.concat_tables([uniform, gaussian.cast(uniform.schema)]), f"{out}/noise24.parquet")
lenses = pq.read_table(f"{out}/own/dataset.parquet")
ids = sorted(set(range(49)) | {18, 186, 196, 346, 504, 528, 684, 704, 801, 810, 841})
pq.write_table(lenses.filter(pc.is_in(lenses.column("id"), value_set=pa.array(ids, pa.int64()))),
               f"{out}/lenses59.parquet")
PYEOF
model=bundled:survey-residual-classifier
for set in noise24 lenses59; do
    observation=()
    [ "$set" = noise24 ] && observation=(--psf-fwhm 0.17 --exposure-time 2264)
    for build in base new; do
        bin=$B
        [ "$build" = base ] && bin=$BASE
        /usr/bin/time -f "$set, $build build: %e s" $bin predict --input "$OUT/$set.parquet" --model $model --keep id \
            "${observation[@]}" --out "$OUT/$set-$build.parquet" --overwrite > /dev/null
    done
    echo "== $set: cells that differ, new build against base"
    "$PY" bench/compare_datasets.py "$OUT/$set-new.parquet" "$OUT/$set-base.parquet"
done
