#!/usr/bin/env bash
# Would a classifier tell `axion` from `no_sub` better if every cutout were turned and
# zoomed into its lens's own frame (the ring at one radius, the major axis along x)?
# The small ViT from scratch, 10 epochs, `axion` vs `no_sub`, 3,000 lenses a class of
# seed 31, as bench/survey_ablation.sh (setting B for noise-free recipes, C for the
# survey), on cutouts resampled by bench/theta_e_rescale.py with the frame taken from
# the simulator's truth, from the truth with errors, or from the cutout alone. Each
# line prints the test-split macro AUC of its `finetune`; the last two lines how much
# the cutout's ring radius says with and without the truth's theta_E, per recipe.
#
#   PY=.venv/bin/python bench/survey_canonical_frame.sh [OUT_DIR] [RUN...]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/survey-canonical-frame}
shift || true
PY=${PY:-python}
mkdir -p "$OUT"
B=${LENSMAE:-./target/release/lensmae}
[ -n "${LENSMAE:-}" ] || cargo build --release --quiet --bin lensmae
M=pipelines/models/vit-w64-d4-p8.json

$B simulate --preset survey --print-config > "$OUT/survey.toml"
drop() { awk -v re="$1" '/^\[/{skip = ($0 ~ re)} !skip'; }
drop '^\[noise\.exposure_time\]' < "$OUT/survey.toml" | sed 's/^type = "instrument"$/type = "none"/' \
    > "$OUT/noise-free.toml"
drop '^\[lens_light' < "$OUT/noise-free.toml" > "$OUT/bare.toml"
# Only the Einstein radius drawn (bench/survey_ablation.sh's `bare-theta-only`).
{ drop '^\[(lens\.(e1|e2|center_x|center_y)|shear\.)' < "$OUT/bare.toml"
  printf '\n[lens]\ne1 = 0.1\ne2 = 0.0\ncenter_x = 0.0\ncenter_y = 0.0\n\n[shear]\ngamma1 = 0.05\ngamma2 = 0.0\n'
} > "$OUT/bare-theta-only.toml"

# run RECIPE FRAME SETTING
run() {
    local recipe=$1 frame=$2 setting=$3 flags data result
    case $setting in
        B) flags=(--scaling minmax --standardise-pixels --pooling flatten --augment none --lr 1e-3) ;;
        C) flags=(--scaling noise-asinh --pooling flatten --augment none --lr 3e-4) ;;
    esac
    [ -f "$OUT/$recipe/dataset.parquet" ] || $B simulate --config "$OUT/$recipe.toml" --classes axion,no_sub \
        --n-per-class 3000 --seed 31 --out "$OUT/$recipe" --overwrite --quiet
    data="$OUT/$recipe/dataset.parquet"
    if [ "$frame" != as-simulated ]; then
        data="$OUT/$recipe-frame.parquet"
        $PY bench/theta_e_rescale.py "$OUT/$recipe/dataset.parquet" "$data" 1.2 "$frame"
    fi
    result=$($B finetune --task classify --scratch --model "$M" --epochs 10 --batch-size 64 --data "$data" \
        "${flags[@]}" --out "$OUT/model.safetensors" --overwrite 2>&1 | tail -1)
    echo "$recipe, frame $frame (setting $setting): $result"
}

RUNS=(
    "bare-theta-only as-simulated B"
    "bare-theta-only truth B"
    "bare-theta-only blind B"
    "bare as-simulated B"
    "bare truth B"
    "bare truth-rotate B"
    "bare blind B"
    "survey as-simulated C"
    "survey truth C"
    "survey truth-rotate C"
    "survey rotate C"
    "survey jitter:0.0:30 C"
    "survey jitter:0.02:0 C"
    "survey jitter:0.05:0 C"
    "survey jitter:0.05:10 C"
    "survey blind-rotate C"
    "survey blind C"
)
for entry in "${RUNS[@]}"; do
    read -r recipe frame setting <<< "$entry"
    if [ $# -eq 0 ] || [[ " $* " == *" $recipe:$frame "* ]]; then
        run "$recipe" "$frame" "$setting"
    fi
done
for recipe in bare-theta-only survey; do
    if [ -f "$OUT/$recipe/dataset.parquet" ]; then
        echo "$recipe:"
        $PY bench/theta_e_rescale.py "$OUT/$recipe/dataset.parquet" - 1.2 leak
    fi
done
