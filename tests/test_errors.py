"""Every failure a user can cause: one line on stderr naming the bad value, key, file or path, exit 2, and
nothing written (a corrected rerun in the same workdir is welcome). Each case is a real `launch/run.py`: a process
of its own, or its `main` in the test's process for the cases the config checks refuse."""

import json
import os
import shutil
import time

import launcher
import numpy as np
import pytest

TINY = launcher.TINY_SIMCLR
FMNIST = "/usr/share/datasets/fashion-mnist"


def refused(workdir, *overrides, config=TINY, env=None, words="", in_process=False):
  """Runs and checks the refusal; returns stderr's one line. `in_process`: launch/run.py's main in this process
  (the config checks; a separate process for anything that reads data, whose libraries may print)."""
  if in_process:
    rc, out, err = launcher.run_main(config, workdir, *overrides)
  else:
    rc, out, err = launcher.run_cli(config, workdir, *overrides, env=env)
  line = err.strip()
  assert rc == 2, (rc, err[-3000:])
  assert line.startswith("error:") and "\n" not in line, err[-3000:]
  assert words in line, line
  return line


@pytest.mark.parametrize(
  "overrides, words",
  [
    (["batch_size=30"], "batch_size=30 is not divisible by the 8 devices"),
    (["evals.batch_size=100"], "evals.batch_size=100 is not divisible by the 8 devices"),
    (["optim.learning_rate=-0.1"], "optim.learning_rate=-0.1 must be in (0, inf)"),
    (["total_steps=-1"], "total_steps=-1 must be in [0, inf)"),
    (["evals.label_fractions=(1.0, 1.5)"], "evals.label_fractions holds 1.5"),
    (["optim.name=adam"], "optim.name='adam' is not one of lars, sgd, adamw"),
    (["data.eval_split=validation"], "data split 'validation' has no IDX files"),
    (["data.name=cifar10"], "data.name='cifar10' with data.path=/usr/share/datasets/fashion-mnist"),
  ],
)
def test_bad_values_are_refused_before_anything_is_written(tmp_path, overrides, words):
  refused(tmp_path / "run", *overrides, words=words, in_process="data." not in overrides[0])
  assert not (tmp_path / "run").exists()


def test_an_override_without_equals_is_named(tmp_path):
  import subprocess
  import sys

  proc = subprocess.run(
    [
      sys.executable,
      "launch/run.py",
      "--config",
      TINY,
      "--workdir",
      str(tmp_path / "run"),
      "--config.batch_size",
      "16",
    ],
    cwd=launcher.ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 2 and proc.stderr.strip() == (
    "error: --config.batch_size 16: an override takes '=', as in --config.batch_size=16"
  )
  assert not (tmp_path / "run").exists()


def test_workdir_that_is_a_file(tmp_path):
  path = tmp_path / "not_a_dir"
  path.write_text("mine\n")
  refused(path, words=f"--workdir {path} is a file, not a directory")
  assert path.read_text() == "mine\n"


def test_workdir_that_cannot_be_created(tmp_path):
  refused("/proc/ssljax-test/run", words="/proc/ssljax-test")


def test_gzip_cut_off_mid_stream(tmp_path):
  data = tmp_path / "fmnist"
  shutil.copytree(FMNIST, data)
  images = data / "train-images-idx3-ubyte.gz"
  images.write_bytes(images.read_bytes()[: images.stat().st_size // 2])
  refused(tmp_path / "run", f"data.path={data}", words=f"{images}: cannot be read")
  assert not (tmp_path / "run").exists()


def test_tfds_offline_fails_fast(tmp_path):
  start = time.monotonic()
  line = refused(tmp_path / "run", "data.path=", env={"TFDS_DATA_DIR": str(tmp_path / "tfds")}, words="fashion_mnist")
  assert "not prepared" in line and "network" in line, line
  assert time.monotonic() - start < 90
  assert not (tmp_path / "run").exists()


def test_word2vec_corpus_of_random_bytes(tmp_path):
  corpus = tmp_path / "noise.txt"
  corpus.write_bytes(np.random.default_rng(0).bytes(200_000))  # seeded: the same noise every run
  refused(
    tmp_path / "run",
    f"data.path={corpus}",
    "data.min_count=1",
    config="configs/word2vec.py:tiny",
    words="the word evals need English text",
  )
  assert not (tmp_path / "run").exists()


def test_truncated_newest_checkpoint_resumes_from_the_newest_intact_one(tmp_path):
  run = ["total_steps=6", "checkpoint_every=2", "keep_checkpoints=3", "evals.label_fractions=()", "evals.baselines=()"]
  rc, _, err = launcher.run_cli(TINY, tmp_path, *run)
  assert rc == 0, err[-3000:]
  reference = json.loads((tmp_path / "summary.json").read_text())["params_sha256"]
  # Cut every data file of the newest checkpoint in half, as a copy that stopped midway would leave it.
  for root, _, files in os.walk(tmp_path / "checkpoints" / "6"):
    for name in files:
      path = os.path.join(root, name)
      if os.path.getsize(path) > 64 and not name.endswith(".json") and "METADATA" not in name:
        with open(path, "r+b") as f:
          f.truncate(os.path.getsize(path) // 2)
  rc, out, err = launcher.run_cli(TINY, tmp_path, *run)
  assert rc == 0, err[-3000:]
  warnings = [line for line in err.splitlines() if "cannot be read" in line]
  assert len(warnings) == 1 and "checkpoints/6 cannot be read" in warnings[0] and "trying the one before" in warnings[0]
  assert "resumed from step 4" in out
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["resumed_from"] == 4 and summary["params_sha256"] == reference
  assert os.listdir(tmp_path / "checkpoints-unreadable")  # kept for a post-mortem, out of the way
