#!/usr/bin/env bash
# A new survey classifier against the one it would replace, on the same lenses: the
# pipeline's held-out lenses without neighbours (seed 22) and with them (seed 23,
# `pipelines/recipes/survey-neighbours.toml`), and the held-out lenses with one
# neighbour pasted in at each magnitude (bench/survey_neighbours.sh, galaxies and
# stars 2-3" out); each line a paired bootstrap of the macro AUC (bench/paired_auc.py:
# NEW's AUC, OLD's, the difference and its 95% interval) and both models' in-domain
# fractions.
#
#   PY=.venv/bin/python [ALSO="NAME=LABELLED.parquet ..."] bench/survey_model_swap.sh NEW OLD [OUT_DIR] [MAG...]
#
# ALSO adds labelled sets to compare on (lenses no step has seen, another simulator's).
#
# Needs runs/survey/heldout and runs/survey/heldout-neighbours (`lensmae run
# pipelines/survey.toml` makes them); PY needs numpy, pyarrow and scikit-learn.
set -euo pipefail
cd "$(dirname "$0")/.."
NEW=$1
OLD=$2
OUT=${3:-runs/survey-model-swap}
shift 3 || shift $#
MAGS=("$@")
[ ${#MAGS[@]} -gt 0 ] || MAGS=(24 22 20 18)
PY=${PY:-python}
B=${LENSMAE:-./target/release/lensmae}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae
mkdir -p "$OUT"

# in_domain PREDICTIONS: the fraction of rows the model calls in its domain.
in_domain() {
    $PY -c "import pyarrow.parquet as pq, sys; c = pq.read_table(sys.argv[1], columns=['in_domain']).column(0).to_pylist(); print(f'{sum(map(bool, c)) / len(c):.4f}')" "$1"
}

# compare NAME LABELLED: both models' predictions of LABELLED, paired.
compare() {
    local name=$1 lenses=$2 tag model
    for tag in new old; do
        model=$NEW
        [ "$tag" = old ] && model=$OLD
        $B predict --input "$lenses" --model "$model" --keep id --out "$OUT/$name-$tag.parquet" --overwrite > /dev/null
    done
    echo "$name: $($PY bench/paired_auc.py "$lenses" new="$OUT/$name-new.parquet" old="$OUT/$name-old.parquet"); in domain new $(in_domain "$OUT/$name-new.parquet"), old $(in_domain "$OUT/$name-old.parquet")"
}

compare heldout runs/survey/heldout/dataset.parquet
compare heldout-neighbours runs/survey/heldout-neighbours/dataset.parquet
for set in ${ALSO:-}; do
    compare "${set%%=*}" "${set#*=}"
done
for kind in galaxy star; do
    for mag in "${MAGS[@]}"; do
        [ -f "$OUT/$kind-$mag-lenses.parquet" ] || $PY bench/survey_neighbours.py runs/survey/heldout/dataset.parquet \
            "$OUT/$kind-$mag-lenses.parquet" "$kind" "$mag"
        compare "$kind-$mag" "$OUT/$kind-$mag-lenses.parquet"
    done
done
