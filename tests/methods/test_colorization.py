"""Colorization and split-brain: Lab views, the split encoder, learning colour on held-out photo crops, the refusal of
grayscale training data, evaluation on another dataset (`evals.data`), and one full run through the eval suite."""

import json
import os

import jax
import jax.numpy as jnp
import launcher
import numpy as np
import pytest

from ssljax import color, optim, train
from ssljax.config import ConfigError
from ssljax.data import images
from ssljax.evals import suite
from ssljax.methods import colorization

FMNIST = "/usr/share/datasets/fashion-mnist"


def _photos(num, split="train", size=28):
  return images.load_photo_split(split, num, size)


def _init(config, batch):
  # Jitted: one compilation instead of one per op.
  return jax.jit(lambda rng, b: colorization.init(config, rng, b))(jax.random.PRNGKey(0), batch)


# ----------------------------------------------------------------------------------------------------- views


def test_lab_view_is_normalized_skimage_lab_and_gray_images_have_no_colour():
  skcolor = pytest.importorskip("skimage.color")
  rgb = _photos(4).images.astype(np.float32) / 255.0
  lab = np.asarray(colorization.to_lab(jnp.asarray(rgb)))
  reference = skcolor.rgb2lab(rgb)
  np.testing.assert_allclose(lab[..., 0], reference[..., 0] / 50.0 - 1.0, atol=1e-4)
  np.testing.assert_allclose(lab[..., 1:], reference[..., 1:] / 110.0, atol=1e-4)
  gray = rgb[..., :1]
  gray_lab = np.asarray(colorization.to_lab(jnp.asarray(gray)))
  np.testing.assert_allclose(gray_lab[..., 0], skcolor.rgb2lab(np.repeat(gray, 3, -1))[..., 0] / 50 - 1, atol=1e-4)
  assert (gray_lab[..., 1:] == 0).all()


def test_eval_view_reads_l_only_or_l_and_ab_for_split_brain(config_of):
  config = config_of("configs/colorization.py:tiny")
  batch = _photos(2).images
  assert colorization.eval_view(batch, config).shape == (2, 28, 28, 1)
  assert colorization.eval_view(batch[..., :1], config).shape == (2, 28, 28, 1)  # grayscale evaluation images
  config.colorization.mode = "split_brain"
  assert colorization.eval_view(batch, config).shape == (2, 28, 28, 3)


def test_bad_mode_and_loss_are_config_errors(config_of):
  config = config_of("configs/colorization.py:tiny")
  config.colorization.mode = "sepia"
  with pytest.raises(ConfigError, match="colorization.mode='sepia'"):
    colorization.check_config(config)
  config.colorization.mode, config.colorization.loss = "colorize", "l1"
  with pytest.raises(ConfigError, match="colorization.loss='l1'"):
    colorization.METHOD.check_config(config)


# ---------------------------------------------------------------------------------------------------- models


@pytest.mark.parametrize("loss", ["classification", "regression"])
def test_split_brain_features_are_the_two_halves_concatenated(config_of, loss):
  config = config_of("configs/colorization.py:tiny")
  config.colorization.mode, config.colorization.loss = "split_brain", loss
  batch = {"image": _photos(4).images}
  params, state = _init(config, batch)
  assert set(params) == {"encoder", "ab_decoder", "l_decoder"}
  assert set(params["encoder"]) == {"l", "ab"} and set(state["batch_stats"]["encoder"]) == {"l", "ab"}
  features = np.asarray(jax.jit(lambda p, s, b: colorization.METHOD.embed(p, s, b, config))(params, state, batch))
  # Each half alone, on its own channels of the same view.
  halves = colorization.build_encoder(config)
  x = colorization.eval_view(batch["image"], config)
  parts = []
  for name, channels in (("l", x[..., :1]), ("ab", x[..., 1:])):
    variables = {"params": params["encoder"][name], "batch_stats": state["batch_stats"]["encoder"][name]}
    _, aux = getattr(halves, name).apply(variables, channels, train=False)
    parts.append(np.asarray(aux[config.model.readout]))
  widths = config.model.encoder_kwargs.widths
  assert [p.shape[1] for p in parts] == [4 * round(widths[-1] * config.colorization.split_width)] * 2
  assert features.shape == (4, sum(p.shape[1] for p in parts))
  np.testing.assert_allclose(features, np.concatenate(parts, axis=1), rtol=1e-6, atol=1e-6)


def test_the_suite_can_lift_and_fine_tune_the_split_brain_encoder(config_of):
  config = config_of("configs/colorization.py:tiny")
  config.colorization.mode = "split_brain"
  gray = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1), np.uint8)
  params, state = _init(config, {"image": _photos(4).images})
  classifier = suite.EncoderClassifier(colorization.build_encoder(config), 10)

  @jax.jit
  def finetune_logits(params, state):
    fresh = classifier.init(jax.random.PRNGKey(1), colorization.eval_view(gray, config), train=False)
    logits, _ = classifier.apply(
      {
        "params": {"encoder": params["encoder"], "head": fresh["params"]["head"]},
        "batch_stats": {"encoder": state["batch_stats"]["encoder"]},
      },
      colorization.finetune_view(gray, jax.random.PRNGKey(2), config),
      train=True,
      mutable=["batch_stats"],
    )
    return logits

  logits = finetune_logits(params, state)
  assert logits.shape == (4, 10) and np.isfinite(np.asarray(logits)).all()


def test_soft_targets_and_point_estimates():
  centres = jnp.asarray(color.normalize_l(np.array([5.0, 15.0, 25.0, 35.0], np.float32)))
  soft = np.asarray(colorization.soft_encode_l(jnp.array([[-0.7]]), centres))  # L = 15, a bin centre
  np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-6)
  assert soft.argmax() == 1 and soft[0, 0] == pytest.approx(soft[0, 2])
  logits = jnp.log(jnp.array([[0.25, 0.75]]))
  ab = jnp.array([[0.0, 0.0], [0.4, -0.2]])
  np.testing.assert_allclose(np.asarray(colorization.point_estimate(logits, ab)), [[0.3, -0.15]], rtol=1e-6)


# -------------------------------------------------------------------------------------------------- learning


def _trained(config, steps):
  split = images.load_split(config.data, "train", config.data.max_train_examples)
  params, state = _init(config, split.example_batch(config.batch_size))
  tx, schedule = optim.make_optimizer(
    config.optim,
    batch_size=config.batch_size,
    total_steps=steps,
    steps_per_epoch=split.steps_per_epoch(config.batch_size),
  )
  ts = train.TrainState(
    step=np.zeros((), np.int32), params=params, opt_state=tx.init(params), method_state=state, rng=jax.random.PRNGKey(1)
  )
  step = jax.jit(train.make_train_step(colorization.METHOD, config, tx, schedule))
  stream = split.stream(batch_size=config.batch_size, seed=0, start_step=0)
  history = []
  for _ in range(steps):
    ts, metrics = step(ts, next(stream))
    history.append({k: float(v) for k, v in jax.device_get(metrics).items()})
  return ts, history


@pytest.mark.parametrize("mode,loss", [("colorize", "classification"), ("split_brain", "regression")])
def test_a_few_dozen_steps_beat_predicting_gray_on_held_out_crops(config_of, mode, loss):
  config = config_of("configs/colorization.py:tiny")
  config.colorization.update(mode=mode, loss=loss, standardize_l=False, input_jitter=0.0)
  config.batch_size, config.data.max_train_examples, config.optim.learning_rate = 64, 2048, 1e-2
  if loss == "classification":
    # 262 bins a pixel: predicting at the 14x14 feature map itself, not upsampled to 28x28, halves the test's time.
    config.colorization.decoder_widths = ()
  state, history = _trained(config, 40)
  assert np.mean([h["loss"] for h in history[-5:]]) < 0.97 * history[0]["loss"]
  held_out = _photos(256, "test").images
  errors = colorization.held_out_errors(state.params, state.method_state, held_out, config)
  assert errors["colorization/ab_rmse"] < 0.9 * errors["colorization/gray_ab_rmse"], errors
  if mode == "split_brain":
    # ab says little of L: 40 steps beat a constant L by a few percent (26.1 vs 27.7 when measured).
    assert errors["colorization/l_rmse"] < errors["colorization/constant_l_rmse"], errors


# ------------------------------------------------------------------------------------------- data and evals


def test_evals_data_replaces_the_training_data_in_the_suite(config_of):
  config = config_of("configs/colorization.py:tiny")
  photos = images.load_split(config.data, "train", config.data.max_train_examples)
  probe_train, probe_test = suite.eval_data(config, photos)
  assert probe_train.images.shape == (512, 28, 28, 1) and probe_test.images.shape == (256, 28, 28, 1)
  assert probe_train.class_names[9] == "Ankle boot"
  config.evals.data.name = ""  # no evals.data: the run's own data and eval split
  probe_train, probe_test = suite.eval_data(config, photos)
  assert probe_train is photos and probe_test.images.shape == (64, 28, 28, 3)


def test_grayscale_training_data_is_refused_in_one_line_naming_it(tmp_path):
  rc, out, err = launcher.run_main(
    "configs/colorization.py:tiny", tmp_path, "data.name=fashion_mnist", f"data.path={FMNIST}"
  )
  assert rc == 2
  lines = err.strip().splitlines()
  assert len(lines) == 1 and "data.name='fashion_mnist'" in lines[0] and "colour" in lines[0], err[-2000:]
  assert not {"eval.json", "summary.json", "checkpoints", "colorizations.png"} & set(os.listdir(tmp_path))


TINY = "configs/colorization.py:tiny"
# Fine-tuning through the suite is exercised by the rotation run and by the split-brain test above.
RUN = ("evals.finetune=False",)

tiny_run, test_evals_are_the_same_on_one_device, test_resumes_exactly_after_sigkill = launcher.end_to_end(
  TINY, *RUN, kill_at=2
)


def test_tiny_run_reports_probes_colour_errors_and_draws_colorizations(tiny_run):
  workdir = tiny_run[0]
  results = json.load(open(os.path.join(workdir, "eval.json")))
  launcher.assert_suite_read_both_encoders(results, ("knn/top1", "linear/top1", "linear_10pct/top1"))
  assert results["colorization/ab_rmse"] > 0 and results["colorization/gray_ab_rmse"] > 0
  with open(os.path.join(workdir, "colorizations.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert not [name for name in os.listdir(workdir) if ".tmp" in name]
  metrics = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert all("ab_mse" in m and "gray_ab_mse" in m for m in metrics)
