#!/usr/bin/env bash
# BERT-base pre-training step (MLM + NSP, masking on device, AdamW; the `base` preset: batch 256, 128 tokens,
# bf16) on one GPU: tokens/s and MFU, in under 5 minutes.
# Usage (on a machine with a CUDA jax): bash benchmarks/gpu_bert.sh [BATCH] [SEQ_LEN]
# The step is fed fixed full-length pairs of random tokens, so no corpus or tokenizer is needed there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BATCH=${1:-256}
SEQ=${2:-128}
# GPU images often carry jax/flax/optax/orbax but not ml-collections: install it from wheels carried in .whl/.
if ! $PY -c "import ml_collections" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
timeout 280 $PY benchmarks/step_throughput.py --config configs/bert.py:base --steps 30 \
  --config.batch_size="$BATCH" --config.data.max_len="$SEQ" --config.bert.max_predictions=$(( (SEQ * 15 + 99) / 100 ))
