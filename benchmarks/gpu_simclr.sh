#!/usr/bin/env bash
# SimCLR `cifar10` preset (ResNet-18, CIFAR stem, batch 512) in bfloat16: train-step images/s and MFU on one
# GPU, in under 3 minutes. The step is fed a fixed batch of CIFAR-shaped images, so no dataset is needed.
# Usage (on a machine with a CUDA jax): bash benchmarks/gpu_simclr.sh [--smoke] [BATCH]
# --smoke (or SMOKE=1): 2 steps of the `tiny` preset on any backend, labelled as such; it tests the script.
# Exit 2 with one line on stderr when jax's backend is not a GPU (and not --smoke).
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=${SMOKE:-0}
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
source benchmarks/gpu_env.sh
BATCH=${1:-512}
if [ "$SMOKE" = 1 ]; then
  "${STEP[@]}" --config configs/simclr.py:tiny --image-shape 28,28,1 --config.batch_size=16 \
    --config.model.dtype=bfloat16
else
  "${STEP[@]}" --config configs/simclr.py:cifar10 --steps 50 --config.batch_size="$BATCH" \
    --config.model.dtype=bfloat16
fi
