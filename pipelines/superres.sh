#!/usr/bin/env bash
# The paper's super-resolution protocol on deeplense-model2 data (16x16 -> 64x64,
# LR = 4x4 block means of HR): the paper's head fine-tuned from an MAE checkpoint
# and from scratch, the flux-conserving option and the bicubic-residual variant,
# beside the bicubic and nearest baselines on the same held-out pairs. PER_CLASS
# pairs per class are simulated; EPOCHS is each run's budget. RESULTS.md records
# what it printed.
#
#   bash pipelines/superres.sh [RUN_DIR] [PER_CLASS] [EPOCHS] [MAE_CHECKPOINT]
#
# MAE_CHECKPOINT defaults to the one pipelines/classify.sh pretrains
# (runs/classify/mae.safetensors); runs resume (a finished one is kept).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/superres}
PER_CLASS=${2:-1000}
EPOCHS=${3:-6}
MAE=${4:-runs/classify/mae.safetensors}
SEED=42
L=target/release/lensmae
cargo build --release --quiet --bin lensmae
mkdir -p "$RUN"
[ -f "$RUN/data/dataset.parquet" ] ||
    $L simulate --preset deeplense-model2 --task superres --factor 4 --n-per-class "$PER_CLASS" --seed 2 --out "$RUN/data" -q
D="$RUN/data/dataset.parquet"
ft=(finetune --task superres --data "$D" --seed "$SEED" --batch-size 32 --val-fraction 0.1 --test-fraction 0.2
    --epochs "$EPOCHS" --resume)
$L "${ft[@]}" --init "$MAE" --out "$RUN/mae-paper-head.safetensors"
$L "${ft[@]}" --scratch --out "$RUN/scratch-paper-head.safetensors"
$L "${ft[@]}" --init "$MAE" --flux-conserving --out "$RUN/mae-flux-conserving.safetensors"
$L "${ft[@]}" --init "$MAE" --residual --out "$RUN/mae-residual.safetensors"
for m in mae-paper-head scratch-paper-head mae-flux-conserving mae-residual; do
    echo "== $m (held-out test split)"
    $L model info "$RUN/$m.safetensors" | python3 -c 'import json,sys; p=json.load(sys.stdin)["provenance"]; print(json.dumps({"best_epoch": p["best_epoch"], "test_split": p["test_split"], "test": p["test"]}))'
done
$L evaluate --model "$RUN/mae-paper-head.safetensors" --input "$D" --report "$RUN/mae-paper-head-all.json" --grid "$RUN/grid.png" --overwrite
