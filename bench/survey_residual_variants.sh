#!/usr/bin/env bash
# Variants of the classifier of smooth-lens residuals on the same training residuals
# (pipelines/survey-residual.toml's `simulate-train`, seed 21) and the same held-out
# residuals (seed 22), each trained as the pipeline's `finetune-classify` step with one
# thing changed (seed 42), then scored on the held-out (`evaluate`: macro AUC, the goal
# subset `sub_snr` >= 10 with every `no_sub`, ECE, in-domain fraction):
#   e20      the pipeline's step with 20 epochs (the model shipped until 2026-12-05)
#   e40      40 epochs (the pipeline's step since)
#   w128     a wider encoder (width 128, 4 heads), 20 epochs
#   snr10    20 epochs on the `cdm` / `axion` lenses with `sub_snr` >= 10 and every `no_sub`
#   snr3     the same with `sub_snr` >= 3
# and paired bootstraps (bench/paired_auc.py) of each against e20.
#
#   PY=.venv/bin/python [RUN=runs/survey-residual] bench/survey_residual_variants.sh [OUT_DIR] [VARIANT ...]
#
# Needs the pipeline's `simulate-train` and `simulate-heldout` steps first; PY needs
# numpy, pyarrow and scikit-learn. About 15 minutes a variant on 2 cores (w128 40).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/survey-residual}
OUT=${1:-$RUN/variants}
shift || true
VARIANTS=("$@")
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=(e20 e40 w128 snr10 snr3)
PY=${PY:-python}
B=${LENSMAE:-./target/release/lensmae}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae
mkdir -p "$OUT"
HELDOUT="$RUN/heldout-residuals/dataset.parquet"
cat > "$OUT/vit-w128-d4-p4.json" <<'JSON'
{"image_size": 64, "in_channels": 1, "patch_size": 4, "embed_dim": 128, "depth": 4, "num_heads": 4,
 "decoder_embed_dim": 64, "decoder_depth": 1, "decoder_num_heads": 2, "mlp_ratio": 2.0, "layer_norm_eps": 1e-6, "norm_pix_loss": false}
JSON
for th in 10 3; do
    "$PY" - "$RUN/train/dataset.parquet" "$OUT/train-snr$th.parquet" "$th" <<'PYEOF'
import sys
import pyarrow.compute as pc
import pyarrow.parquet as pq
table = pq.read_table(sys.argv[1])
keep = pc.or_(pc.equal(table.column("label"), "no_sub"), pc.greater_equal(table.column("sub_snr"), float(sys.argv[3])))
pq.write_table(table.filter(keep), sys.argv[2], row_group_size=1000)
PYEOF
done
common=(--task classify --scratch --scaling noise-asinh --pooling mean --augment dihedral --batch-size 64 --lr 1e-3 --seed 42 --overwrite)
for v in "${VARIANTS[@]}"; do
    case $v in
        e20) args=(--data "$RUN/train/dataset.parquet" --model pipelines/models/vit-w64-d4-p4.json --epochs 20) ;;
        e40) args=(--data "$RUN/train/dataset.parquet" --model pipelines/models/vit-w64-d4-p4.json --epochs 40) ;;
        w128) args=(--data "$RUN/train/dataset.parquet" --model "$OUT/vit-w128-d4-p4.json" --epochs 20) ;;
        snr10|snr3) args=(--data "$OUT/train-$v.parquet" --model pipelines/models/vit-w64-d4-p4.json --epochs 20) ;;
        *) echo "unknown variant $v"; exit 2 ;;
    esac
    [ -f "$OUT/$v.safetensors" ] || $B finetune "${common[@]}" "${args[@]}" --out "$OUT/$v.safetensors" > "$OUT/$v.log" 2>&1
    echo "== $v: $(grep -E '^best epoch|^test:' "$OUT/$v.log" | tr '\n' ' ')"
    $B evaluate --model "$OUT/$v.safetensors" --input "$HELDOUT" --report "$OUT/$v-heldout.json" --overwrite \
        2>&1 >/dev/null | sed -n 1,3p
    $B predict --input "$HELDOUT" --model "$OUT/$v.safetensors" --keep id --out "$OUT/$v-heldout.parquet" \
        --overwrite > /dev/null 2>&1
done
if [ -f "$OUT/e20-heldout.parquet" ]; then
    for v in "${VARIANTS[@]}"; do
        [ "$v" = e20 ] && continue
        for flag in "" --goal; do
            echo "$v against e20, ${flag:-all}: $($PY bench/paired_auc.py "$HELDOUT" "$v=$OUT/$v-heldout.parquet" \
                e20="$OUT/e20-heldout.parquet" $flag | tr -d '\n ')"
        done
    done
fi
