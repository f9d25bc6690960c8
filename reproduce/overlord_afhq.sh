#!/usr/bin/env bash
# OverLORD (ICCV 2021), AFHQ at 256x256: the labelled attribute is the domain (cat, dog, wild); a
# pose-invariant correlated code carries the appearance (breed) that goes with it, the uncorrelated
# code the pose. Preprocess the official train and test splits, train the three stages with the
# paper preset `overlord-afhq`, and evaluate on the test split. The table shows the paper's columns
# first (FID under the paper's protocol against real images of the target domain, translation
# accuracy, LPIPS diversity over references of that domain), then the toolkit's.
set -euo pipefail
USAGE="usage: $0 AFHQ_DIR
   or: AFHQ_DIR=... $0
AFHQ_DIR holds train/<domain>/*.jpg and test/<domain>/*.jpg (see the README's Datasets table).
Optional environment: BASE_DIR (default runs), SEEDS (default 0), DEVICE, N_PAIRS, PYTHON (see
common.sh)."
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -le 1 ]] || usage "expected at most 1 argument, got $#"
AFHQ_DIR=$(dataset_dir AFHQ_DIR "${1:-}")

results="$BASE_DIR/results/overlord-afhq"
mkdir -p "$results"
preprocess afhq-train -di afhq -dp "$AFHQ_DIR" --split train
preprocess afhq-test -di afhq -dp "$AFHQ_DIR" --split test
for seed in $SEEDS; do
    model="overlord-afhq-s$seed"
    train_stage train "$model" afhq-train "$seed" --config overlord-afhq
    train_stage train-encoders "$model" afhq-train "$seed"
    train_stage train-synthesis "$model" afhq-train "$seed"
    evaluate "$model" afhq-test synthesis "$seed" "$results"
done
report "$results" --columns fid_paper,translation,lpips_diversity --columns fid,reconstruction,class_from_content
