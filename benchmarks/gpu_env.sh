# Sourced by the benchmarks/gpu_*.sh scripts, from the repository root, after they read --smoke.
# Sets PY (the PYTHON environment variable, or python3), makes ml-collections importable, names the GPU.
PY=${PYTHON:-python3}
# GPU images often carry jax/flax/optax/orbax but not ml-collections: install it from wheels carried in .whl/,
# once per machine (gpu_all.sh runs four scripts).
SITE=${TMPDIR:-/tmp}/ssljax-whl-site
if ! $PY -c "import ml_collections" 2>/dev/null; then
  if [ ! -d "$SITE/ml_collections" ] && ls .whl/*.whl >/dev/null 2>&1; then
    # Quiet about root and its own version: the one line a refusal writes stays alone on stderr.
    PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
      $PY -m pip install -q --no-index --no-deps --target "$SITE" .whl/*.whl
  fi
  if [ -d "$SITE/ml_collections" ]; then
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
# On stdout, so that the refusal on a machine without a driver stays the only line on stderr.
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
fi
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
# The Python refuses a backend that is not a GPU (exit 2) unless --smoke; TIMEOUT_S caps the run (gpu_all.sh
# shares its own budget out this way).
STEP=(timeout "${TIMEOUT_S:-280}" "$PY" benchmarks/step_throughput.py)
if [ "$SMOKE" = 1 ]; then
  STEP+=(--smoke)
fi
