#!/usr/bin/env bash
# The synthetic table of the README, on a CPU: the demo's data (the synthetic set with 24 object
# classes, upright, each under the same 54 poses and lightings, 32 px), half of the images held out,
# and two models of the CPU preset `lord-tiny` per seed (seeds 0, 1 and 2 by default): LORD (noise on
# the content codes and their decay) and the same without them (--set content_std=0 --set
# content_decay=0), the reference that shows what the regularisation does. Each is evaluated with its
# embeddings on the training images and with its encoders on the held-out images; `report` tabulates
# every result (table.md) and their means and standard deviations over the seeds (table-over-seeds.md).
set -euo pipefail
USAGE="usage: $0
Optional environment: BASE_DIR (default runs/synthetic), N_CLASSES (default 24), ROTATIONS (default 1),
EPOCHS (stage 1) and ENCODER_EPOCHS (stage 2) (default: the preset's), SEEDS (default \"0 1 2\"),
VARIANTS (default \"lord no-regularisation\"; two runs of the script, one per variant, can share a BASE_DIR
once the data is split, and the later one's tables hold both),
DEVICE (default cpu), N_PAIRS (default 1000), PYTHON (see common.sh)."
BASE_DIR="${BASE_DIR:-runs/synthetic}"
DEVICE="${DEVICE:-cpu}"
SEEDS="${SEEDS:-0 1 2}"
VARIANTS="${VARIANTS:-lord no-regularisation}"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -eq 0 ]] || usage "expected no arguments, got $#"
N_CLASSES="${N_CLASSES:-24}"
ROTATIONS="${ROTATIONS:-1}"

results="$BASE_DIR/results/synthetic"
mkdir -p "$results"
preprocess syn -di synthetic --img-size 32 --n-classes "$N_CLASSES" --rotations "$ROTATIONS"
split_samples syn 0.5
for seed in $SEEDS; do
    for variant in $VARIANTS; do
        model="syn-$variant-s$seed"
        settings=(--config lord-tiny)
        [[ -z "${EPOCHS:-}" ]] || settings+=(--set "train.n_epochs=$EPOCHS")
        [[ -z "${ENCODER_EPOCHS:-}" ]] || settings+=(--set "train_encoders.n_epochs=$ENCODER_EPOCHS")
        if [[ $variant == no-regularisation ]]; then
            settings+=(--set content_std=0 --set content_decay=0)
        fi
        train_stage train "$model" syn-train "$seed" "${settings[@]}"
        train_stage train-encoders "$model" syn-train "$seed"
        evaluate "$model" syn-train latent "$seed" "$results"
        evaluate "$model" syn-test amortized "$seed" "$results"
    done
done
columns=(--columns class_from_content
    --columns content_transfer.mse,content_transfer.baseline_unchanged.mse
    --columns content_transfer.baseline_random_same_class.mse,content_transfer.ssim
    --columns content_transfer.baseline_unchanged.ssim,content_transfer.baseline_random_same_class.ssim
    --columns translation,reconstruction.mse)
report "$results" "${columns[@]}"
report_over_seeds "$results" "${columns[@]}"
