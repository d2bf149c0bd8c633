#!/usr/bin/env bash
# Ground-based lenses through the models trained on Euclid VIS-like cutouts: the
# `survey` preset's lenses rendered with `pipelines/recipes/survey-lsst.toml` (LSST
# r-band: 0.2" pixels, 0.6-0.8" seeing), predicted by each MODEL (each row's PSF and
# exposure from its columns), and per model: the rows flagged `out_of_domain`, the
# statuses, `evaluate`'s macro AUC on all rows and on those left in the domain, and for a
# classifier of residuals why each flagged row was flagged (bench/domain_flag_reasons.py).
#
#   PY=/path/to/python bench/ground_based_check.sh [N_PER_CLASS] [SEED] [MODEL...]
#
# Defaults: 100 per class, seed 9, bundled:survey-classifier and
# bundled:survey-residual-classifier. LENSMAE=path runs that binary instead of building
# one. The Python needs pyarrow.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
SEED=${2:-9}
shift $(( $# < 2 ? $# : 2 ))
MODELS=("$@")
[ ${#MODELS[@]} -gt 0 ] || MODELS=(bundled:survey-classifier bundled:survey-residual-classifier)
PY=${PY:-python3}
if [ -z "${LENSMAE:-}" ]; then
    cargo build --release --quiet --bin lensmae
    LENSMAE=target/release/lensmae
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
"$LENSMAE" simulate --config pipelines/recipes/survey-lsst.toml --n-per-class "$N" --seed "$SEED" \
    --out "$OUT/lenses" >&2
for model in "${MODELS[@]}"; do
    name=${model//[:\/]/_}
    "$LENSMAE" predict --model "$model" --input "$OUT/lenses/dataset.parquet" --out "$OUT/$name.parquet" \
        >/dev/null 2>&1 || true  # rows flagged or failed still write the table
    "$PY" - "$OUT/$name.parquet" "$model" <<'PYEOF'
import json, sys, collections
import pyarrow.parquet as pq
t = pq.read_table(sys.argv[1]).to_pylist()
status = collections.Counter(row["status"][:60] for row in t)
flagged = sum(1 for row in t if not row.get("in_domain"))
print(json.dumps({"model": sys.argv[2], "rows": len(t), "not_in_domain": flagged,
                  "statuses": dict(status.most_common(5))}))
PYEOF
    "$LENSMAE" evaluate --predictions "$OUT/$name.parquet" --input "$OUT/lenses/dataset.parquet" \
        --report "$OUT/$name.json" >/dev/null 2>&1 || true
    "$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); d=r['domain']; print(json.dumps({'macro_auc_all_rows': r['report']['metrics']['macro_auc'], 'in_domain_fraction': d['in_domain_fraction'], 'ood_score_median': d['ood_score_median']}))" "$OUT/$name.json"
    # A bundled model's checkpoint is its file under models/.
    checkpoint=$model
    [[ "$model" == bundled:* ]] && checkpoint=models/${model#bundled:}.safetensors
    case "$model" in
        *residual*) "$PY" bench/domain_flag_reasons.py "$OUT/$name.parquet" "$checkpoint" ;;
    esac
done
