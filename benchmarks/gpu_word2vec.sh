#!/usr/bin/env bash
# word2vec skip-gram (the `cpu` preset's hyperparameters) on one GPU: raw and effective (after subsampling)
# words/s, in under 3 minutes. The step is fed a fixed batch of words drawn from a Zipf vocabulary of text8's
# size (71290 words), so no corpus is needed. MFU is n/a: the step's sparse updates run in a while loop.
# Usage (on a machine with a CUDA jax): bash benchmarks/gpu_word2vec.sh [--smoke] [BATCH_TOKENS] [LANES]
# BATCH_TOKENS tokens per step, LANES x 128 tokens per SGD update (more lanes: more parallel work per update).
# --smoke (or SMOKE=1): 2 steps of the `tiny` preset on any backend, labelled as such; it tests the script.
# Exit 2 with one line on stderr when jax's backend is not a GPU (and not --smoke).
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=${SMOKE:-0}
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
source benchmarks/gpu_env.sh
if [ "$SMOKE" = 1 ]; then
  "${STEP[@]}" --config configs/word2vec.py:tiny
else
  "${STEP[@]}" --config configs/word2vec.py:cpu --steps 30 --config.batch_size="${1:-8192}" \
    --config.word2vec.lanes="${2:-2}"
fi
