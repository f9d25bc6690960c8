#!/usr/bin/env bash
# LORD (ICLR 2020), the content transfer table: Cars3D, SmallNorb and Shapes3D, whose images have
# ground-truth content ids. Per data set: preprocess, hold out 10% of the images, train both stages
# with the paper preset `lord`, let the encoders translate held-out images and compare each
# translation with the real image of that content in the target class, beside the two reference
# rows (A unchanged; a random image of B's class).
set -euo pipefail
USAGE="usage: $0 CARS3D_DIR SMALLNORB_DIR SHAPES3D_DIR
   or: CARS3D_DIR=... SMALLNORB_DIR=... SHAPES3D_DIR=... $0
The directories hold the raw downloads as the README's Datasets table describes. Optional
environment: BASE_DIR (default runs), SEEDS (default 0), DEVICE, N_PAIRS, PYTHON (see common.sh)."
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -le 3 ]] || usage "expected at most 3 arguments, got $#"
CARS3D_DIR=$(dataset_dir CARS3D_DIR "${1:-}")
SMALLNORB_DIR=$(dataset_dir SMALLNORB_DIR "${2:-}")
SHAPES3D_DIR=$(dataset_dir SHAPES3D_DIR "${3:-}")

results="$BASE_DIR/results/lord-content-transfer"
mkdir -p "$results"
preprocess cars3d -di cars3d -dp "$CARS3D_DIR"
preprocess smallnorb -di smallnorb -dp "$SMALLNORB_DIR"
preprocess shapes3d -di shapes3d -dp "$SHAPES3D_DIR"

for data in cars3d smallnorb shapes3d; do
    split_samples "$data" 0.1
    for seed in $SEEDS; do
        model="lord-$data-s$seed"
        train_stage train "$model" "$data-train" "$seed" --config lord
        train_stage train-encoders "$model" "$data-train" "$seed"
        evaluate "$model" "$data-test" amortized "$seed" "$results"
    done
done
report "$results" --columns content_transfer
