#!/usr/bin/env bash
# A survey classifier on lenses lensmae did not render: the `survey` recipe drawn
# and rendered by lenstronomy 1.14 (`bench/lenstronomy_survey.py write`: its own
# random draws, a SimAPI per image, its Euclid VIS noise and sub_snr), put through
# the same report as the model's own held-out lenses (macro and per-class AUC, AUC
# and detection per bin of sub_snr, Einstein radius, source magnitude and largest
# subhalo mass, calibration, the in-domain fraction).
#
#   LENSTRONOMY_PY=.venv-survey/bin/python [TTA=dihedral] bench/survey_second_simulator.sh [MODEL] [N_PER_CLASS] [SEED] [OUT_DIR]
#
# TTA=dihedral scores the model's answers averaged over the 8 turns and mirrors of
# each lens (`evaluate --tta dihedral`; the report gets a `-tta` suffix).
# MODEL defaults to bundled:survey-classifier; the lenses (N_PER_CLASS a class,
# default 1000, numpy seed SEED, default 7) are written once to
# OUT_DIR/lens-N-SEED.parquet (default OUT_DIR runs/lenstronomy-survey) and reused.
# The interpreter needs tests/oracle/requirements-survey.txt (lenstronomy 1.14.2).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${LENSTRONOMY_PY:-python3}
MODEL=${1:-bundled:survey-classifier}
N=${2:-1000}
SEED=${3:-7}
OUT=${4:-runs/lenstronomy-survey}
mkdir -p "$OUT"
LENSES="$OUT/lens-$N-$SEED.parquet"
if [ ! -f "$LENSES" ]; then
    "$PY" bench/lenstronomy_survey.py write "$N" "$SEED" "$LENSES"
fi
cargo build --release --quiet --bin lensmae
NAME=$(basename "${MODEL#bundled:}" .safetensors)
TTA=${TTA:-none}
SUFFIX=$([ "$TTA" = none ] || echo "-tta")
./target/release/lensmae evaluate --model "$MODEL" --input "$LENSES" --tta "$TTA" \
    --report "$OUT/$NAME-$N-$SEED$SUFFIX.json" --overwrite
