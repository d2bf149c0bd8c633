#!/usr/bin/env bash
# What does a survey cutout's pixel scale do to the survey classifier? Euclid VIS
# images are 0.1"/px; the `survey` preset (lenstronomy's Euclid configuration) and the
# bundled survey classifier are at 0.101"/px. The held-out lenses of
# `pipelines/survey.toml` (seed 22, 1,000 a class) are rendered again at other pixel
# scales (the same lenses: the scale draws nothing), and predicted both ways `predict`
# offers: resampled to the model's scale (flux-conserving, the default) and taken as
# they are (`--pixel-scale model`). Each line: macro AUC, the goal subset's, the
# fraction in the model's domain and those rows' macro AUC (`evaluate --predictions`).
#
#   bench/survey_pixel_scale.sh [OUT_DIR] [MODEL] [SCALE...]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/survey-pixel-scale}
MODEL=${2:-bundled:survey-classifier}
shift 2 || shift $#
SCALES=("$@")
[ ${#SCALES[@]} -gt 0 ] || SCALES=(0.101 0.1 0.098 0.095 0.105 0.11 0.125)
mkdir -p "$OUT"
B=${LENSMAE:-./target/release/lensmae}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae
$B simulate --preset survey --print-config > "$OUT/survey.toml"

score() {
    $B evaluate --predictions "$OUT/$1.parquet" --input "$2" 2>/dev/null | ${PY:-python3} bench/report_line.py
}

for scale in "${SCALES[@]}"; do
    sed "s/^pixel_scale = .*/pixel_scale = $scale/" "$OUT/survey.toml" > "$OUT/survey-$scale.toml"
    $B simulate --config "$OUT/survey-$scale.toml" --n-per-class 1000 --seed 22 --out "$OUT/lenses-$scale" \
        --overwrite --quiet
    data="$OUT/lenses-$scale/dataset.parquet"
    $B predict --input "$data" --model "$MODEL" --keep id --out "$OUT/resampled-$scale.parquet" --overwrite \
        > /dev/null
    echo "$scale\"/px, resampled to the model's scale: $(score "resampled-$scale" "$data")"
    $B predict --input "$data" --model "$MODEL" --keep id --pixel-scale model --out "$OUT/as-is-$scale.parquet" \
        --overwrite > /dev/null
    echo "$scale\"/px, taken as it is:                $(score "as-is-$scale" "$data")"
done
