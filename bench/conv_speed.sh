#!/usr/bin/env bash
# A convolutional classifier's training speed on the CPU: lensmae's ResNet
# (src/model/resnet.rs, its fused ops), the same network from candle-nn's own ops
# (both examples/conv_speed.rs) and PyTorch (bench/conv_speed.py), the same ResNet-18
# layout of each width, one after the other on the same cores (images/s of the
# fastest step).
#
#   TORCH_PY=.venv-torch/bin/python bench/conv_speed.sh [WIDTHS (default "16 32")] [BATCH] [STEPS]
#
# TORCH_PY needs bench/requirements-torch.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_PY=${TORCH_PY:-python}
WIDTHS=${1:-16 32}
BATCH=${2:-64}
STEPS=${3:-8}
cargo build --release --quiet --example conv_speed
# As the CLI sets it (src/main.rs): mimalloc keeps freed pages for the next step.
export MIMALLOC_PURGE_DELAY=-1
for width in $WIDTHS; do
    ./target/release/examples/conv_speed "$width" "$BATCH" "$STEPS" lensmae
    ./target/release/examples/conv_speed "$width" "$BATCH" "$STEPS" candle-nn
    (cd bench && "$TORCH_PY" conv_speed.py "$width" "$BATCH" "$STEPS")
done
