#!/usr/bin/env bash
# End-to-end speed and memory of `lensmae predict` on simulated Model II cutouts:
# rows/s of the whole stage (read, preprocess, infer, write) beside the seconds
# spent in the model itself (reported by predict in the same run), and the peak
# resident memory, at each catalogue size given. The classifier is the small ViT
# of pipelines/models/vit-w64-d2-p8.json (trained one epoch: speed, not accuracy,
# is measured), so a 200k-row catalogue runs in minutes on 2 cores.
#
#   bench/stage_bench.sh [WORK=bench-stage] [ROWS...=10000 200000]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-bench-stage}
shift || true
SIZES=("${@:-10000 200000}")
L=target/release/lensmae
cargo build --release --quiet --bin lensmae
mkdir -p "$WORK"
[ -f "$WORK/train/dataset.parquet" ] ||
  $L simulate --preset deeplense-model2 --n-per-class 100 --seed 3 --out "$WORK/train" -q
[ -f "$WORK/clf.safetensors" ] ||
  $L finetune --task classify --data "$WORK/train/dataset.parquet" --scratch --epochs 1 \
    --model pipelines/models/vit-w64-d2-p8.json --out "$WORK/clf.safetensors" > /dev/null
for rows in ${SIZES[*]}; do
  data="$WORK/cutouts-$rows/dataset.parquet"
  [ -f "$data" ] || $L simulate --preset deeplense-model2 --n-per-class $((rows / 3)) --seed 5 --out "$WORK/cutouts-$rows" -q
  /usr/bin/time -v $L predict --input "$data" --model "$WORK/clf.safetensors" --out "$WORK/pred-$rows.parquet" \
    --overwrite > "$WORK/summary-$rows.json" 2> "$WORK/time-$rows.txt"
  python3 - "$WORK/summary-$rows.json" "$WORK/time-$rows.txt" <<'PY'
import json, re, sys
s = json.load(open(sys.argv[1]))
t = open(sys.argv[2]).read()
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
rate, model_rate = s["rows"] / s["seconds"], s["rows"] / s["model_seconds"]
print(json.dumps({"rows": s["rows"], "seconds": round(s["seconds"], 2), "rows_per_s": round(rate, 1),
                  "model_only_rows_per_s": round(model_rate, 1), "overhead": round(1 - rate / model_rate, 4),
                  "peak_rss_mb": round(rss, 1)}))
PY
done
