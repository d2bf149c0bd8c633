#!/usr/bin/env bash
# The out-of-domain flag of a classifier, measured: held-out images of its own
# domain (preset OWN, a seed no training or calibration step used) against 16-bit
# copies of them (integers, float16), noise, constant images and lenses of another preset (OTHER), by
# AUROC of `ood_score` and the fraction flagged `out_of_domain`.
#
#   PY=/path/to/python bench/ood_check.sh [MODEL] [N_PER_CLASS] [OWN] [OTHER]
#
# Also prints (stderr) `evaluate` on the own held-out: AUC, accuracy, ECE, in-domain fraction;
# and how far the answers move on the 16-bit copies (bench/storage_dp.py).
# Defaults: the bundled classifier, 300 per class, deeplense-model2 against survey.
# For a survey model: bench/ood_check.sh runs/survey/classifier.safetensors 300 survey deeplense-model2
# For the classifier of smooth-lens residuals, which fits every cutout from its PSF and
# exposure, give the sets that carry neither (all but its own survey lenses and their 16-bit
# copies, which keep their columns) one observation:
#   OBSERVATION="--psf-fwhm 0.17 --exposure-time 2264" bench/ood_check.sh \
#       bundled:survey-residual-classifier 100 survey deeplense-model2
# A row whose fit fails is counted as flagged, as `predict` answers nothing for it.
#
# LENSMAE=path runs that binary instead of building one.
# The Python needs numpy and pyarrow. Prints JSON (bench/ood_auroc.py).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-bundled:classifier}
N=${2:-300}
OWN=${3:-deeplense-model2}
OTHER=${4:-survey}
PY=${PY:-python3}
OBSERVATION=${OBSERVATION:-}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
B=${LENSMAE:-./target/release/lensmae}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae
$B simulate --preset "$OWN" --n-per-class "$N" --seed 16 --out "$OUT/own" --quiet
$B simulate --preset "$OTHER" --n-per-class "$N" --seed 17 --out "$OUT/other" --quiet
"$PY" bench/ood_sets.py "$OUT/own/dataset.parquet" "$OUT" 0 >/dev/null
sets=(own/dataset other/dataset uint16 int16 float16 uniform-noise gaussian-noise constant)
for s in "${sets[@]}"; do
    observation=()
    case "$s" in own/dataset | uint16 | int16 | float16) ;; *) read -r -a observation <<< "$OBSERVATION" ;; esac
    # Exit code 3: some rows failed (their fits), which the table says row by row.
    rc=0
    $B predict --input "$OUT/$s.parquet" --model "$MODEL" --keep id --out "$OUT/pred-${s%%/*}.parquet" \
        "${observation[@]}" 2>/dev/null >/dev/null || rc=$?
    [ "$rc" = 0 ] || [ "$rc" = 3 ] || exit "$rc"
done
# Scored from predict's own answers, so a model that fits each cutout first is scored as it answers.
$B evaluate --predictions "$OUT/pred-own.parquet" --input "$OUT/own/dataset.parquet" --report "$OUT/own-eval.json" \
    --overwrite 2>&1 | sed -n 1,2p >&2  # sed reads it all: no SIGPIPE under pipefail
"$PY" bench/ood_auroc.py "$OUT/pred-own.parquet" "$OTHER"="$OUT/pred-other.parquet" uint16="$OUT/pred-uint16.parquet" \
    int16="$OUT/pred-int16.parquet" float16="$OUT/pred-float16.parquet" uniform-noise="$OUT/pred-uniform-noise.parquet" \
    gaussian-noise="$OUT/pred-gaussian-noise.parquet" constant="$OUT/pred-constant.parquet"
# The same lenses stored in 16 bits: how far the answers move (the issue's 0.02).
for s in uint16 int16 float16; do
    echo "answers moved, $s copies against float32: $("$PY" bench/storage_dp.py "$OUT/pred-own.parquet" "$OUT/pred-$s.parquet")"
done
