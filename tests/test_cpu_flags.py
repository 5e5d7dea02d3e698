"""ssljax's XLA:CPU flags: set on import where the CPU is the backend and jaxlib knows them, never on an
accelerator host, never over the user's own value, and never once jax has started (each case in a fresh
process, since XLA reads XLA_FLAGS once)."""

import json
import os
import subprocess
import sys

import pytest

from ssljax import cpu_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
YNN = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def fresh_process(code: str, **env) -> dict:
  full_env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS", "SSLJAX_CPU_FLAGS")}
  full_env.update(env)
  out = subprocess.run(
    [sys.executable, "-c", code], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120
  )
  assert out.returncode == 0, out.stderr[-2000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


REPORT = "import json, os, ssljax; print(json.dumps({'flags': os.environ.get('XLA_FLAGS', '')}))"


def test_the_pinned_jaxlib_knows_the_flags_and_an_unknown_flag_is_unknown():
  for name, _ in cpu_flags.FLAGS:
    assert cpu_flags.jaxlib_knows(name), name
  assert not cpu_flags.jaxlib_knows("xla_cpu_no_such_flag_in_any_jaxlib")


def test_import_adds_the_flags_on_a_cpu_host_and_jax_accepts_them():
  code = REPORT.replace("print(", "import jax; jax.numpy.ones(2).block_until_ready(); print(")
  flags = fresh_process(code, XLA_FLAGS="--xla_force_host_platform_device_count=2")["flags"]
  assert flags.split() == ["--xla_force_host_platform_device_count=2", YNN]
  assert fresh_process(code, JAX_PLATFORMS="cpu")["flags"] == YNN


@pytest.mark.parametrize(
  "env",
  [
    dict(JAX_PLATFORMS="cuda"),
    dict(JAX_PLATFORMS="tpu,cpu"),
    dict(SSLJAX_CPU_FLAGS="0"),
    dict(XLA_FLAGS="--xla_cpu_experimental_ynn_fusion_type="),
  ],
)
def test_import_leaves_accelerators_opt_outs_and_the_users_value_alone(env):
  assert fresh_process(REPORT, **env)["flags"] == env.get("XLA_FLAGS", "")


def test_import_after_jax_started_warns_and_adds_nothing():
  code = (
    "import json, os, warnings, jax; jax.numpy.ones(2).block_until_ready()\n"
    "with warnings.catch_warnings(record=True) as w:\n"
    "  warnings.simplefilter('always'); import ssljax\n"
    "print(json.dumps({'flags': os.environ.get('XLA_FLAGS', ''), 'warnings': [str(x.message) for x in w]}))"
  )
  out = fresh_process(code)
  assert out["flags"] == ""
  assert len(out["warnings"]) == 1 and "import ssljax first" in out["warnings"][0]
