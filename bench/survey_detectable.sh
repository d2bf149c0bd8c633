#!/usr/bin/env bash
# Does the classifier fail on survey lenses because it cannot learn, or because most
# of their substructure is invisible? `axion` vs `no_sub` on the `survey` preset,
# trained (a) on every lens and (b) only on `axion` lenses whose substructure a
# smooth lens cannot imitate (sub_snr_refit >= MIN) against as many `no_sub` lenses
# matched in source magnitude, and both evaluated on the held-out lenses of
# `pipelines/survey.toml` (seed 22, which carry sub_snr_refit) per bin of
# sub_snr_refit: `evaluate`'s detection AUC against all `no_sub`, and against `no_sub`
# reweighted to the bin's source magnitudes (the AUC that brightness cannot make).
#
#   PY=python-with-pyarrow [RUNS=...] [MATCH_BRIGHTNESS=0] bench/survey_detectable.sh [OUT_DIR] [PER_CLASS] [MIN] [EPOCHS]
#
# Needs runs/survey/heldout/dataset.parquet (`lensmae run pipelines/survey.toml`,
# or its simulate-heldout step alone).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/detectable}
PER_CLASS=${2:-8000}
MIN=${3:-10}
EPOCHS=${4:-15}
PY=${PY:-python3}
HELDOUT=runs/survey/heldout/dataset.parquet
mkdir -p "$OUT"
cargo build --release --quiet --bin lensmae
B=./target/release/lensmae
M=pipelines/models/vit-w64-d4-p8.json

if [ ! -f "$OUT/train/dataset.parquet" ]; then
    $B simulate --preset survey --classes axion,no_sub --n-per-class "$PER_CLASS" --seed 51 \
        --refit-detectability --out "$OUT/train" --overwrite --quiet
fi
# The training subsets and the held-out's axion / no_sub rows, as Parquet files that
# keep the dataset's metadata.
"$PY" - "$OUT" "$MIN" "$HELDOUT" "${MATCH_BRIGHTNESS:-1}" <<'EOF'
import sys
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
out, minimum, heldout, match_brightness = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
train = pq.read_table(f"{out}/train/dataset.parquet")
label = train["label"].to_numpy(zero_copy_only=False)
refit = train["sub_snr_refit"].to_numpy(zero_copy_only=False)
magnitude = train["source_magnitude"].to_numpy(zero_copy_only=False)
detectable = np.flatnonzero((label == "axion") & (refit >= minimum))
# Detectable substructure sits on bright arcs: each selected axion lens gets the
# unused no_sub lens nearest in source magnitude, so that brightness tells nothing.
# (MATCH_BRIGHTNESS=0: the first no_sub lenses, to see what brightness alone gives.)
free = np.flatnonzero(label == "no_sub")
matched = []
for row in np.random.default_rng(0).permutation(detectable):
    nearest = np.argmin(np.abs(magnitude[free] - magnitude[row])) if match_brightness else 0
    matched.append(free[nearest])
    free = np.delete(free, nearest)
pq.write_table(train.take(np.sort(np.r_[detectable, matched])), f"{out}/detectable.parquet")
# The unselected control with the same number of rows of each class.
n = len(detectable)
unselected = np.r_[np.flatnonzero(label == "axion")[:n], np.flatnonzero(label == "no_sub")[:n]]
pq.write_table(train.take(np.sort(unselected)), f"{out}/unselected.parquet")
held = pq.read_table(heldout)
pq.write_table(held.filter(pc.not_equal(held["label"], "cdm")), f"{out}/heldout.parquet")
print(f"{n} of {(label == 'axion').sum()} axion lenses with sub_snr_refit >= {minimum}; source magnitude median "
      f"{np.median(magnitude[detectable]):.2f} (matched no_sub {np.median(magnitude[matched]):.2f})")
EOF

# train NAME DATA POOLING AUGMENT LR [SCALING]
train() {
    local name=$1 data=$2 pooling=$3 augment=$4 lr=$5 scaling=${6:-noise-asinh}
    $B finetune --task classify --scratch --model "$M" --epochs "$EPOCHS" --batch-size 64 --seed 42 \
        --data "$OUT/$data.parquet" --scaling "$scaling" --pooling "$pooling" --augment "$augment" --lr "$lr" \
        --out "$OUT/$name.safetensors" --overwrite 2>&1 | tail -1
    $B evaluate --model "$OUT/$name.safetensors" --input "$OUT/heldout.parquet" \
        --report "$OUT/$name-heldout.json" --overwrite 2>&1 | grep -E '^macro AUC|^sub_snr_refit'
}
# RUNS: which models to train (default all); `-antisymmetric`: mean pooling on the
# images' point-antisymmetric part, in which the deflector's light cancels.
for run in ${RUNS:-detectable-mean detectable-antisymmetric detectable-flatten unselected-mean unselected-flatten}; do
    echo "== $run =="
    case $run in
        *-antisymmetric) train "$run" "${run%-antisymmetric}" mean dihedral 1e-3 antisymmetric-asinh ;;
        *-mean) train "$run" "${run%-mean}" mean dihedral 1e-3 ;;
        *-flatten) train "$run" "${run%-flatten}" flatten none 3e-4 ;;
    esac
done
