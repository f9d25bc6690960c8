#!/usr/bin/env bash
# One prepared check for a machine with one CUDA GPU (its time on a GPU is unmeasured): every stage of LORD and
# OverLORD at the papers' sizes for a few steps with the default settings, then the training
# benchmark's GPU cases with model FLOPs utilisation, each also compiled (runtime.compile=true) and
# compiled with CUDA graphs, with the MFU of each, as one table. Stops at the first error of an eager run.
#
#   bash benchmarks/gpu_check.sh                          # on the GPU machine
#   bash benchmarks/gpu_check.sh --device cpu --dry-run   # checks the check on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
"$PYTHON" -c "import torch; print('torch', torch.__version__, '| CUDA', torch.version.cuda, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
if [[ " $* " != *" --dry-run "* ]]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
