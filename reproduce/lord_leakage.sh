#!/usr/bin/env bash
# LORD (ICLR 2020), the disentanglement table: how much class information the content codes leak
# (and content information the class codes, where the data has content ids), on Cars3D, SmallNorb,
# KTH, RaFD and CelebA. Per data set: preprocess, hold out 10% of the images, train both stages with
# the paper preset `lord`, then probe the learned embeddings of the training images (stage latent)
# and the encoders' codes of the held-out images (stage amortized).
set -euo pipefail
USAGE="usage: $0 CARS3D_DIR SMALLNORB_DIR KTH_DIR RAFD_DIR CELEBA_DIR
   or: CARS3D_DIR=... SMALLNORB_DIR=... KTH_DIR=... RAFD_DIR=... CELEBA_DIR=... $0
The directories hold the raw downloads as the README's Datasets table describes. Optional
environment: BASE_DIR (default runs), SEEDS (default 0), DEVICE, N_PAIRS, PYTHON (see common.sh).
With the same BASE_DIR as lord_content_transfer.sh, the Cars3D and SmallNorb models are shared."
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -le 5 ]] || usage "expected at most 5 arguments, got $#"
CARS3D_DIR=$(dataset_dir CARS3D_DIR "${1:-}")
SMALLNORB_DIR=$(dataset_dir SMALLNORB_DIR "${2:-}")
KTH_DIR=$(dataset_dir KTH_DIR "${3:-}")
RAFD_DIR=$(dataset_dir RAFD_DIR "${4:-}")
CELEBA_DIR=$(dataset_dir CELEBA_DIR "${5:-}")

results="$BASE_DIR/results/lord-leakage"
mkdir -p "$results"
preprocess cars3d -di cars3d -dp "$CARS3D_DIR"
preprocess smallnorb -di smallnorb -dp "$SMALLNORB_DIR"
preprocess kth -di kth -dp "$KTH_DIR"
preprocess rafd -di rafd -dp "$RAFD_DIR" --skip-bad
preprocess celeba -di celeba -dp "$CELEBA_DIR"

for data in cars3d smallnorb kth rafd celeba; do
    split_samples "$data" 0.1
    for seed in $SEEDS; do
        model="lord-$data-s$seed"
        train_stage train "$model" "$data-train" "$seed" --config lord
        train_stage train-encoders "$model" "$data-train" "$seed"
        evaluate "$model" "$data-train" latent "$seed" "$results"
        evaluate "$model" "$data-test" amortized "$seed" "$results"
    done
done
report "$results" --columns class_from_content,content_from_class
