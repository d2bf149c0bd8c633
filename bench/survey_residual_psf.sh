#!/usr/bin/env bash
# A PSF with wings: the lenstronomy survey lenses of seed 7 (bench/lenstronomy_survey.py,
# N per class, default 500) rendered again through a Moffat PSF of beta BETA (default 2.5)
# and the drawn FWHM instead of the Gaussian; the same lenses, parameters and noise seeds.
# Both sets through `predict` (one fit a cutout, --fit-refits 0): the Gaussian set as the
# recipe sees it; the Moffat set fitted with a Gaussian of its FWHM (the `psf_fwhm` column,
# what a survey's catalogue gives); and the Moffat set fitted with its own PSF image
# (`--psf-image-col psf`). `evaluate` scores each, and the fits' chi^2 per pixel, the
# status counts and the deflector's fitted magnitude against the drawn one are summarised.
#
#   PY=.venv/bin/python LENSTRONOMY_PY=.venv-survey/bin/python [BETA=2.5] \
#       [MODEL=bundled:survey-residual-classifier] bench/survey_residual_psf.sh [OUT_DIR] [N]
#
# SIMULATOR=lensmae takes lensmae's lenses instead (no lenstronomy needed): the `survey`
# preset of seed 7 and its twin through Moffat PSFs, pipelines/recipes/survey-moffat.toml
# (the same lenses, beta 2.5-4 drawn per lens, its own noise), the third run fitted with
# each row's Moffat (`--psf-moffat-beta-col psf_beta`). The third run was called
# `moffat-fit-psf-image` before 2026-12-08.
#
# PY needs numpy and pyarrow; LENSTRONOMY_PY tests/oracle/requirements-survey.txt.
# About 4 minutes a predict of 1,500 cutouts on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/survey-residual/psf}
N=${2:-500}
PY=${PY:-python}
LENSTRONOMY_PY=${LENSTRONOMY_PY:-python}
B=${LENSMAE:-./target/release/lensmae}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae
MODEL=${MODEL:-bundled:survey-residual-classifier}
BETA=${BETA:-2.5}
SIMULATOR=${SIMULATOR:-lenstronomy}
mkdir -p "$OUT"
if [ "$SIMULATOR" = lensmae ]; then
    for set in gaussian moffat; do
        recipe=(--preset survey)
        [ "$set" = moffat ] && recipe=(--config pipelines/recipes/survey-moffat.toml)
        [ -f "$OUT/$set.parquet" ] || { $B simulate "${recipe[@]}" --n-per-class "$N" --seed 7 \
            --out "$OUT/$set" --quiet --overwrite && mv "$OUT/$set/dataset.parquet" "$OUT/$set.parquet"; }
    done
    OWN_PSF=(--psf-moffat-beta-col psf_beta)
else
    [ -f "$OUT/gaussian.parquet" ] || "$LENSTRONOMY_PY" bench/lenstronomy_survey.py write "$N" 7 "$OUT/gaussian.parquet"
    [ -f "$OUT/moffat.parquet" ] || "$LENSTRONOMY_PY" bench/lenstronomy_survey.py write "$N" 7 "$OUT/moffat.parquet" "moffat:$BETA"
    OWN_PSF=(--psf-image-col psf)
fi
run() {  # NAME INPUT PREDICT-OPTIONS...
    local name=$1 input=$2; shift 2
    local started rc=0
    started=$(date +%s)
    # Exit code 3: some rows failed, which the table says row by row.
    $B predict --input "$input" "$@" --model "$MODEL" --fit-refits 0 --keep id --keep lens_light_magnitude \
        --out "$OUT/pred-$name.parquet" --overwrite > /dev/null 2> "$OUT/predict-$name.log" || rc=$?
    [ "$rc" = 0 ] || [ "$rc" = 3 ] || exit "$rc"
    echo "== $name: predict $(( $(date +%s) - started )) s"
    grep '^note' "$OUT/predict-$name.log" || true
    $B evaluate --predictions "$OUT/pred-$name.parquet" --input "$input" \
        --report "$OUT/eval-$name.json" --overwrite 2>&1 | sed -n 1,4p
    "$PY" - "$OUT/pred-$name.parquet" <<'PYEOF'
import sys, collections
import numpy as np, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1]).to_pydict()
chi2 = np.array([c for c in t["fit_chi2"] if c is not None])
dm = np.array([f - d for f, d in zip(t["fit_lens_light_mag"], t["lens_light_magnitude"]) if f is not None])
print("fit_chi2 per pixel: median %.3f, 10-90%% %.3f-%.3f; deflector fitted - drawn: median %+.4f mag; status %s" % (
    np.median(chi2), *np.percentile(chi2, [10, 90]), np.median(dm), dict(collections.Counter(t["status"]))))
if "fit_core_chi2" in t:  # infer::residuals::CORE_CHI2_TYPICAL; 116, the calibration lenses' 0.995 quantile
    core = np.array([c for c in t["fit_core_chi2"] if c is not None])
    print("fit_core_chi2: median %.1f, above 10.13 %.3f, above 116 %.3f" % (
        np.median(core), np.mean(core > 10.13), np.mean(core > 116.0)))
PYEOF
}
run gaussian "$OUT/gaussian.parquet"
run moffat-fit-gaussian "$OUT/moffat.parquet"
run moffat-fit-own-psf "$OUT/moffat.parquet" "${OWN_PSF[@]}"
