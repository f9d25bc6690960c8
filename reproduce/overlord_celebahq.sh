#!/usr/bin/env bash
# OverLORD (ICCV 2021), CelebA-HQ at 256x256: gender translation, once without a correlated code
# (preset `overlord-celebahq`) and once with a correlated code localized on the hair masks (preset
# `overlord-celebahq-hair`, which keeps the hair style of the reference). Preprocess with the hair
# masks, hold out 10% of the images, train the three stages of both models and evaluate both on the
# held-out images. The table shows the paper's columns first (FID under the paper's protocol,
# translation accuracy, LPIPS diversity), then the toolkit's.
set -euo pipefail
USAGE="usage: $0 CELEBAHQ_DIR
   or: CELEBAHQ_DIR=... $0
CELEBAHQ_DIR holds CelebAMask-HQ with its attribute file and masks (see the README's Datasets table).
Optional environment: BASE_DIR (default runs), SEEDS (default 0), DEVICE, N_PAIRS, PYTHON (see
common.sh)."
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -le 1 ]] || usage "expected at most 1 argument, got $#"
CELEBAHQ_DIR=$(dataset_dir CELEBAHQ_DIR "${1:-}")

results="$BASE_DIR/results/overlord-celebahq"
mkdir -p "$results"
preprocess celebahq-hair -di celebahq -dp "$CELEBAHQ_DIR" --part hair
split_samples celebahq-hair 0.1
for seed in $SEEDS; do
    for preset in overlord-celebahq overlord-celebahq-hair; do
        model="$preset-s$seed"
        train_stage train "$model" celebahq-hair-train "$seed" --config "$preset"
        train_stage train-encoders "$model" celebahq-hair-train "$seed"
        train_stage train-synthesis "$model" celebahq-hair-train "$seed"
        evaluate "$model" celebahq-hair-test synthesis "$seed" "$results"
    done
done
report "$results" --columns fid_paper,translation,lpips_diversity --columns fid,reconstruction,class_from_content
