"""Running `launch/run.py` as a user would, for the end-to-end tests of every method."""

import json
import math
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_SIMCLR = "configs/simclr.py:tiny"


def run_cli(config: str, workdir, *overrides, wait: bool = True, env: dict | None = None, cwd=ROOT):
  """`launch/run.py --config CONFIG --workdir WORKDIR --config.OVERRIDE...`: (returncode, stdout, stderr), or
  the running process when `wait` is False. `env` adds to (or, with None values, removes from) the environment;
  `cwd` is where it runs (relative paths are read from there)."""
  cmd = [
    sys.executable,
    os.path.join(ROOT, "launch", "run.py"),
    "--config",
    config,
    "--workdir",
    str(workdir),
    *[f"--config.{o}" for o in overrides],
  ]
  full_env = dict(os.environ)
  for key, value in (env or {}).items():
    if value is None:
      full_env.pop(key, None)
    else:
      full_env[key] = value
  proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
  if not wait:
    return proc
  out, err = proc.communicate(timeout=600)
  return proc.returncode, out, err


def run_main(config: str, workdir, *overrides):
  """`launch/run.py`'s own `main`, in this process: (returncode, stdout, stderr). For refusals, which end before a
  step is compiled: no interpreter, jax or dataset start of its own. The test process's devices apply (8)."""
  import contextlib
  import importlib.util
  import io

  spec = importlib.util.spec_from_file_location("ssljax_launch_run", os.path.join(ROOT, "launch", "run.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  argv = ["--config", os.path.join(ROOT, config), "--workdir", str(workdir), *[f"--config.{o}" for o in overrides]]
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      rc = module.main(argv)
    except SystemExit as e:
      rc = e.code
  return rc, out.getvalue(), err.getvalue()


def _without_key_bias(path: str, leaf):
  """Attention's key bias adds q.b_k to every logit of a query alike, which the softmax cancels: its exact gradient is
  0, so what it gets is rounding noise, which Adam scales up to steps of the learning rate's size. Two runs that sum
  in another order move it apart although no output depends on it (seen in CLIP's text tower): left out."""
  import numpy as np

  leaf = np.asarray(leaf)
  if not path.endswith("['attn']['qkv']['bias']"):
    return leaf
  hidden = leaf.shape[-1] // 3  # [q | k | v], as TransformerBlock's fused projection lays them out
  return np.concatenate([leaf[..., :hidden], leaf[..., 2 * hidden :]], axis=-1)


def assert_params_close(a, b, atol: float = 1e-5) -> None:
  """Two param trees equal to float rounding, leaf by leaf in sorted path order (as params_sha256 reads them), but
  for attention's key bias, on which nothing depends (`_without_key_bias`)."""
  import jax
  import numpy as np

  def flat(tree):
    leaves = sorted((jax.tree_util.keystr(p), leaf) for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0])
    return np.concatenate([np.ravel(_without_key_bias(p, leaf)) for p, leaf in leaves])

  np.testing.assert_allclose(flat(a), flat(b), rtol=0, atol=atol)


def devices_env(devices: int) -> dict:
  """The environment of a process that sees `devices` fake CPU devices."""
  return {"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


# The device count of the runs whose evals are compared with one device. Not the test session's 8: on this 2-core
# machine, 8 fake devices give XLA:CPU a larger intra-op pool, which splits a probe's (512, 10)^T (512, 784) dot
# over its contraction and sums it in another order (1 to 7 devices sum alike); an L-BFGS optimum that moved by
# rounding then flipped one borderline test image of the raw-pixel probe. On an accelerator a host-side probe
# runs on one device whatever the count.
EVAL_DEVICES = 4


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_processes(config: str, workdirs, *overrides, devices: int = 2, env: dict | None = None, wait: bool = True):
  """One multi-process run: a process per workdir (the same path for a shared workdir), joined by
  jax.distributed on 127.0.0.1, each with `devices` fake CPU devices. Returns [(returncode, stdout, stderr)] in
  process order, or the running processes when `wait` is False."""
  port = free_port()
  procs = []
  for i, workdir in enumerate(workdirs):
    process_env = {
      **devices_env(devices),
      "SSLJAX_COORDINATOR": f"127.0.0.1:{port}",
      "SSLJAX_NUM_PROCESSES": str(len(workdirs)),
      "SSLJAX_PROCESS_ID": str(i),
      **(env or {}),
    }
    procs.append(run_cli(config, workdir, *overrides, wait=False, env=process_env))
  if not wait:
    return procs
  results = []
  try:
    for proc in procs:
      out, err = proc.communicate(timeout=600)
      results.append((proc.returncode, out, err))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  return results


def wait_for_checkpoint(workdir, step: int, proc, timeout: float = 300) -> None:
  """Returns once checkpoint `step` exists in `workdir`; fails if `proc` exits or time runs out first."""
  path = os.path.join(workdir, "checkpoints", str(step))
  deadline = time.time() + timeout
  while not os.path.isdir(path):
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    assert time.time() < deadline, "no checkpoint appeared"
    time.sleep(0.02)


def assert_suite_read_both_encoders(results: dict, names) -> None:
  """The suite scored the trained encoder and the random-init one, each far above chance (0.1 on Fashion-MNIST's
  ten classes: features or labels out of step would score it), and the two are different encoders."""
  for prefix in ("", "baseline/random_init/"):
    for name in names:
      assert results[prefix + name] > 0.3, (prefix + name, results[prefix + name])
  assert any(results[name] != results["baseline/random_init/" + name] for name in names), results


def read_json(path) -> dict:
  with open(path) as f:
    return json.load(f)


def assert_same_evals_on_one_device(workdir, config: str, *overrides, scratch) -> dict:
  """Evaluates a finished run again on one device (a copy of `workdir` under `scratch`: the engine restores its
  last checkpoint and runs only the evals) and asserts every number of eval.json equals the run's own, written on
  however many devices it had. Returns the one-device eval.json."""
  import shutil

  copy = os.path.join(scratch, "evaluated_on_one_device")
  shutil.copytree(workdir, copy)
  expected = read_json(os.path.join(workdir, "eval.json"))
  rc, out, err = run_cli(config, copy, *overrides, env=devices_env(1))
  assert rc == 0, err[-3000:]
  summary = read_json(os.path.join(copy, "summary.json"))
  assert summary["num_devices"] == 1 and summary["resumed_from"] == summary["steps"], summary
  got = read_json(os.path.join(copy, "eval.json"))
  assert sorted(got) == sorted(expected)
  assert read_json(os.path.join(workdir, "summary.json"))["num_devices"] == EVAL_DEVICES
  for key, value in expected.items():
    # Features and probes are per example and the fine-tuning batches are the same: equal to float rounding.
    # A perplexity is exp(mean NLL): compared as the NLL it is computed from.
    scale = math.log if "perplexity" in key else (lambda v: v)
    assert abs(scale(got[key]) - scale(value)) <= 1e-6, (key, got[key], value)
  return got


# Overrides that leave only the evals no config key turns off: for runs whose params, not evals, a test reads.
IMAGE_EVALS_OFF = ("evals.label_fractions=()", "evals.baselines=()", "evals.finetune=False")


def assert_resumes_exactly(config: str, workdir, reference, *overrides, kill_at: int, copy=()) -> dict:
  """Runs `config` in `workdir`, SIGKILLs it once checkpoint `kill_at` is written, runs it again to the end, and
  asserts it resumed mid-run and ended with the params of the uninterrupted run in workdir `reference` (whose
  subdirectories `copy` it starts from: a trained tokenizer, say). `overrides` may differ from the reference's in
  what training does not read (the evals)."""
  import shutil
  import signal

  for name in copy:
    shutil.copytree(os.path.join(reference, name), os.path.join(workdir, name))
  # The reference's device count: params are bit-equal for equal counts, float-close across counts.
  env = devices_env(read_json(os.path.join(reference, "summary.json"))["num_devices"])
  proc = run_cli(config, workdir, *overrides, wait=False, env=env)
  wait_for_checkpoint(workdir, kill_at, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  rc, _, err = run_cli(config, workdir, *overrides, env=env)
  assert rc == 0, err[-3000:]
  summary = read_json(os.path.join(workdir, "summary.json"))
  expected = read_json(os.path.join(reference, "summary.json"))
  assert kill_at <= summary["resumed_from"] < summary["steps"], "the kill came too late to test resumption"
  assert summary["steps"] == expected["steps"]
  assert summary["params_sha256"] == expected["params_sha256"]
  return summary


def end_to_end(config: str, *overrides, kill_at: int, evals_off=IMAGE_EVALS_OFF, copy=()):
  """A method's end-to-end checks on its tiny preset: a module-scoped fixture `tiny_run` (one finished run of
  `config` with `overrides`: (workdir, stdout)) and the two tests every method passes on it, that its evals give
  the same numbers on one device and that a run SIGKILLed after checkpoint `kill_at` resumes to the same params
  (with `evals_off` added, and the reference's subdirectories `copy`). A test module binds all three:
  `tiny_run, test_evals_are_the_same_on_one_device, test_resumes_exactly_after_sigkill = launcher.end_to_end(...)`."""
  import pytest

  @pytest.fixture(scope="module")
  def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp(os.path.basename(config).split(".")[0])
    rc, out, err = run_cli(config, workdir, *overrides, env=devices_env(EVAL_DEVICES))
    assert rc == 0, err[-3000:]
    return workdir, out

  def test_evals_are_the_same_on_one_device(tiny_run, tmp_path):
    assert_same_evals_on_one_device(tiny_run[0], config, *overrides, scratch=tmp_path)

  def test_resumes_exactly_after_sigkill(tiny_run, tmp_path):
    assert_resumes_exactly(config, tmp_path, tiny_run[0], *overrides, *evals_off, kill_at=kill_at, copy=copy)

  return tiny_run, test_evals_are_the_same_on_one_device, test_resumes_exactly_after_sigkill
