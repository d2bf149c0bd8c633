#!/usr/bin/env bash
# The fuzz campaign of every reader: EXECS mutated inputs per reader (default
# 1,000,000), under a 4 GiB address-space limit so that an unbounded allocation
# aborts instead of swapping, one process per reader (2 at a time).
#   bench/fuzz_campaign.sh [EXECS] [SEED] [READER...]   (default: all 9 readers)
# Prints one line per reader; an abort names the input being tried. With
# LENSMAE_FUZZ_CONTAINED=1, a decoder panic that a reader contains (an error to
# the user, "malformed file (the decoder failed: ...)") counts as a finding too.
set -u
EXECS=${1:-1000000}
SEED=${2:-1}
cd "$(dirname "$0")/.."
cargo build --release --quiet --example fuzz_campaign || exit 2
BIN=target/release/examples/fuzz_campaign
OUT=${OUT_DIR:-target/fuzz-campaign}
mkdir -p "$OUT"
run_one() {
    local t=$1
    ( ulimit -v 4194304; TMPDIR="$OUT" "$BIN" "$EXECS" "$SEED" "$t" ) > "$OUT/$t.txt" 2>&1
    local rc=$?
    if [ $rc -gt 1 ]; then
        echo "$t: the process ended with status $rc (abort or signal); the input being tried:" >> "$OUT/$t.txt"
        ls -la "$OUT"/.tmp*/current-"$t".bin >> "$OUT/$t.txt" 2>&1
    fi
    cat "$OUT/$t.txt"
}
export -f run_one
export BIN EXECS SEED OUT
echo "fuzz campaign: $EXECS execs per reader, seed $SEED, $(nproc) cores, $(date -u +%FT%TZ)"
READERS=("${@:3}")
[ ${#READERS[@]} -gt 0 ] || READERS=(fits-file fits-stamp parquet arrow-ipc npy pickle checkpoint sim-config pipeline)
printf '%s\n' "${READERS[@]}" |
    xargs -P 2 -I{} bash -c 'run_one {}'
