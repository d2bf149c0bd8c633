#!/usr/bin/env bash
# The lens model of the residual classifier's smooth-lens fit against the lens that was
# drawn: N survey lenses a class of seed SEED (22: the survey pipeline's held-out seed),
# `predict` with the bundled residual classifier (MODEL to change it; one fit a cutout,
# `--fit-refits 0`: refits move no `fit_*` column but the spread), `evaluate` of its answers,
# and bench/lens_model_recovery.py's table of each `fit_*` column's offsets by class.
#
#   PY=/path/to/python bench/lens_model_recovery.sh [N_PER_CLASS] [SEED] [OUT_DIR]
#
# LENSMAE=path runs that binary instead of building one.
# The Python needs numpy and pyarrow. 1,000 a class: ~11 minutes of the 2-core VM.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
SEED=${2:-22}
OUT=${3:-$(mktemp -d)}
MODEL=${MODEL:-bundled:survey-residual-classifier}
PY=${PY:-python3}
B=${LENSMAE:-./target/release/lensmae}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae
mkdir -p "$OUT"
$B simulate --preset survey --n-per-class "$N" --seed "$SEED" --out "$OUT/lenses" --quiet --overwrite
start=$(date +%s)
$B predict --input "$OUT/lenses/dataset.parquet" --model "$MODEL" --keep id --fit-refits 0 \
    --out "$OUT/predictions.parquet" --overwrite >/dev/null 2>&1 || [ $? = 3 ]
echo "predict: $(( $(date +%s) - start )) s"
$B evaluate --predictions "$OUT/predictions.parquet" --input "$OUT/lenses/dataset.parquet" \
    --report "$OUT/evaluation.json" --overwrite 2>&1 | sed -n 1,3p
"$PY" bench/lens_model_recovery.py "$OUT/lenses/dataset.parquet" "$OUT/predictions.parquet"
