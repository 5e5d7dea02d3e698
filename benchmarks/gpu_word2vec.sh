#!/usr/bin/env bash
# word2vec skip-gram (the `cpu` preset's hyperparameters) on one GPU: words/s, in under 3 minutes.
# Usage (on a machine with a CUDA jax): bash benchmarks/gpu_word2vec.sh [CORPUS] [BATCH_TOKENS] [LANES]
# BATCH_TOKENS tokens per step, LANES x 128 tokens per SGD update (more lanes: more parallel work per update).
# CORPUS defaults to data/text/corpus.txt.xz (`make corpus`); carry it to the GPU machine with the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
CORPUS=${1:-data/text/corpus.txt.xz}
BATCH=${2:-8192}
LANES=${3:-2}
# GPU images often carry jax/flax/optax/orbax but not ml-collections: install it from wheels carried in .whl/.
if ! $PY -c "import ml_collections" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
WORKDIR=$(mktemp -d)
timeout 170 $PY launch/run.py --config configs/word2vec.py:cpu --workdir "$WORKDIR" \
  --config.data.path="$CORPUS" --config.batch_size="$BATCH" --config.word2vec.lanes="$LANES" --config.evals.plots=False \
  --config.checkpoint_every=1000000
$PY - "$WORKDIR" <<'PYEOF'
import json, sys
w = sys.argv[1]
s = json.load(open(f"{w}/summary.json"))
lines = [json.loads(l) for l in open(f"{w}/metrics.jsonl")]
kept = sum(l["kept_fraction"] for l in lines) / len(lines)
print(f"raw words/s {s['examples_per_sec']:.0f} | effective words/s {kept * s['examples_per_sec']:.0f} | "
      f"to last step {s['train_wall_s']:.0f} s on {s['num_devices']} device(s)")
PYEOF
