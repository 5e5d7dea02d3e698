"""benchmarks/gpu_*.sh: they refuse a backend that is not a GPU, their smoke runs work on this CPU, and the
MFU divides by the peak of the precision the matmuls run in (benchmarks/step_throughput.py)."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ("simclr", "word2vec", "bert", "mae", "contrastive")
ON_GPU = jax.default_backend() == "gpu"
needs_no_gpu = pytest.mark.skipif(ON_GPU, reason="the refusal is for a backend that is not a GPU")

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import step_throughput  # noqa: E402  (a script's module, importable from its directory)


def run_script(name: str, *args, **env) -> subprocess.CompletedProcess:
  # The smoke runs check that the scripts work, not how fast they are: XLA's cheapest CPU compile takes a third
  # of the time.
  flags = (
    os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
  )
  env = {**os.environ, "PYTHON": sys.executable, "XLA_FLAGS": flags.strip(), **env}
  return subprocess.run(
    ["bash", os.path.join(ROOT, "benchmarks", f"gpu_{name}.sh"), *args],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )


# ----------------------------------------------------------------------------------------
# The scripts, as a user runs them.


@needs_no_gpu
@pytest.mark.parametrize("name", SCRIPTS)
def test_script_refuses_a_backend_that_is_not_a_gpu(name):
  proc = run_script(name)
  assert proc.returncode == step_throughput.REFUSAL_EXIT, proc.stderr[-2000:]
  assert proc.stderr.count("\n") == 1, proc.stderr
  assert proc.stderr.startswith("error: jax backend is 'cpu', not a GPU") and "--smoke" in proc.stderr
  assert "summary:" not in proc.stdout and "/s " not in proc.stdout  # nothing was measured


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_smoke_run_is_labelled_and_exits_0(name):
  proc = run_script(name, "--smoke")
  assert proc.returncode == 0, proc.stderr[-3000:]
  figures = [line for line in proc.stdout.splitlines() if "/s " in line]
  assert figures, proc.stdout
  assert all(line.startswith(("smoke: ", "summary: SMOKE, not a GPU figure")) for line in figures), proc.stdout
  assert "SMOKE RUN: 2 steps" in proc.stdout and "not a GPU measurement" in proc.stdout
  if not ON_GPU:
    assert "MFU n/a" in proc.stdout  # the CPU has no peak in the table


def test_gpu_all_runs_the_named_smoke_runs_and_sums_up():
  proc = run_script("all", "word2vec", SMOKE="1")
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = proc.stdout.split("===== summary: ")[1]
  assert summary.startswith("benchmarks/gpu_all.sh --smoke (SMOKE RUNS, not GPU figures)")
  assert "gpu_word2vec.sh: ok" in summary and "SMOKE, not a GPU figure | word2vec" in summary
  assert "gpu_simclr.sh" not in summary


@needs_no_gpu
def test_gpu_all_reports_refusals_and_exits_2():
  proc = run_script("all", "mae")
  assert proc.returncode == 2
  summary = proc.stdout.split("===== summary: ")[1]
  assert "gpu_mae.sh: refused or bad input (exit 2)" in summary and "not a GPU" in summary
  assert run_script("all", "resnet").returncode == 2


# ----------------------------------------------------------------------------------------
# Peaks, precision and MFU: pure functions.


@pytest.mark.parametrize(
  "kind, precision, tflops",
  [
    ("NVIDIA H200", "bf16", 989.4),
    ("NVIDIA H200", "tf32", 494.7),
    ("NVIDIA H100 80GB HBM3", "bf16", 989.4),  # the SXM part's name
    ("NVIDIA H100 80GB HBM3", "fp32", 66.9),
    ("NVIDIA H100 PCIe", "bf16", 756.5),
    ("NVIDIA GH200 480GB", "tf32", 494.7),
    ("NVIDIA A100-SXM4-80GB", "bf16", 312.0),
    ("NVIDIA A100-SXM4-40GB", "tf32", 156.0),
    ("NVIDIA A100 80GB PCIe", "tf32", 156.0),
    ("NVIDIA L4", "bf16", 121.0),
    ("NVIDIA A10", "tf32", 62.5),
    ("Tesla V100-SXM2-16GB", "tf32", 15.7),  # no TF32 on Volta: f32 matmuls run at the FP32 rate
  ],
)
def test_peak_flops_of_known_chips(kind, precision, tflops):
  peak = step_throughput.peak_flops(kind, precision)
  assert peak.flops == pytest.approx(tflops * 1e12)
  assert f"{tflops:g} TFLOP/s" in peak.note


@pytest.mark.parametrize(
  "kind, precision, why",
  [
    ("NVIDIA H100 NVL", "bf16", "no peak listed for device 'NVIDIA H100 NVL'"),  # not the SXM figure
    ("NVIDIA H200 NVL", "bf16", "no peak listed for device"),
    ("NVIDIA A10G", "bf16", "no peak listed for device"),  # not A10's, nor A100's
    ("NVIDIA L40S", "bf16", "no peak listed for device"),  # not L4's
    ("cpu", "tf32", "no peak listed for device 'cpu'"),
    ("Tesla V100-SXM2-16GB", "bf16", "no bf16 peak listed for V100 SXM2"),
    ("NVIDIA H200", "bfloat16_3x", "no bfloat16_3x peak listed for H200 SXM"),
  ],
)
def test_peak_flops_is_none_with_a_reason_when_unknown(kind, precision, why):
  peak = step_throughput.peak_flops(kind, precision)
  assert peak.flops is None and why in peak.note


@pytest.mark.parametrize(
  "dtype, default, override, expected",
  [
    ("bfloat16", None, None, "bf16"),
    ("bfloat16", "highest", None, "bf16"),  # the model's own dtype wins
    ("float32", None, None, "tf32"),  # jax's default on a GPU: TF32 on Ampere and later
    ("float32", "default", None, "tf32"),
    ("float32", "tensorfloat32", None, "tf32"),
    ("float32", "highest", None, "fp32"),
    ("float32", "float32", None, "fp32"),
    ("float32", None, "0", "fp32"),  # NVIDIA_TF32_OVERRIDE=0: cuBLAS refuses TF32
    ("float32", "bfloat16", None, "bf16"),
    ("float32", "bfloat16_3x", None, "bfloat16_3x"),
  ],
)
def test_matmul_precision(dtype, default, override, expected):
  assert step_throughput.matmul_precision(dtype, default_matmul_precision=default, tf32_override=override) == expected


def test_matmul_precision_rejects_other_dtypes():
  with pytest.raises(ValueError, match="float16"):
    step_throughput.matmul_precision("float16")


def test_mfu_divides_per_device_flops_by_one_chip_peak():
  peak = step_throughput.peak_flops("NVIDIA H200", "bf16")
  assert step_throughput.model_flops_utilization(98.94e12, 0.5, peak) == pytest.approx(0.2)
  assert step_throughput.model_flops_utilization(None, 0.5, peak) is None
  assert step_throughput.model_flops_utilization(1e12, 0.5, step_throughput.peak_flops("cpu", "bf16")) is None


def test_loop_hides_matmuls_only_for_loops_that_run_matmuls():
  a = jnp.ones((32, 32))
  hlo = lambda f, *args: jax.jit(f).lower(*args).compile().as_text()
  assert step_throughput.loop_hides_matmuls(hlo(lambda a: jax.lax.fori_loop(0, 3, lambda i, x: x @ a, a), a))
  nested = lambda a: jax.lax.fori_loop(0, 3, lambda i, x: jax.lax.cond(i > 0, lambda y: y @ a, lambda y: y, x), a)
  assert step_throughput.loop_hides_matmuls(hlo(nested, a))
  assert not step_throughput.loop_hides_matmuls(hlo(lambda a: a @ a, a))
  counter = lambda a: jax.lax.fori_loop(0, 3, lambda i, x: jnp.tanh(x), a) @ a
  assert not step_throughput.loop_hides_matmuls(hlo(counter, a))


def _result(**overrides):
  r = {
    "device": "NVIDIA H200",
    "devices": 1,
    "batch": 512,
    "step_ms": 25.0,
    "examples_per_s": 20480.0,
    "compile_s": 40.0,
    "tflops_per_step": 4.0,
    "precision": "bf16",
    "mfu": 0.162,
    "peak_note": "989.4 TFLOP/s, H200 SXM dense bf16",
  }
  return {**r, **overrides}


def test_report_names_the_peak_and_precision_it_divided_by():
  config = step_throughput.config_lib.get_config("configs/simclr.py:tiny")
  lines = step_throughput.report("configs/simclr.py:cifar10", config, _result(), smoke=False, steps=50)
  assert "images/s 20480 | matmuls in bf16 | MFU 16.2% of 989.4 TFLOP/s, H200 SXM dense bf16" in lines[1]
  assert lines[-1] == "summary: simclr | 1x NVIDIA H200 | images/s 20480 | 25.0 ms/step | MFU 16.2% (bf16)"
  unknown = step_throughput.report(
    "c", config, _result(mfu=None, peak_note="no peak listed for device 'X'"), smoke=False, steps=50
  )
  assert "MFU n/a: no peak listed for device 'X'" in unknown[1] and unknown[-1].endswith("MFU n/a")


def test_report_of_a_smoke_run_labels_every_line():
  config = step_throughput.config_lib.get_config("configs/simclr.py:tiny")
  lines = step_throughput.report("c", config, _result(), smoke=True, steps=2)
  assert lines[0].startswith("SMOKE RUN: 2 steps") and "not a GPU measurement" in lines[0]
  assert all(line.startswith("smoke: ") for line in lines[1:-1])
  assert lines[-1].startswith("summary: SMOKE, not a GPU figure |") and "MFU" not in lines[-1]


@needs_no_gpu
def test_backend_refusal_in_process():
  assert "jax backend is 'cpu', not a GPU" in step_throughput.backend_refusal(smoke=False)
  assert step_throughput.backend_refusal(smoke=True) is None
