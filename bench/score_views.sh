# Sourced by the survey bench scripts (needs $B, the lensmae binary).
# score_views MODEL LENSES PREFIX: evaluate MODEL on the labelled LENSES with one view
# and with the 8 turned views (`--tta none|dihedral`), writing PREFIX-<tta>.json (the
# report) and PREFIX-<tta>.parquet (`predict --keep id`, for bench/paired_auc.py).
score_views() {
    local model=$1 lenses=$2 prefix=$3 tta
    for tta in none dihedral; do
        $B evaluate --model "$model" --input "$lenses" --tta "$tta" --report "$prefix-$tta.json" --overwrite 2>&1 \
            | grep -E '^macro AUC|^ECE|^in the|^sub_snr(_refit)? >= ' || true
        $B predict --model "$model" --input "$lenses" --keep id --tta "$tta" --out "$prefix-$tta.parquet" \
            --overwrite > /dev/null
    done
}
