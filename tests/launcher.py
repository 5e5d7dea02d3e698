"""Running `launch/run.py` as a user would, for the end-to-end tests of every method."""

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(config: str, workdir, *overrides, wait: bool = True):
  """`launch/run.py --config CONFIG --workdir WORKDIR --config.OVERRIDE...`: (returncode, stdout, stderr), or
  the running process when `wait` is False."""
  cmd = [sys.executable, "launch/run.py", "--config", config, "--workdir", str(workdir),
         *[f"--config.{o}" for o in overrides]]
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  if not wait:
    return proc
  out, err = proc.communicate(timeout=600)
  return proc.returncode, out, err


def wait_for_checkpoint(workdir, step: int, proc, timeout: float = 300) -> None:
  """Returns once checkpoint `step` exists in `workdir`; fails if `proc` exits or time runs out first."""
  path = os.path.join(workdir, "checkpoints", str(step))
  deadline = time.time() + timeout
  while not os.path.isdir(path):
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    assert time.time() < deadline, "no checkpoint appeared"
    time.sleep(0.02)
