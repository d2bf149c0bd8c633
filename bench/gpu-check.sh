#!/usr/bin/env bash
# The GPU check of lensmae, on a host with an NVIDIA GPU (H100/H200) and no Rust:
# it runs the binaries that bench/build-cuda.sh built and packed (xz, in BIN_DIR:
# lensmae, device_parity, model_speed, layer_times), and PyTorch where python3 has it.
#
#   bench/gpu-check.sh [BIN_DIR=.gpu] [OUT_DIR=${OUT:-gpu-check}] [PER_CLASS=30000]
#
# Stages (STAGES, in this order; each writes its own file into OUT_DIR, so a
# failed stage loses only its own numbers, and all of them with env.txt and the
# log stay within the 8 files a lent device hands back; BUDGET_S skips the
# stages that would start after that many seconds):
# - parity: CPU versus GPU, one forward pass and one AdamW step of the classifier,
#   the MAE and the SR model (examples/device_parity.rs), per precision (PRECISIONS);
# - speed: training and inference images/s of lensmae (BATCH, 256), per precision,
#   one process per measure;
# - layers: a classification step split into forward, backward and AdamW, each
#   layer and kernel of a block alone (examples/layer_times.rs): where the time goes;
# - baseline: the same speed measures from another build's model_speed
#   (BASE_DIR/model_speed.xz, e.g. the commit before a change), in the same run;
# - torch: the PyTorch twin on the same GPU (bench/model_torch.py), per precision
#   (bf16: torch.autocast);
# - metrics: pipelines/quickstart.toml end to end on the GPU per precision, plus
#   f32 with the training seeds changed (42 -> 43) as the seed-noise yardstick;
# - protocol: the paper's data scale (PER_CLASS Model II images per class, 90k in
#   all by default) simulated, MAE pretraining on no_sub (mask 0.9) and
#   fine-tuning (per-pixel standardisation) on the GPU, each under a time limit;
#   the JSONL logs give the per-epoch times either way.
# DEVICE=cpu is a dry run of the script itself on a machine without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN_DIR=${1:-.gpu}
OUT_DIR=${2:-${OUT:-gpu-check}}
PER_CLASS=${3:-${PER_CLASS:-30000}}
STAGES=${STAGES:-parity speed layers baseline torch metrics protocol}
PRECISIONS=${PRECISIONS:-f32 tf32 bf16}
BUDGET_S=${BUDGET_S:-100000}
BATCH=${BATCH:-256}
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

start=$SECONDS
stage() {  # stage NAME: whether NAME was asked for and the budget still allows it
  [[ " $STAGES " == *" $1 "* ]] || return 1
  if (( SECONDS - start > BUDGET_S )); then log "$1 skipped: past the ${BUDGET_S} s budget"; return 1; fi
  log "stage $1"
}
MEASURES=${MEASURES:-classify_train mae_train_075 mae_train_090 classify_infer superres_train superres_infer}

if stage parity; then
  for precision in ${PARITY_PRECISIONS:-$PRECISIONS}; do
    timeout 120 "$W/device_parity" "$DEVICE" 16 "$precision" > "$W/parity.json" 2>> "$OUT_DIR/gpu-check.log"
    log "parity $precision exit $? $(grep -E '"(pass|worst_rel)"' "$W/parity.json" | tr -d ' \n')"
    cat "$W/parity.json" >> "$OUT_DIR/parity.json"
  done
fi

if stage speed; then
  for precision in $PRECISIONS; do
    for measure in $MEASURES; do
      for batch in ${SPEED_BATCHES:-$BATCH}; do
        timeout 60 "$W/model_speed" "$batch" "${STEPS:-10}" "$measure" "$DEVICE" "$precision" >> "$OUT_DIR/speed.jsonl" \
          2>> "$OUT_DIR/gpu-check.log"
        log "speed lensmae $precision $measure batch $batch exit $?"
      done
    done
  done
fi

if stage layers; then
  timeout 120 "$W/layer_times" "$DEVICE" "$BATCH" "${STEPS:-10}" > "$OUT_DIR/layers.json" 2>> "$OUT_DIR/gpu-check.log"
  log "layers exit $?"
fi

if stage baseline && [ -f "${BASE_DIR:-none}/model_speed.xz" ]; then
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    "$BASE_DIR/model_speed.xz" "$W/model_speed_base"
  chmod +x "$W/model_speed_base"
  for measure in $MEASURES; do
    # The older example took `tf32` or nothing as its precision.
    timeout 60 "$W/model_speed_base" "$BATCH" "${STEPS:-10}" "$measure" "$DEVICE" >> "$OUT_DIR/speed-baseline.jsonl" \
      2>> "$OUT_DIR/gpu-check.log"
    log "baseline $measure exit $?"
  done
fi

if stage torch; then
  for precision in $PRECISIONS; do
    timeout 150 python3 bench/model_torch.py "$(nproc)" "$BATCH" "${STEPS:-10}" fused "$DEVICE" "$precision" \
      >> "$OUT_DIR/speed.jsonl" 2>> "$OUT_DIR/gpu-check.log"
    log "speed pytorch $precision exit $?"
  done
fi

if stage metrics; then
  for run in ${METRIC_RUNS:-f32 bf16 f32-seed43}; do
    precision=${run%%-*}
    pipeline="$W/quickstart-$run.toml"
    sed -e "s|^dir = .*|dir = \"$W/quickstart-$run\"|" pipelines/quickstart.toml > "$pipeline"
    [[ "$run" == *seed43 ]] && sed -i -e 's/seed = 42/seed = 43/g' "$pipeline"
    SECONDS_BEFORE=$SECONDS
    echo "== $run" >> "$OUT_DIR/metrics.txt"
    timeout "${METRIC_LIMIT:-120}" "$W/lensmae" run "$pipeline" --device "$DEVICE" --precision "$precision" \
      >> "$OUT_DIR/metrics.txt" 2>> "$OUT_DIR/gpu-check.log"
    log "metrics $run exit $? in $((SECONDS - SECONDS_BEFORE)) s"
  done
fi

if stage protocol; then
  L="$W/lensmae"
  SECONDS_BEFORE=$SECONDS
  timeout 120 "$L" simulate --preset deeplense-model2 --n-per-class "$PER_CLASS" --seed 1 --out "$W/data" -q \
    2>> "$OUT_DIR/gpu-check.log"
  log "simulate $PER_CLASS per class exit $? in $((SECONDS - SECONDS_BEFORE)) s"
  common=(--data "$W/data/dataset.parquet" --seed 42 --batch-size 64 --val-fraction 0.1 --test-fraction 0.2
          --device "$DEVICE" --precision "${PROTOCOL_PRECISION:-f32}")
  SECONDS_BEFORE=$SECONDS
  timeout "${PRETRAIN_LIMIT:-150}" "$L" pretrain "${common[@]}" --classes no_sub --mask-ratio 0.9 --epochs 10 \
    --out "$W/mae.safetensors" > "$OUT_DIR/protocol.txt" 2>> "$OUT_DIR/gpu-check.log"
  log "pretrain exit $? in $((SECONDS - SECONDS_BEFORE)) s"
  SECONDS_BEFORE=$SECONDS
  timeout "${FINETUNE_LIMIT:-200}" "$L" finetune --task classify "${common[@]}" --epochs 5 --lr 1e-4 \
    --standardise-pixels $([ -f "$W/mae.safetensors" ] && echo --init "$W/mae.safetensors" || echo --scratch) --out "$W/finetuned.safetensors" \
    >> "$OUT_DIR/protocol.txt" 2>> "$OUT_DIR/gpu-check.log"
  log "finetune exit $? in $((SECONDS - SECONDS_BEFORE)) s"
  for f in "$W"/mae.log.jsonl "$W"/finetuned.log.jsonl; do
    [ -f "$f" ] && { echo "== $(basename "$f")"; cat "$f"; } >> "$OUT_DIR/protocol.txt"
  done
  [ -f "$W/finetuned.safetensors" ] && "$L" model info "$W/finetuned.safetensors" >> "$OUT_DIR/protocol.txt" 2>&1
fi
log "done in $((SECONDS - start)) s"
