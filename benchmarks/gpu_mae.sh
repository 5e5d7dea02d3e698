#!/usr/bin/env bash
# MAE ViT-B/16 pre-training step at 224 (75% masked, decoder 512 x 8, AdamW; the `imagenet` preset, bf16) on one
# GPU: images/s and MFU, in under 5 minutes.
# Usage (on a machine with a CUDA jax): bash benchmarks/gpu_mae.sh [BATCH]
# The step is fed a fixed batch of random uint8 images, so no dataset is needed there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BATCH=${1:-256}
# GPU images often carry jax/flax/optax/orbax but not ml-collections: install it from wheels carried in .whl/.
if ! $PY -c "import ml_collections" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
timeout 280 $PY benchmarks/step_throughput.py --config configs/mae.py:imagenet --steps 30 --image-shape 224,224,3 \
  --config.batch_size="$BATCH"
