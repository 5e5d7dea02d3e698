"""P processes = 1 process: two local processes joined by jax.distributed on 127.0.0.1 (2 fake CPU devices each)
against one process with 4 devices, end to end through `launch/run.py`, evals included; and the refusals of a
multi-process run (a workdir the processes do not share, an unreachable coordinator).

The params agree to float rounding, not bit for bit: a sum over 4 devices is associated differently by the
in-process all-reduce and by gloo across processes (over 2 devices, a + b = b + a, and the hashes match).
"""

import json
import os
import shutil

import launcher
import numpy as np
import pytest

import ssljax
from ssljax import sharding

CASES = {
  # Probes, fine-tuning with its validation split, the random-init baseline and the pictures. One label fraction:
  # a second is the same seeded subset code the validation split runs, for 12 s more per run.
  "simclr": (
    "configs/simclr.py:tiny",
    [
      "total_steps=4",
      "evals.plots=True",
      "evals.finetune=True",
      "evals.finetune_min_steps=3",
      "evals.finetune_max_steps=3",
      "evals.label_fractions=(1.0,)",
    ],
  ),
  "bert": ("configs/bert.py:tiny", ["total_steps=6", "evals.label_fractions=(1.0,)"]),
  "word2vec": ("configs/word2vec.py:tiny", ["epochs=1"]),
  # The queue and the key encoder in the method state, enqueued with the keys of the global batch.
  "moco": ("configs/moco.py:tiny", ["total_steps=4", "evals.label_fractions=(1.0,)", "evals.baselines=()"]),
  # Negatives of both towers global, the caption drawn per example, zero-shot and retrieval on every process.
  "clip": ("configs/clip.py:tiny", ["total_steps=4", "evals.baselines=()"]),
}
# Files that only process 0 writes; a second writer would show as a second events file or a stray temp file.
PRODUCTS = {
  "simclr": ["eval.json", "summary.json", "metrics.jsonl", "config.json", "tsne.png", "neighbors.png"],
  "bert": ["eval.json", "summary.json", "tokenizer"],
  "word2vec": ["eval.json", "summary.json", "vectors.txt", "vectors.bin"],
  "moco": ["eval.json", "summary.json"],
  "clip": ["eval.json", "summary.json", "tokenizer"],
}


def read_json(path):
  with open(path) as f:
    return json.load(f)


def final_params(workdir):
  return sharding.to_host(ssljax.load(workdir).params)


@pytest.mark.parametrize("name", sorted(CASES))
def test_two_processes_match_one(name, tmp_path):
  config, overrides = CASES[name]
  one, two = tmp_path / "one", tmp_path / "two"
  rc, _, err = launcher.run_cli(config, one, *overrides, env=launcher.devices_env(4))
  assert rc == 0, err[-3000:]
  if (one / "tokenizer").exists():
    # WordPiece training breaks ties differently from one process to the next (huggingface/tokenizers#1794):
    # both runs read the same saved vocabulary, as a resumed run does.
    shutil.copytree(one / "tokenizer", two / "tokenizer")
  results = launcher.run_processes(config, [two, two], *overrides, devices=2)
  for i, (rc, _, err) in enumerate(results):
    assert rc == 0, f"process {i}: {err[-3000:]}"

  expected, got = read_json(one / "eval.json"), read_json(two / "eval.json")
  assert sorted(got) == sorted(expected)
  for key in expected:
    # A perplexity is exp(mean NLL): compared as the NLL it is computed from, or 1e-5 would mean 3e-8 at 300.
    scale = np.log if "perplexity" in key else (lambda v: v)
    assert scale(got[key]) == pytest.approx(scale(expected[key]), abs=1e-5), key
  summary_one, summary_two = read_json(one / "summary.json"), read_json(two / "summary.json")
  assert summary_two["num_devices"] == summary_one["num_devices"] == 4
  assert summary_two["steps"] == summary_one["steps"]
  # The checkpoints of both runs open here (8 devices): written on 4 devices by one or two processes.
  launcher.assert_params_close(final_params(two), final_params(one))

  for product in PRODUCTS[name]:
    assert (two / product).exists(), product
  assert sorted(os.listdir(two)) == sorted(os.listdir(one))
  if (two / "tensorboard").exists():
    assert len(os.listdir(two / "tensorboard")) == 1  # one writer


def test_workdirs_not_shared_fail_fast(tmp_path):
  """A workdir per host (no shared storage) ends on every process with one line, instead of hanging at the first
  checkpoint; nothing is written in the other process's directory."""
  a, b = tmp_path / "host0", tmp_path / "host1"
  results = launcher.run_processes(
    launcher.TINY_SIMCLR, [a, b], "total_steps=2", "evals.label_fractions=()", "evals.baselines=()"
  )
  for i, (rc, _, err) in enumerate(results):
    lines = err.strip().splitlines()
    assert rc == 2, f"process {i}: {err[-2000:]}"
    assert "do not see the workdir" in lines[-1] and "[1]" in lines[-1], lines[-1]
  assert not (b / "checkpoints").exists() and not (b / "eval.json").exists()


def test_unreachable_coordinator_is_one_line(tmp_path):
  proc_env = {
    **launcher.devices_env(1),
    "SSLJAX_COORDINATOR": f"127.0.0.1:{launcher.free_port()}",
    "SSLJAX_NUM_PROCESSES": "2",
    "SSLJAX_PROCESS_ID": "1",
    "SSLJAX_INIT_TIMEOUT_S": "3",
  }
  rc, _, err = launcher.run_cli(launcher.TINY_SIMCLR, tmp_path / "w", env=proc_env)
  assert rc == 2
  assert err.strip().splitlines() == [err.strip()] and "could not reach the coordinator" in err, err[-2000:]
  assert not (tmp_path / "w").exists()


def test_batch_the_processes_do_not_divide_is_one_line_on_every_process(tmp_path):
  results = launcher.run_processes(launcher.TINY_SIMCLR, [tmp_path, tmp_path], "batch_size=30", devices=2)
  for i, (rc, _, err) in enumerate(results):
    assert rc == 2, f"process {i}: {err[-2000:]}"
    assert err.strip().count("\n") == 0 and "batch_size=30 is not divisible by the 4 devices" in err, err[-2000:]
  assert not os.listdir(tmp_path)  # nothing written: the corrected command starts afresh here
