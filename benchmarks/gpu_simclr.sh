#!/usr/bin/env bash
# SimCLR `cifar10` preset (ResNet-18, batch 512, bf16) train-step throughput and MFU on one GPU, < 5 minutes.
# Usage (on a machine with a CUDA jax): bash benchmarks/gpu_simclr.sh
# The step is fed a fixed batch of CIFAR-shaped images, so no dataset is needed on the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# GPU images often carry jax/flax/optax/orbax but not ml-collections: install it from wheels carried in .whl/.
if ! $PY -c "import ml_collections" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
timeout 280 $PY benchmarks/step_throughput.py --config configs/simclr.py:cifar10 --steps 50
