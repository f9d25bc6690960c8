#!/usr/bin/env bash
# OverLORD (ICCV 2021), FFHQ age translation at 256x256: preprocess (age buckets by decade), hold
# out 10% of the images, train the three stages with the paper preset `overlord-ffhq`, and evaluate
# the final model on the held-out images. The table shows the paper's columns first (FID under the
# paper's protocol against real images of the target age, translation accuracy by a classifier of age
# buckets, LPIPS diversity), then the community's FID, reconstruction and leakage.
set -euo pipefail
USAGE="usage: $0 FFHQ_DIR
   or: FFHQ_DIR=... $0
FFHQ_DIR holds the images and the face-attribute features (see the README's Datasets table).
Optional environment: BASE_DIR (default runs), SEEDS (default 0), DEVICE, N_PAIRS, PYTHON (see
common.sh). FID needs the InceptionV3 weights and LPIPS its weights (the README's Evaluation section)."
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -le 1 ]] || usage "expected at most 1 argument, got $#"
FFHQ_DIR=$(dataset_dir FFHQ_DIR "${1:-}")

results="$BASE_DIR/results/overlord-ffhq-age"
mkdir -p "$results"
preprocess ffhq -di ffhq -dp "$FFHQ_DIR"
split_samples ffhq 0.1
for seed in $SEEDS; do
    model="overlord-ffhq-s$seed"
    train_stage train "$model" ffhq-train "$seed" --config overlord-ffhq
    train_stage train-encoders "$model" ffhq-train "$seed"
    train_stage train-synthesis "$model" ffhq-train "$seed"
    evaluate "$model" ffhq-test synthesis "$seed" "$results"
done
report "$results" --columns fid_paper,translation,lpips_diversity --columns fid,reconstruction,class_from_content
