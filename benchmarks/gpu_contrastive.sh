#!/usr/bin/env bash
# The contrastive methods' train steps on one GPU in bfloat16, images/s and MFU, in under 5 minutes:
#   MoCo v2 ResNet-50 (`configs/moco.py:imagenet`: queue 65536, key encoder forward included), batch 256 at 224x224x3;
#   CLIP ViT-B/32 (`configs/clip.py:coco`: text tower 12 x 512, context 64, vocabulary 32000), batch 256 at 224.
# Each step is fed a fixed batch (random uint8 images; for CLIP one full-length caption of random tokens each), so no
# dataset is needed. XLA's FLOPs of the MoCo step count the key encoder's forward too: work the step does.
# Usage (on a machine with a CUDA jax): bash benchmarks/gpu_contrastive.sh [--smoke] [BATCH]
# --smoke (or SMOKE=1): 2 steps each of `configs/moco.py:tiny` (28x28x1) and `configs/clip.py:tiny` (16x16x3) on any
# backend, labelled as such; it tests the script.
# Exit 2 with one line on stderr when jax's backend is not a GPU (and not --smoke).
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=${SMOKE:-0}
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
source benchmarks/gpu_env.sh
BATCH=${1:-256}
# Two steps share the 5 minutes; each gets its own cap (within gpu_env.sh's TIMEOUT_S, which bounds each call).
if [ "$SMOKE" = 1 ]; then
  timeout 150 "${STEP[@]}" --config configs/moco.py:tiny --image-shape 28,28,1 --config.model.dtype=bfloat16
  timeout 130 "${STEP[@]}" --config configs/clip.py:tiny --image-shape 16,16,3 --config.model.dtype=bfloat16
else
  # MoCo's init reads the run's length (the key momentum's schedule); the steps here do not depend on it.
  timeout 150 "${STEP[@]}" --config configs/moco.py:imagenet --steps 30 --image-shape 224,224,3 \
    --config.batch_size="$BATCH" --config.total_steps=10000
  timeout 130 "${STEP[@]}" --config configs/clip.py:coco --steps 30 --image-shape 224,224,3 \
    --config.batch_size="$BATCH"
fi
