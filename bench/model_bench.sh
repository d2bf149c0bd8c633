#!/usr/bin/env bash
# Model speed: lensmae (candle) against its PyTorch twin, the paper's architecture
# (64x64, patch 4, width 192, 6 blocks), batch 64, on this machine's CPU cores.
#
#   TORCH_PY=/path/to/python bench/model_bench.sh [steps]
#
# TORCH_PY needs torch (any recent CPU or CUDA build; it runs on the CPU here).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-3}
TORCH_PY=${TORCH_PY:-python3}
cargo build --release --quiet --example model_speed
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)" >&2
ours=$(./target/release/examples/model_speed 64 "$STEPS")
theirs=$("$TORCH_PY" bench/model_torch.py "$(nproc)" 64 "$STEPS" 2>/dev/null | tail -1)
python3 - "$ours" "$theirs" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"| measure (batch 64, images/s, best of steps) | lensmae | PyTorch {b['version']} | lensmae / PyTorch |")
print("|---|---|---|---|")
for key, name in [("classify_train_images_per_s", "classifier training step (fwd + bwd + AdamW)"),
                  ("mae_train_images_per_s", "MAE training step, mask 0.9"),
                  ("inference_images_per_s", "classifier inference")]:
    print(f"| {name} | {a[key]:.1f} | {b[key]:.1f} | {a[key] / b[key]:.2f}x |")
PY
