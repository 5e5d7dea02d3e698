"""The engine end to end on the `tiny` preset: outputs, exact resume after SIGKILL and SIGTERM, refusals."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import launcher
import numpy as np
import pytest

from ssljax import config as config_lib
from ssljax import methods, optim, sharding, train
from ssljax.data import images

ROOT = launcher.ROOT
TINY = "configs/simclr.py:tiny"
# Resume tests train longer than `tiny` and skip the probes they do not look at.
QUICK = ["total_steps=10", "evals.label_fractions=()", "evals.baselines=()"]


def run_cli(workdir, *overrides, wait=True):
  return launcher.run_cli(TINY, workdir, *overrides, wait=wait)


def read_json(path):
  with open(path) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("reference")
  rc, out, err = run_cli(workdir, *QUICK)
  assert rc == 0, err[-3000:]
  return workdir, read_json(workdir / "summary.json")


def test_full_run_writes_results_and_evaluates_the_same_on_one_device(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp("full")
  rc, out, err = launcher.run_cli(TINY, tmp_path, env=launcher.devices_env(launcher.EVAL_DEVICES))
  assert rc == 0, err[-3000:]
  results = read_json(tmp_path / "eval.json")
  for prefix in ("", "baseline/raw_pixels/", "baseline/random_init/"):
    for name in ("knn/top1", "linear/top1", "linear_10pct/top1"):
      assert 0.0 <= results[prefix + name] <= 1.0
  # Even 6 tiny steps leave features far better than chance on 10 classes.
  assert results["linear/top1"] > 0.3
  summary = read_json(tmp_path / "summary.json")
  assert summary["steps"] == 6 and np.isfinite(summary["final_loss"]) and len(summary["params_sha256"]) == 64
  lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6] and all("loss" in line for line in lines)
  assert os.listdir(tmp_path / "tensorboard")
  assert "linear/top1" in out and "random init" in out  # the result table
  launcher.assert_same_evals_on_one_device(tmp_path, TINY, scratch=tmp_path_factory.mktemp("one_device"))


def test_resume_after_sigkill_is_exact(tmp_path, reference_run):
  _, reference = reference_run
  proc = run_cli(tmp_path, *QUICK, wait=False)
  launcher.wait_for_checkpoint(tmp_path, 4, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  rc, out, err = run_cli(tmp_path, *QUICK)
  assert rc == 0, err[-3000:]
  summary = read_json(tmp_path / "summary.json")
  assert 4 <= summary["resumed_from"] < 10, "the kill came too late to test resumption"
  assert summary["params_sha256"] == reference["params_sha256"]


def test_sigterm_saves_then_resumes_exactly(tmp_path, reference_run):
  _, reference = reference_run
  proc = run_cli(tmp_path, *QUICK, "checkpoint_every=1000", wait=False)
  # Wait until training is under way (the first progress line), then preempt.
  deadline = time.time() + 300
  while not (tmp_path / "metrics.jsonl").exists() or not (tmp_path / "metrics.jsonl").read_text():
    assert proc.poll() is None and time.time() < deadline
    time.sleep(0.02)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 143, err[-2000:]
  assert "preempted: SIGTERM: every process saved step" in err
  saved = [int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit()]
  assert len(saved) == 1 and 1 <= saved[0] < 10
  rc, _, err = run_cli(tmp_path, *QUICK, "checkpoint_every=1000")
  assert rc == 0, err[-3000:]
  summary = read_json(tmp_path / "summary.json")
  assert summary["resumed_from"] == saved[0]
  assert summary["params_sha256"] == reference["params_sha256"]


def test_different_config_is_refused_and_nothing_changes(tmp_path, reference_run):
  workdir, _ = reference_run
  before = {p: os.path.getmtime(os.path.join(d, p)) for d, _, files in os.walk(workdir) for p in files}
  rc, out, err = run_cli(workdir, *QUICK, "seed=1", "optim.learning_rate=0.1")
  assert rc == 2
  assert err.strip().count("\n") == 0 and "changed: optim.learning_rate, seed" in err
  after = {p: os.path.getmtime(os.path.join(d, p)) for d, _, files in os.walk(workdir) for p in files}
  assert before == after


@pytest.mark.parametrize(
  "args, words",
  [
    (["--config.optim.lerning_rate=0.1"], "unknown config key 'optim.lerning_rate'"),
    (["--config.method=byol"], "unknown method 'byol'"),
    (["--config.data.path=/nonexistent/fmnist"], "make data"),
    (["--config.optim.name=adam"], "optim.name='adam'"),
  ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, words):
  workdir = tmp_path / "run"
  proc = subprocess.run(
    [sys.executable, "launch/run.py", "--config", TINY, "--workdir", str(workdir), *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 2
  assert proc.stderr.strip().startswith("error:") and words in proc.stderr
  assert proc.stderr.strip().count("\n") == 0
  assert not (workdir / "checkpoints").exists()


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  # Plain SGD at an absurd rate overflows the weights within a few steps.
  rc, out, err = run_cli(
    tmp_path, "total_steps=30", "optim.name=sgd", "optim.learning_rate=1e30", "checkpoint_every=1", "evals.baselines=()"
  )
  assert rc == 3, err[-2000:]
  assert err.strip().count("\n") == 0 and "non-finite loss or gradients at step" in err
  bad_step = int(err.split("at step ")[1].split()[0])
  saved = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
  assert saved and max(saved) < bad_step
  assert not (tmp_path / "eval.json").exists() and not (tmp_path / "summary.json").exists()


def _two_steps(num_devices):
  """Two SimCLR steps of the tiny preset on a mesh of `num_devices`; returns params and metrics."""
  config = config_lib.get_config(TINY)
  method = methods.get_method(config.method)
  mesh = sharding.make_mesh(num_devices)
  split = images.load_split(config.data, "train", 256)
  tx, schedule = optim.make_optimizer(config.optim, batch_size=32, total_steps=10, steps_per_epoch=8)
  repl = sharding.replicated(mesh)

  def init(rng):
    params, state = method.init(config, rng, {"image": np.zeros((32, 28, 28, 1), np.uint8)})
    return train.TrainState(
      step=jax.numpy.zeros((), jax.numpy.int32), params=params, opt_state=tx.init(params), method_state=state, rng=rng
    )

  state = jax.jit(init, out_shardings=repl)(jax.random.PRNGKey(0))
  step = jax.jit(train.make_train_step(method, config, tx, schedule), out_shardings=(repl, repl))
  stream = images.train_stream(split, batch_size=32, seed=0, start_step=0)
  for _ in range(2):
    state, metrics = step(state, sharding.global_batch(next(stream), mesh))
  return jax.device_get(state.params), jax.device_get(metrics)


def test_same_numbers_on_one_and_eight_devices():
  p1, m1 = _two_steps(1)
  p8, m8 = _two_steps(8)
  np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-5)
  np.testing.assert_allclose(m1["grad_norm"], m8["grad_norm"], rtol=1e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), p1, p8)
