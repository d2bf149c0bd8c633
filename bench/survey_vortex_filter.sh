#!/usr/bin/env bash
# Would a matched filter for the recipe's vortex find the `axion` lenses the residual
# classifier misses? For the first N_PER_CLASS lenses a class of the survey pipeline's
# held-out (seed 22), `examples/vortex_probe.rs` runs `predict`'s blind smooth-lens fit,
# then `sim::fit::fit_vortex` (a vortex through the fitted lens centre: 16
# starts of half-length and angle, the best 2 fitted with everything free) and writes
# delta_chi2, how far a vortex lowers chi^2 below the smooth lens. With TRUTH_START=1
# (the default here) each `axion` lens also gets the fit started at its drawn vortex:
# the filter when the search is told where to look, an upper bound of this filter.
# The filter's vortex has VORTEX_POINTS point masses (default 25, the recipe 100:
# renders cost about one ray per point mass).
#
#   PY=.venv/bin/python bench/survey_vortex_filter.sh OUT_DIR [N_PER_CLASS]   (default 150)
#
# Then `bench/vortex_filter.py`: AUCs of delta_chi2, and the shipped residual classifier
# (`predict` on the held-out residuals of `pipelines/survey-residual.toml`, made here
# when OUT_DIR has none) with and without delta_chi2 beside it (logistic regression,
# 5-fold cross-validation). About 2.4 s of a core per lens (the blind fit and the filter),
# 5 s per `axion` lens with the truth start (2026-12-05, 2-core VM): 150 a class ~16 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?OUT_DIR}
N=${2:-150}
PY=${PY:-python}
B=${LENSMAE:-./target/release/lensmae}
PROBE=${PROBE:-./target/release/examples/vortex_probe}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae --example vortex_probe
mkdir -p "$OUT"
[ -f "$OUT/heldout-residuals/dataset.parquet" ] || $B simulate --preset survey --n-per-class 1000 --seed 22 \
    --smooth-lens-residuals --out "$OUT/heldout-residuals" --overwrite --quiet
[ -f "$OUT/shipped.parquet" ] || $B predict --model bundled:survey-residual-classifier \
    --input "$OUT/heldout-residuals/dataset.parquet" --keep id --out "$OUT/shipped.parquet" --overwrite > /dev/null
# Appends from where a stopped run left off.
done_rows=0
[ -f "$OUT/probe.csv" ] && done_rows=$(($(wc -l < "$OUT/probe.csv") - 1))
TRUTH_START=${TRUTH_START:-1} VORTEX_POINTS=${VORTEX_POINTS:-25} VORTEX_FITS=${VORTEX_FITS:-2} \
    /usr/bin/time -f "probe: %e s" "$PROBE" "$N" 22 "$OUT/probe.csv" "$done_rows"
$PY bench/vortex_filter.py "$OUT/probe.csv" "$OUT/shipped.parquet"
