"""Checkpoints across device and process counts: a run saved on 4 devices resumes on 2 and on 1, SIGTERM to one
process of a multi-process run makes every process save the same step, and that checkpoint's params open on any
machine."""

import json
import shutil
import signal
import time

import jax
import launcher
import numpy as np

import ssljax
from ssljax import sharding

TINY = launcher.TINY_SIMCLR
NO_EVALS = ["evals.label_fractions=()", "evals.baselines=()"]


def read_json(path):
  with open(path) as f:
    return json.load(f)


def saved_steps(workdir):
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def params_at(workdir, step):
  return sharding.to_host(ssljax.load(workdir, step=step).params)


def test_saved_on_four_devices_resumes_on_two_and_one(tmp_path):
  run = ["total_steps=6", "checkpoint_every=2", "keep_checkpoints=10", *NO_EVALS]
  four = tmp_path / "four"
  rc, _, err = launcher.run_cli(TINY, four, *run, env=launcher.devices_env(4))
  assert rc == 0, err[-3000:]
  assert saved_steps(four) == [2, 4, 6]
  for devices in (2, 1):
    # The 4-device run as it stood at step 2: a copy without its later checkpoints.
    resumed = tmp_path / f"resumed_on_{devices}"
    shutil.copytree(four, resumed)
    for step in ("4", "6"):
      shutil.rmtree(resumed / "checkpoints" / step)
    rc, out, err = launcher.run_cli(TINY, resumed, *run, env=launcher.devices_env(devices))
    assert rc == 0, err[-3000:]
    summary = read_json(resumed / "summary.json")
    assert summary["resumed_from"] == 2 and summary["num_devices"] == devices
    # Same steps on another mesh: equal up to the order of the gradient sums.
    launcher.assert_params_close(params_at(resumed, 6), params_at(four, 6))


def wait_for_training(workdir, procs, timeout=300):
  deadline = time.time() + timeout
  while not (workdir / "metrics.jsonl").exists() or not (workdir / "metrics.jsonl").read_text().strip():
    assert all(p.poll() is None for p in procs), procs[0].communicate()[1][-2000:]
    assert time.time() < deadline, "training did not start"
    time.sleep(0.05)


def test_sigterm_to_one_process_stops_all_at_the_same_step(tmp_path):
  """SIGTERM to process 1 only: both processes save the same step and exit 143, and the run resumes from it. That
  checkpoint of 2 processes x 2 devices opens in this 8-device process as host arrays, as it would on a laptop."""
  run = ["total_steps=60", "checkpoint_every=1000", "log_every=1", *NO_EVALS]
  procs = launcher.run_processes(TINY, [tmp_path, tmp_path], *run, devices=2, wait=False)
  try:
    wait_for_training(tmp_path, procs)
    procs[1].send_signal(signal.SIGTERM)  # process 0 gets nothing: it learns of it from the coordination service
    errs = [p.communicate(timeout=300)[1] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  assert [p.returncode for p in procs] == [143, 143], errs[0][-2000:] + errs[1][-2000:]
  steps = [int(e.split("every process saved step ")[1].split()[0]) for e in errs]
  assert steps[0] == steps[1] < 60
  saved = saved_steps(tmp_path)
  assert saved == [steps[0]]
  leaves = jax.tree.leaves(params_at(tmp_path, steps[0]))
  assert leaves and all(isinstance(x, np.ndarray) for x in leaves)
  results = launcher.run_processes(TINY, [tmp_path, tmp_path], *run, devices=2)
  assert all(rc == 0 for rc, _, _ in results), results[0][2][-2000:]
  summary = read_json(tmp_path / "summary.json")
  assert summary["resumed_from"] == steps[0] and summary["steps"] == 60


def test_sigterm_while_blocked_in_a_collective_ends_within_the_grace(tmp_path):
  """Process 0 frozen (SIGSTOP): process 1 waits in a collective that cannot complete; SIGTERM still ends it,
  with a message, once the grace period has passed."""
  run = ["total_steps=100000", "checkpoint_every=100000", "log_every=1", *NO_EVALS]
  procs = launcher.run_processes(
    TINY, [tmp_path, tmp_path], *run, devices=2, wait=False, env={"SSLJAX_PREEMPTION_GRACE_S": "3"}
  )
  try:
    wait_for_training(tmp_path, procs)
    procs[0].send_signal(signal.SIGSTOP)
    time.sleep(1.0)  # process 1 is now inside a step whose all-reduce waits for process 0
    t0 = time.time()
    procs[1].send_signal(signal.SIGTERM)
    _, err = procs[1].communicate(timeout=60)
    elapsed = time.time() - t0
  finally:
    for p in procs:
      p.kill()
      p.wait()
  assert procs[1].returncode == 143, err[-2000:]
  assert "did not stop within 3 s" in err.strip().splitlines()[-1]
  assert elapsed < 30
