#!/usr/bin/env bash
# MAE ViT-B/16 pre-training step at 224 (75% masked, decoder 512 x 8, AdamW; the `imagenet` preset, bf16) on one
# GPU: images/s and MFU, in under 5 minutes. The step is fed a fixed batch of random uint8 images.
# Usage (on a machine with a CUDA jax): bash benchmarks/gpu_mae.sh [--smoke] [BATCH]
# --smoke (or SMOKE=1): 2 steps of the `tiny` preset on any backend, labelled as such; it tests the script.
# Exit 2 with one line on stderr when jax's backend is not a GPU (and not --smoke).
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=${SMOKE:-0}
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
source benchmarks/gpu_env.sh
BATCH=${1:-256}
if [ "$SMOKE" = 1 ]; then
  "${STEP[@]}" --config configs/mae.py:tiny --image-shape 28,28,1 --config.batch_size=16 \
    --config.model.dtype=bfloat16
else
  "${STEP[@]}" --config configs/mae.py:imagenet --steps 30 --image-shape 224,224,3 --config.batch_size="$BATCH"
fi
