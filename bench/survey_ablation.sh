#!/usr/bin/env bash
# What keeps a classifier from telling `axion` from `no_sub` on survey lenses: the
# deflector's light, the noise, or the variety of lenses? The small ViT from scratch,
# 10 epochs, on variants of the `survey` recipe, and on DeepLense Model II as the
# control that learns. Settings as in bench/survey_learnability.sh: C (noise-asinh,
# flatten head, lr 3e-4) for noisy images, B (min-max + per-pixel standardisation,
# flatten head, lr 1e-3) for noise-free ones, which have no noise to scale by.
# Each line prints the test-split macro AUC of its `finetune`.
#
#   bench/survey_ablation.sh [OUT_DIR] [RUN...]     (default: every run below)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/survey-ablation}
shift || true
mkdir -p "$OUT"
cargo build --release --quiet --bin lensmae
B=./target/release/lensmae
M=pipelines/models/vit-w64-d4-p8.json

# The recipes: `survey`, and edits of it that drop tables or fix the lens.
$B simulate --preset survey --print-config > "$OUT/survey.toml"
$B simulate --preset deeplense-model2 --print-config > "$OUT/model2.toml"
drop() { awk -v re="$1" '/^\[/{skip = ($0 ~ re)} !skip'; }
fixed_lens='
[lens]
theta_e = 1.2
e1 = 0.1
e2 = 0.0
center_x = 0.0
center_y = 0.0

[shear]
gamma1 = 0.05
gamma2 = 0.0'
drop '^\[lens_light' < "$OUT/survey.toml" > "$OUT/no-light.toml"
# Noise type "none" takes no other keys: the exposure time table goes too.
drop '^\[noise\.exposure_time\]' < "$OUT/survey.toml" | sed 's/^type = "instrument"$/type = "none"/' \
    > "$OUT/noise-free.toml"
drop '^\[lens_light' < "$OUT/noise-free.toml" > "$OUT/bare.toml"
{ drop '^\[(lens|shear)\.' < "$OUT/bare.toml"; echo "$fixed_lens"; } > "$OUT/bare-fixed-lens.toml"
{ drop '^\[(lens|shear)\.' < "$OUT/survey.toml"; echo "$fixed_lens"; } > "$OUT/survey-fixed-lens.toml"
# Only the Einstein radius drawn; ellipticity, centre and shear fixed.
{ drop '^\[(lens\.(e1|e2|center_x|center_y)|shear\.)' < "$OUT/bare.toml"; echo "$fixed_lens" | grep -v theta_e; } \
    > "$OUT/bare-theta-only.toml"

# run NAME RECIPE PER_CLASS SEED SETTING
run() {
    local name=$1 recipe=$2 n=$3 seed=$4 setting=$5 flags
    case $setting in
        B) flags=(--scaling minmax --standardise-pixels --pooling flatten --augment none --lr 1e-3) ;;
        C) flags=(--scaling noise-asinh --pooling flatten --augment none --lr 3e-4) ;;
    esac
    $B simulate --config "$OUT/$recipe.toml" --classes axion,no_sub --n-per-class "$n" --seed "$seed" \
        --out "$OUT/$name" --overwrite --quiet
    local result
    result=$($B finetune --task classify --scratch --model "$M" --epochs 10 --batch-size 64 \
        --data "$OUT/$name/dataset.parquet" "${flags[@]}" --out "$OUT/$name.safetensors" 2>&1 | tail -1)
    echo "$name ($recipe, $n per class, seed $seed, setting $setting): $result"
    rm -rf "${OUT:?}/$name"
}

RUNS=(
    "model2 model2 3000 31 B"
    "no-light no-light 3000 31 C"
    "noise-free noise-free 3000 31 B"
    "bare bare 3000 31 B"
    "bare-fixed-lens bare-fixed-lens 3000 31 B"
    "bare-theta-only bare-theta-only 3000 31 B"
    "survey-fixed-lens survey-fixed-lens 3000 31 C"
    "bare-15k bare 15000 33 B"
    "survey-15k survey 15000 33 C"
    "bare-75k bare 75000 35 B"
    "survey-75k survey 75000 35 C"
)
for entry in "${RUNS[@]}"; do
    read -r name recipe n seed setting <<< "$entry"
    if [ $# -eq 0 ] || [[ " $* " == *" $name "* ]]; then
        run "$name" "$recipe" "$n" "$seed" "$setting"
    fi
done
