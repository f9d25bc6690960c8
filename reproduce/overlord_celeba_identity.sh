#!/usr/bin/env bash
# OverLORD (ICCV 2021), CelebA identity at 128x128: the labelled attribute is the person. Preprocess
# (optionally a random subset of the people), hold out 10% of the images, train the three stages
# with the paper preset `overlord-celeba`, and evaluate the final model on the held-out images. The
# table shows the paper's columns first (the face metrics: landmarks, identity, head pose; FID under
# the paper's protocol), then the toolkit's. The face metrics need `pip install -e .[face-metrics]`
# and the Hopenet weights (the README's Evaluation section).
set -euo pipefail
USAGE="usage: $0 CELEBA_DIR
   or: CELEBA_DIR=... $0
CELEBA_DIR holds the aligned images and Anno/identity_CelebA.txt (see the README's Datasets table).
Optional environment: N_IDENTITIES (keep that many random people; default: all), BASE_DIR (default
runs), SEEDS (default 0), DEVICE, N_PAIRS, PYTHON (see common.sh)."
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -le 1 ]] || usage "expected at most 1 argument, got $#"
CELEBA_DIR=$(dataset_dir CELEBA_DIR "${1:-}")
identities=()
if [[ -n "${N_IDENTITIES:-}" ]]; then
    identities=(--n-identities "$N_IDENTITIES")
fi

results="$BASE_DIR/results/overlord-celeba-identity"
mkdir -p "$results"
preprocess celeba-128 -di celeba -dp "$CELEBA_DIR" --img-size 128 "${identities[@]}"
split_samples celeba-128 0.1
for seed in $SEEDS; do
    model="overlord-celeba-s$seed"
    train_stage train "$model" celeba-128-train "$seed" --config overlord-celeba
    train_stage train-encoders "$model" celeba-128-train "$seed"
    train_stage train-synthesis "$model" celeba-128-train "$seed"
    evaluate "$model" celeba-128-test synthesis "$seed" "$results"
done
report "$results" --columns face,fid_paper --columns translation,lpips_diversity,fid,reconstruction,class_from_content
