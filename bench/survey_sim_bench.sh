#!/usr/bin/env bash
# Simulator benchmark on the `survey` preset: lensmae against lenstronomy 1.14's SimAPI
# rendering the same recipe (bench/lenstronomy_survey.py: lens light, TNFW subhalos,
# the smooth render for sub_snr and a noise realisation per image, as lensmae does),
# both measured in this one run on this machine.
#
#   LENSTRONOMY_PY=/path/to/python bench/survey_sim_bench.sh [images_per_class]
#
# The Python needs tests/oracle/requirements-survey.txt. Prints a Markdown table, then
# what 100x at two threads allows one core per image against what lensmae's parts
# take on one thread (the noise-free render alone, the noise realisation alone).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
LENSTRONOMY_PY=${LENSTRONOMY_PY:-python3}

cargo build --release --quiet --example render_speed
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)" >&2
# Best of three runs each: the machine is shared.
mem1=$(for _ in 1 2 3; do ./target/release/examples/render_speed survey 1 "$N" stages; done)
mem2=$(for _ in 1 2 3; do ./target/release/examples/render_speed survey 2 "$N"; done)
lens=$("$LENSTRONOMY_PY" bench/lenstronomy_survey.py bench 50 3 2>/dev/null | tail -1)

python3 - "$mem1" "$mem2" "$lens" <<'PY'
import json, sys
def best(lines, key="images_per_s", pick=max):
    out = {}
    for line in lines.splitlines():
        r = json.loads(line)
        out[r["class"]] = pick(out.get(r["class"], r[key]), r[key])
    return out
mem1, mem2 = best(sys.argv[1]), best(sys.argv[2])
render, noise = best(sys.argv[1], "us_render_noise_free", min), best(sys.argv[1], "us_noise", min)
lens = json.loads(sys.argv[3])
print(f"| class | lenstronomy {lens['version']} SimAPI, 1 thread | lensmae in memory, 1 thread | lensmae in memory, 2 threads | 2-thread / lenstronomy | 1-thread / lenstronomy (per core) |")
print("|---|---|---|---|---|---|")
for c in ["no_sub", "cdm", "axion"]:
    l = lens["results"][c]["images_per_s"]
    print(f"| {c} | {l:.0f} | {mem1[c]:.0f} | {mem2[c]:.0f} | {mem2[c]/l:.1f}x | {mem1[c]/l:.1f}x |")
print()
print("| class | 100x at 2 threads: us of one core per image | lensmae, 1 thread: whole image, us | noise-free render alone, us | noise alone, us |")
print("|---|---|---|---|---|")
for c in ["no_sub", "cdm", "axion"]:
    budget = 2e6 / (100 * lens["results"][c]["images_per_s"])
    print(f"| {c} | {budget:.0f} | {1e6/mem1[c]:.0f} | {render[c]:.0f} | {noise[c]:.0f} |")
PY
