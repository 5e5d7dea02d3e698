"""`ssljax.load(workdir)`: a run written on 2 devices, loaded on this process's 8, embeds raw images as its
evals did, at any size and channel count, and hands over its encoder."""

import json

import jax
import launcher
import numpy as np
import pytest

import ssljax
from ssljax import config as config_lib
from ssljax import train
from ssljax.data import images
from ssljax.evals import knn
from ssljax.methods import vision


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("simclr")
  overrides = ["evals.label_fractions=(1.0,)", "evals.baselines=()", "evals.finetune=False"]
  rc, _, err = launcher.run_cli(launcher.TINY_SIMCLR, workdir, *overrides, env=launcher.devices_env(2))
  assert rc == 0, err[-3000:]
  return workdir


def test_loads_the_final_params_on_another_device_count(trained):
  run = ssljax.load(trained)
  summary = json.loads((trained / "summary.json").read_text())
  assert run.step == summary["steps"] and run.config.method == "simclr" and run.mesh.size == 8
  assert train.params_sha256(run.params) == summary["params_sha256"]


def test_embed_reproduces_the_runs_own_knn_score(trained):
  run = ssljax.load(trained)
  config = run.config
  train_split = images.load_split(config.data, "train", config.data.max_train_examples)
  test_split = images.load_split(config.data, config.data.eval_split, config.data.max_eval_examples)
  score = knn.knn_top1(
    run.embed(train_split.images),
    train_split.labels,
    run.embed(test_split.images),
    test_split.labels,
    num_classes=10,
    k=config.evals.knn_k,
    temperature=config.evals.knn_temperature,
  )
  assert score == pytest.approx(json.loads((trained / "eval.json").read_text())["knn/top1"], abs=1e-6)


def test_any_size_and_channel_count(trained):
  run = ssljax.load(trained)
  gray = images.load_split(run.config.data, "test", 64).images  # (64, 28, 28, 1)
  as_is = run.embed(gray)
  # The same images twice as large, in RGB, as a list: resized back and turned gray by the loader.
  rgb = [np.repeat(np.kron(im, np.ones((2, 2, 1), np.uint8)), 3, axis=-1) for im in gray]
  resized = run.embed(rgb)
  cosine = np.sum(as_is * resized, 1) / (np.linalg.norm(as_is, axis=1) * np.linalg.norm(resized, axis=1))
  assert cosine.min() > 0.98, cosine.min()
  with pytest.raises(ValueError, match="image 0: expected uint8"):
    run.embed(gray.astype(np.float32))


def test_encoder_is_the_trained_encoder(trained):
  run = ssljax.load(trained)
  module, variables = run.encoder()
  x = images.load_split(run.config.data, "test", 8).images
  _, aux = module.apply(jax.device_get(variables), vision.eval_view(x, run.config), train=False)
  np.testing.assert_allclose(np.asarray(aux[run.config.model.readout]), run.embed(x), rtol=1e-4, atol=1e-5)


def test_a_workdir_without_a_run_is_one_clear_error(tmp_path):
  with pytest.raises(config_lib.ConfigError, match="holds no run"):
    ssljax.load(tmp_path)


def test_init_from_starts_the_encoder_from_another_run(trained, tmp_path):
  """Continued pre-training at a learning rate too small to move anything: the encoder it ends with is the one it
  started from, the other run's, not its own initialisation."""
  quick = ["total_steps=2", "optim.learning_rate=1e-12", "evals.label_fractions=()", "evals.baselines=()"]
  rc, out, err = launcher.run_cli(launcher.TINY_SIMCLR, tmp_path / "b", f"init_from={trained}", *quick)
  assert rc == 0, err[-3000:]
  assert f"encoder from step 6 of {trained}" in out
  source, continued = ssljax.load(trained), ssljax.load(tmp_path / "b")
  launcher.assert_params_close(continued.params["encoder"], source.params["encoder"], atol=1e-6)
  # The head was not taken: it starts from this run's own initialisation.
  head = jax.tree.leaves(continued.params["head"])[0]
  assert np.abs(np.asarray(head) - np.asarray(jax.tree.leaves(source.params["head"])[0])).max() > 1e-3
  # init_from is part of what the run is: another source is a different run.
  line = launcher.run_cli(launcher.TINY_SIMCLR, tmp_path / "b", f"init_from={tmp_path / 'b'}", *quick)[2].strip()
  assert "holds a run of a different config (changed: init_from)" in line


def test_init_from_a_workdir_without_a_run_is_one_line(tmp_path):
  rc, _, err = launcher.run_cli(launcher.TINY_SIMCLR, tmp_path / "b", f"init_from={tmp_path / 'nothing'}")
  assert (
    rc == 2
    and err.strip() == f"error: {tmp_path / 'nothing'} holds no run: {tmp_path / 'nothing'}/config.json is missing"
  )
  assert not (tmp_path / "b").exists()
