#!/usr/bin/env bash
# The GPU check of lensmae, on a host with an NVIDIA GPU (H100/H200) and no Rust:
# it runs the binaries that bench/build-cuda.sh built and packed (xz, in BIN_DIR:
# lensmae, device_parity, model_speed), and PyTorch where python3 has it.
#
#   bench/gpu-check.sh [BIN_DIR=.gpu] [OUT_DIR=${OUT:-gpu-check}] [PER_CLASS=30000]
#
# 1. parity: CPU versus GPU, one forward pass and one AdamW step of the classifier,
#    the MAE and the SR model (examples/device_parity.rs), in f32 and with TF32;
# 2. speed: training and inference images/s of lensmae (batch 256) and of the
#    PyTorch twin on the same GPU (bench/model_torch.py), f32 and TF32;
# 3. protocol: the paper's data scale (PER_CLASS Model II images per class, 90k in
#    all by default) simulated, MAE pretraining on no_sub (mask 0.9, 10 epochs) and
#    fine-tuning (5 epochs, per-pixel standardisation), on the GPU, timed; each step
#    has a time limit, and its JSONL log gives the per-epoch time either way.
# Each stage writes its own files into OUT_DIR (at most 8 files), so a failed
# stage loses only its own numbers.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN_DIR=${1:-.gpu}
OUT_DIR=${2:-${OUT:-gpu-check}}
PER_CLASS=${3:-${PER_CLASS:-30000}}
STAGES=${STAGES:-parity speed protocol}
DEVICE=${DEVICE:-cuda}   # cpu: a dry run of the script itself on a machine without a GPU
mkdir -p "$OUT_DIR"
W=$(mktemp -d)
log() { echo "[$(date +%T)] $*" | tee -a "$OUT_DIR/gpu-check.log"; }

for packed in "$BIN_DIR"/*.xz; do
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    "$packed" "$W/$(basename "${packed%.xz}")"
  chmod +x "$W/$(basename "${packed%.xz}")"
done
# The CUDA libraries the binary links (readelf NEEDED, bench/build-cuda.sh): the
# driver's libcuda from the host, the others from wherever PyTorch's wheels put them.
for lib in libcublas.so.13 libcublasLt.so.13 libcudart.so.13 libcurand.so.10 libnvrtc.so.13; do
  found=$(find /opt /usr/local /usr/lib -name "$lib" 2>/dev/null | head -1)
  [ -n "$found" ] && LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
export LD_LIBRARY_PATH
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  nproc
  python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())' 2>&1
  ldd "$W/lensmae" | grep -E 'cu|nvrtc|not found'
} > "$OUT_DIR/env.txt" 2>&1
log "environment: $(head -2 "$OUT_DIR/env.txt" | tail -1)"

if [[ " $STAGES " == *" parity "* ]]; then
  log "parity f32"
  timeout 120 "$W/device_parity" "$DEVICE" 16 > "$OUT_DIR/parity.json" 2>> "$OUT_DIR/gpu-check.log"
  log "parity f32 exit $? $(grep -E '"(pass|worst_rel)"' "$OUT_DIR/parity.json" | tr -d ' \n')"
  timeout 120 "$W/device_parity" "$DEVICE" 16 tf32 > "$OUT_DIR/parity-tf32.json" 2>> "$OUT_DIR/gpu-check.log"
  log "parity tf32 exit $? $(grep -E '"(pass|worst_rel)"' "$OUT_DIR/parity-tf32.json" | tr -d ' \n')"
fi

if [[ " $STAGES " == *" speed "* ]]; then
  for precision in f32 tf32; do
    # One process per measure, so one that fails (out of memory, say) loses only its own figure.
    for measure in classify_train mae_train_075 mae_train_090 classify_infer superres_train superres_infer; do
      for batch in ${SPEED_BATCHES:-256}; do
        log "speed lensmae $precision $measure batch $batch"
        timeout 60 "$W/model_speed" "$batch" 10 "$measure" "$DEVICE" "$precision" >> "$OUT_DIR/speed.jsonl" \
          2>> "$OUT_DIR/gpu-check.log"
      done
    done
    if [ "${TORCH:-1}" = 1 ]; then
      log "speed pytorch $precision"
      timeout 150 python3 bench/model_torch.py "$(nproc)" 256 10 all "$DEVICE" "$precision" >> "$OUT_DIR/speed.jsonl" \
        2>> "$OUT_DIR/gpu-check.log"
    fi
  done
  log "speed done: $(wc -l < "$OUT_DIR/speed.jsonl") lines"
fi

if [[ " $STAGES " == *" protocol "* ]]; then
  L="$W/lensmae"
  SECONDS=0
  timeout 120 "$L" simulate --preset deeplense-model2 --n-per-class "$PER_CLASS" --seed 1 --out "$W/data" -q \
    2>> "$OUT_DIR/gpu-check.log"
  log "simulate $PER_CLASS per class exit $? in ${SECONDS} s"
  common=(--data "$W/data/dataset.parquet" --seed 42 --batch-size 64 --val-fraction 0.1 --test-fraction 0.2 --device "$DEVICE")
  SECONDS=0
  timeout "${PRETRAIN_LIMIT:-150}" "$L" pretrain "${common[@]}" --classes no_sub --mask-ratio 0.9 --epochs 10 \
    --out "$W/mae.safetensors" > "$OUT_DIR/protocol.txt" 2>> "$OUT_DIR/gpu-check.log"
  log "pretrain exit $? in ${SECONDS} s"
  SECONDS=0
  timeout "${FINETUNE_LIMIT:-200}" "$L" finetune --task classify "${common[@]}" --epochs 5 --lr 1e-4 \
    --standardise-pixels $([ -f "$W/mae.safetensors" ] && echo --init "$W/mae.safetensors" || echo --scratch) --out "$W/finetuned.safetensors" \
    >> "$OUT_DIR/protocol.txt" 2>> "$OUT_DIR/gpu-check.log"
  log "finetune exit $? in ${SECONDS} s"
  for f in "$W"/mae.log.jsonl "$W"/finetuned.log.jsonl; do
    [ -f "$f" ] && { echo "== $(basename "$f")"; cat "$f"; } >> "$OUT_DIR/protocol.txt"
  done
  [ -f "$W/finetuned.safetensors" ] && "$L" model info "$W/finetuned.safetensors" >> "$OUT_DIR/protocol.txt" 2>&1
fi
log "done"
