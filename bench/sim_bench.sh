#!/usr/bin/env bash
# Simulator benchmark: lensmae against lenstronomy and caustics on the DeepLense
# Model II recipe, all measured in this one run on this machine.
#
#   LENSTRONOMY_PY=/path/to/python CAUSTICS_PY=/path/to/python bench/sim_bench.sh [images_per_class]
#
# The two Pythons need bench/requirements-lenstronomy.txt and
# bench/requirements-caustics.txt (separate environments: lenstronomy 1.9.3 needs
# numpy < 2). Prints a Markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
LENSTRONOMY_PY=${LENSTRONOMY_PY:-python3}
CAUSTICS_PY=${CAUSTICS_PY:-python3}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

cargo build --release --quiet --bin lensmae --example render_speed
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)" >&2

# Every figure is the best of three runs (caustics: of three batches): the machine
# is shared and a single run can lose a third of its speed to neighbours.
declare -A e2e
for t in 1 2; do
    for c in no_sub cdm axion; do
        best=0
        for _ in 1 2 3; do
            rate=$(./target/release/lensmae simulate --preset deeplense-model2 --classes "$c" --n-per-class "$N" \
                --seed 1 --threads "$t" --out "$OUT/d" --overwrite 2>&1 | sed -E 's/.*\(([0-9]+) images\/s\).*/\1/')
            (( rate > best )) && best=$rate
        done
        e2e[$c,$t]=$best
    done
done
mem1=$(for _ in 1 2 3; do ./target/release/examples/render_speed deeplense-model2 1 "$N"; done)
mem2=$(for _ in 1 2 3; do ./target/release/examples/render_speed deeplense-model2 2 "$N"; done)
lens=$("$LENSTRONOMY_PY" bench/lenstronomy_sim.py 200 3 2>/dev/null | tail -1)
caus=$("$CAUSTICS_PY" bench/caustics_sim.py 2 256 3 2>/dev/null | tail -1)

python3 - "$mem1" "$mem2" "$lens" "$caus" "${e2e[no_sub,1]}" "${e2e[cdm,1]}" "${e2e[axion,1]}" \
    "${e2e[no_sub,2]}" "${e2e[cdm,2]}" "${e2e[axion,2]}" <<'PY'
import json, sys
def best(lines):
    out = {}
    for line in lines.splitlines():
        r = json.loads(line)
        out[r["class"]] = max(out.get(r["class"], 0.0), r["images_per_s"])
    return out
mem1, mem2 = best(sys.argv[1]), best(sys.argv[2])
lens = json.loads(sys.argv[3])["results"]
caus = json.loads(sys.argv[4])["results"]
classes = ["no_sub", "cdm", "axion"]
e1 = dict(zip(classes, map(float, sys.argv[5:8])))
e2 = dict(zip(classes, map(float, sys.argv[8:11])))
print("| class | lenstronomy 1.9.3, 1 thread | caustics 1.7.1, 2 threads | lensmae in memory, 1 thread | lensmae in memory, 2 threads | lensmae simulate to Parquet, 1 thread | lensmae simulate to Parquet, 2 threads | 2-thread in-memory / lenstronomy | 1-thread / lenstronomy (per core) | 2-thread / caustics |")
print("|---|---|---|---|---|---|---|---|---|---|")
for c in classes:
    l, k = lens[c]["images_per_s"], caus[c]["images_per_s"]
    print(f"| {c} | {l:.0f} | {k:.0f} | {mem1[c]:.0f} | {mem2[c]:.0f} | {e1[c]:.0f} | {e2[c]:.0f} | {mem2[c]/l:.0f}x | {mem1[c]/l:.0f}x | {mem2[c]/k:.0f}x |")
PY
