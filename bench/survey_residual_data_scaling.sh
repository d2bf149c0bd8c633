#!/usr/bin/env bash
# Does the classifier of smooth-lens residuals want more training lenses? The
# pipeline's `finetune-classify` step (pipelines/survey-residual.toml: the small ViT
# from scratch, 20 epochs, training seed 42) run on 4,500, 9,000 and 18,000 blind-fit
# residuals of lenses no other step uses (seeds 27 and 28, 3,000 a class each; the
# 4,500 are seed 27's lenses with id < 4,500), each scored on the pipeline's held-out
# residuals (seed 22, 3,000 lenses) with `evaluate` (macro AUC, the goal subset
# `sub_snr` >= 10 with every `no_sub`, ECE, in-domain fraction), then paired
# bootstraps (bench/paired_auc.py) of 18,000 against each 9,000: seed 27's and the
# shipped model's (trained on seed 21's 9,000), whose difference is the spread from
# one draw of 9,000 lenses to another.
#
#   PY=.venv/bin/python [RUN=runs/survey-residual] bench/survey_residual_data_scaling.sh [OUT_DIR]
#
# Writes the held-out residuals to $RUN/heldout-residuals when the pipeline has not.
# PY needs numpy, pyarrow and scikit-learn. About 100 minutes on 2 cores: the blind
# fits of 21,000 lenses (~0.22 s of the two cores each) and 30 minutes of training.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/survey-residual}
OUT=${1:-$RUN/data-scaling}
PY=${PY:-python}
B=${LENSMAE:-./target/release/lensmae}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae
mkdir -p "$OUT"
HELDOUT="$RUN/heldout-residuals/dataset.parquet"
residuals() { # N_PER_CLASS SEED DIR
    [ -f "$3/dataset.parquet" ] || { /usr/bin/time -f "fits of seed $2: %e s" $B simulate --preset survey \
        --n-per-class "$1" --seed "$2" --smooth-lens-residuals --out "$3" --overwrite --quiet; }
}
residuals 1000 22 "$RUN/heldout-residuals"
residuals 3000 27 "$OUT/train-s27"
residuals 3000 28 "$OUT/train-s28"
"$PY" - "$OUT" <<'PYEOF'
import sys
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
out = sys.argv[1]
s27 = pq.read_table(f"{out}/train-s27/dataset.parquet")
s28 = pq.read_table(f"{out}/train-s28/dataset.parquet")
# The schema metadata (the fit's recipe, which `finetune` copies into the checkpoint)
# is the same for both seeds but for the seed itself, which nothing reads back; ids
# repeat between them and nothing reads them either.
def without_seed(schema):
    return {k: v for k, v in schema.metadata.items() if k != b"lensmae:seed"}
assert without_seed(s27.schema) == without_seed(s28.schema)
both = pa.concat_tables([s27, s28]).replace_schema_metadata({**without_seed(s27.schema), b"lensmae:seed": b"27,28"})
pq.write_table(both, f"{out}/train-18000.parquet", row_group_size=1000)
pq.write_table(s27.filter(pc.less(s27.column("id"), 4500)), f"{out}/train-4500.parquet", row_group_size=1000)
PYEOF
common=(--task classify --scratch --model pipelines/models/vit-w64-d4-p4.json --scaling noise-asinh --pooling mean
    --augment dihedral --epochs 20 --batch-size 64 --lr 1e-3 --seed 42 --overwrite)
score() { # NAME MODEL
    $B evaluate --model "$2" --input "$HELDOUT" --report "$OUT/$1-heldout.json" --overwrite 2>&1 >/dev/null | sed -n 1,3p
    $B predict --input "$HELDOUT" --model "$2" --keep id --out "$OUT/$1-heldout.parquet" --overwrite > /dev/null 2>&1
}
for n in 4500 9000 18000; do
    data="$OUT/train-$n.parquet"
    [ "$n" = 9000 ] && data="$OUT/train-s27/dataset.parquet"
    [ -f "$OUT/n$n.safetensors" ] || /usr/bin/time -f "training on $n: %e s" \
        $B finetune "${common[@]}" --data "$data" --out "$OUT/n$n.safetensors" > "$OUT/n$n.log" 2>&1
    echo "== $n lenses: $(grep -E '^best epoch|^test:' "$OUT/n$n.log" | tr '\n' ' ')"
    score "n$n" "$OUT/n$n.safetensors"
done
echo "== shipped (seed 21's 9,000)"
score shipped bundled:survey-residual-classifier
for other in n9000 shipped n4500; do
    for flag in "" --goal; do
        echo "n18000 against $other, ${flag:-all}: $($PY bench/paired_auc.py "$HELDOUT" n18000="$OUT/n18000-heldout.parquet" \
            "$other=$OUT/$other-heldout.parquet" $flag | tr -d '\n ')"
    done
done
