#!/usr/bin/env bash
# Model speed: lensmae (candle + fused CPU kernels) against its PyTorch twin, the
# paper's architecture (64x64, patch 4, width 192, 6 blocks), batch 64, on this
# machine's CPU cores, in one run: images/s, the ratio to PyTorch (with its fused
# scaled_dot_product_attention, and with attention written out), the achieved
# GFLOP/s of the matrix products and their fraction of the measured sgemm peak
# (the faster of gemm's and torch.mm's 2048^3 products), and the peak memory of a
# process doing classifier training steps.
#
#   TORCH_PY=/path/to/python bench/model_bench.sh [steps] [rounds]
#
# TORCH_PY needs torch (any recent CPU or CUDA build; it runs on the CPU here).
# The two sides run alternately for `rounds` rounds (default 3) and each figure
# is that side's best over all rounds and steps: on a shared machine a
# neighbour's load comes and goes over minutes, and alternating lets both
# sides meet the same quiet spells. Every round is printed to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-3}
ROUNDS=${2:-3}
TORCH_PY=${TORCH_PY:-python3}
cargo build --release --quiet --example model_speed
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)" >&2
runs=()
for round in $(seq "$ROUNDS"); do
  ours=$(./target/release/examples/model_speed 64 "$STEPS")
  theirs=$("$TORCH_PY" bench/model_torch.py "$(nproc)" 64 "$STEPS" 2>/dev/null | tail -1)
  echo "round $round: $ours" >&2
  echo "round $round: $theirs" >&2
  runs+=("$ours" "$theirs")
done
peak_kb() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
ours_mem=$(peak_kb ./target/release/examples/model_speed 64 2 classify_train)
theirs_mem=$(peak_kb "$TORCH_PY" bench/model_torch.py "$(nproc)" 64 2 classify_train)
python3 - "$ours_mem" "$theirs_mem" "${runs[@]}" <<'PY'
import json, sys
runs = [json.loads(r) for r in sys.argv[3:]]
def best(tool):
    mine = [r for r in runs if r["tool"] == tool]
    merged = dict(mine[0])
    for r in mine[1:]:
        for k, v in r.items():
            if isinstance(v, float):
                merged[k] = max(merged[k], v)
    return merged
a, b = best("lensmae"), best("pytorch")
roof = max(a["sgemm_gflops"], b["sgemm_gflops"])
print(f"{len(runs) // 2} alternating rounds, best of each side")
print(f"sgemm 2048^3: gemm {a['sgemm_gflops']:.0f} GFLOP/s, torch.mm {b['sgemm_gflops']:.0f} GFLOP/s; roofline {roof:.0f}\n")
print(f"| measure (batch 64, images/s, best of steps) | lensmae | PyTorch {b['version']} (SDPA) | PyTorch, attention written out "
      "| lensmae / PyTorch SDPA | lensmae / PyTorch written out | lensmae GFLOP/s | of roofline |")
print("|---|---|---|---|---|---|---|---|")
for key, name in [("classify_train", "classifier training step (fwd + bwd + AdamW)"),
                  ("mae_train_075", "MAE training step, mask 0.75"),
                  ("mae_train_090", "MAE training step, mask 0.9"),
                  ("classify_infer", "classifier inference"),
                  ("superres_train", "SR training step (16x16 -> 64x64, L1)"),
                  ("superres_infer", "SR inference")]:
    gflops = a[key] * a["gflop_per_image"][key]
    print(f"| {name} | {a[key]:.1f} | {b[key]:.1f} | {b[key + '_unfused']:.1f} | {a[key] / b[key]:.2f}x "
          f"| {a[key] / b[key + '_unfused']:.2f}x | {gflops:.0f} | {gflops / roof:.0%} |")
print(f"\nMAE at mask 0.9 / classifier training: {a['mae_train_090'] / a['classify_train']:.1f}x")
print(f"peak RSS of a process running batch-64 classifier training steps: lensmae {int(sys.argv[1]) / 1e6:.2f} GB, "
      f"PyTorch {int(sys.argv[2]) / 1e6:.2f} GB")
PY
