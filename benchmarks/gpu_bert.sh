#!/usr/bin/env bash
# BERT-base pre-training step (MLM + NSP, masking on device, AdamW; the `base` preset: batch 256, 128 tokens,
# bf16) on one GPU: tokens/s and MFU, in under 5 minutes. The step is fed fixed full-length pairs of random
# tokens, so no corpus or tokenizer is needed.
# Usage (on a machine with a CUDA jax): bash benchmarks/gpu_bert.sh [--smoke] [BATCH] [SEQ_LEN]
# --smoke (or SMOKE=1): 2 steps of BERT-tiny on any backend, labelled as such; it tests the script.
# Exit 2 with one line on stderr when jax's backend is not a GPU (and not --smoke).
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=${SMOKE:-0}
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
source benchmarks/gpu_env.sh
if [ "$SMOKE" = 1 ]; then
  PRESET=tiny BATCH=16 SEQ=32
else
  PRESET=base BATCH=${1:-256} SEQ=${2:-128}
fi
"${STEP[@]}" --config configs/bert.py:$PRESET --steps 30 --config.batch_size="$BATCH" --config.data.max_len="$SEQ" \
  --config.bert.max_predictions=$(( (SEQ * 15 + 99) / 100 )) --config.model.dtype=bfloat16
