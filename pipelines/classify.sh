#!/usr/bin/env bash
# The paper's classification protocol on deeplense-model2 data:
# MAE pretraining on no_sub (mask 0.9), then MAE-initialised fine-tuning, training
# from scratch and a frozen-encoder linear probe at the same budget, plus the
# logistic-regression baseline on the same test split. PER_CLASS images per class
# are simulated; EPOCHS is the fine-tuning budget (pretraining gets twice as
# many). RESULTS.md records what it printed at each scale it was run at.
#
#   bash pipelines/classify.sh [RUN_DIR] [PER_CLASS] [EPOCHS]
#
# (This becomes a TOML pipeline for `lensmae run` when that exists.)
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/classify}
PER_CLASS=${2:-300}
EPOCHS=${3:-5}
SEED=42
FT_LR=${FT_LR:-1e-4}
L=target/release/lensmae
cargo build --release --quiet --bin lensmae
mkdir -p "$RUN"
# Steps whose output exists are kept (delete the run directory to start over).
[ -f "$RUN/data/dataset.parquet" ] ||
    $L simulate --preset deeplense-model2 --n-per-class "$PER_CLASS" --seed 1 --out "$RUN/data" -q
D="$RUN/data/dataset.parquet"
common=(--data "$D" --seed "$SEED" --batch-size 64 --val-fraction 0.1 --test-fraction 0.2)
# --resume: a finished run is kept, an interrupted one continues.
$L pretrain "${common[@]}" --resume --classes no_sub --mask-ratio 0.9 --epochs $((2 * EPOCHS)) --out "$RUN/mae.safetensors"
ft=(finetune --task classify "${common[@]}" --epochs "$EPOCHS" --resume)
$L "${ft[@]}" --lr "$FT_LR" --init "$RUN/mae.safetensors" --out "$RUN/mae-finetuned.safetensors"
$L "${ft[@]}" --lr "$FT_LR" --scratch --out "$RUN/scratch.safetensors"
$L "${ft[@]}" --init "$RUN/mae.safetensors" --freeze-encoder --out "$RUN/probe.safetensors"
for m in mae-finetuned scratch probe; do
    echo "== $m"
    $L model info "$RUN/$m.safetensors" | python3 -c 'import json,sys; p=json.load(sys.stdin)["provenance"]; print(json.dumps({"test": p["test"], "test_split": p["test_split"], "best_epoch": p["best_epoch"]}))'
done
echo "== logistic regression baseline (needs numpy, pyarrow, scikit-learn)"
"${PYTHON:-python3}" bench/baseline_logreg.py "$D" "$RUN/scratch.split.json"
