#!/usr/bin/env bash
# The classifier of smooth-lens residuals (`bundled:survey-residual-classifier`,
# pipelines/survey-residual.toml) against the shipped cutout classifier
# (`bundled:survey-classifier`) on the same lenses, paired (bench/paired_auc.py):
#   1. the pipeline's held-out lenses (seed 22, 3,000), from their residuals as
#      `simulate --smooth-lens-residuals` wrote them (read as they are: no second fit);
#   2. the first LENSTRONOMY_ROWS of lenstronomy's rendering of the recipe
#      (bench/survey_second_simulator.sh writes it), through `predict` on the
#      cutouts: every cutout fitted by predict from its `psf_fwhm` / `exposure_time`.
# Each paired overall and on the issue's goal subset (`sub_snr` >= 10 and every `no_sub`).
#
#   PY=.venv/bin/python [RUN=runs/survey-residual] [LENSTRONOMY_LENSES=runs/lenstronomy-survey/lens-1000-7.parquet] \
#       [LENSTRONOMY_ROWS=1500] bench/survey_residual_classifier.sh [OUT_DIR]
#
# Needs `lensmae run pipelines/survey-residual.toml` first (its held-out residuals);
# PY needs numpy, pyarrow and scikit-learn. The lenstronomy part fits every cutout:
# about 0.5 s of a core each.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/survey-residual}
OUT=${1:-$RUN/compare}
PY=${PY:-python}
B=${LENSMAE:-./target/release/lensmae}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae
MODEL=${MODEL:-bundled:survey-residual-classifier}
mkdir -p "$OUT"

echo "== held-out (seed 22), residuals as written"
$B simulate --preset survey --n-per-class 1000 --seed 22 --out "$OUT/heldout-cutouts" --overwrite --quiet
$B predict --input "$OUT/heldout-cutouts/dataset.parquet" --model bundled:survey-classifier --keep id \
    --out "$OUT/cutout-classifier-heldout.parquet" --overwrite > /dev/null
$B predict --input "$RUN/heldout-residuals/dataset.parquet" --model "$MODEL" --keep id \
    --out "$OUT/residual-classifier-heldout.parquet" --overwrite > /dev/null
for flag in "" --goal; do
    echo "paired ${flag:-all}: $($PY bench/paired_auc.py "$RUN/heldout-residuals/dataset.parquet" \
        residuals="$OUT/residual-classifier-heldout.parquet" cutouts="$OUT/cutout-classifier-heldout.parquet" $flag)"
done

LENSES=${LENSTRONOMY_LENSES:-runs/lenstronomy-survey/lens-1000-7.parquet}
[ -f "$LENSES" ] || { echo "no $LENSES: run bench/survey_second_simulator.sh for the second simulator"; exit 0; }
ROWS=${LENSTRONOMY_ROWS:-1500}
echo "== lenstronomy's lenses ($LENSES, first $ROWS), fitted by predict"
$PY - "$LENSES" "$OUT/lenstronomy-$ROWS.parquet" "$ROWS" <<'EOF'
import sys
import pyarrow.parquet as pq
table = pq.read_table(sys.argv[1])
pq.write_table(table.slice(0, int(sys.argv[3])), sys.argv[2])
EOF
$B predict --input "$OUT/lenstronomy-$ROWS.parquet" --model bundled:survey-classifier --keep id \
    --out "$OUT/cutout-classifier-lenstronomy.parquet" --overwrite > /dev/null
started=$(date +%s)
$B predict --input "$OUT/lenstronomy-$ROWS.parquet" --model "$MODEL" --keep id \
    --out "$OUT/residual-classifier-lenstronomy.parquet" --overwrite
echo "predict with the fits: $(( $(date +%s) - started )) s for $ROWS cutouts"
$B evaluate --predictions "$OUT/residual-classifier-lenstronomy.parquet" --input "$OUT/lenstronomy-$ROWS.parquet" \
    --report "$OUT/residual-classifier-lenstronomy.json" --overwrite 2>&1 | grep -E "macro AUC|domain|sub_snr >= 10"
for flag in "" --goal; do
    echo "paired ${flag:-all}: $($PY bench/paired_auc.py "$OUT/lenstronomy-$ROWS.parquet" \
        residuals="$OUT/residual-classifier-lenstronomy.parquet" cutouts="$OUT/cutout-classifier-lenstronomy.parquet" $flag)"
done
