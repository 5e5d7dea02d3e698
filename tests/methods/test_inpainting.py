"""Context Encoders: the holes, the masked L2, the generator/discriminator gradient split, learning on real images,
and a full run through the eval suite."""

import json
import os

import jax
import jax.numpy as jnp
import launcher
import numpy as np
import pytest

from ssljax.config import ConfigError
from ssljax.methods import inpainting

# ------------------------------------------------------------------------------------------------------ masks


def test_center_mask_is_the_central_square_of_half_the_side():
  masks = np.asarray(inpainting.draw_masks(jax.random.PRNGKey(0), 3, 28, kind="center"))
  expected = np.zeros((28, 28), np.float32)
  expected[7:21, 7:21] = 1.0
  assert masks.shape == (3, 28, 28)
  for m in masks:
    np.testing.assert_array_equal(m, expected)
  assert masks[0].sum() == 28 * 28 / 4


@pytest.mark.parametrize("kind", ["blocks", "regions"])
def test_random_masks_cover_about_a_quarter_and_differ_per_image_and_key(kind):
  draw = jax.jit(lambda key: inpainting.draw_masks(key, 64, 28, kind=kind))
  masks = np.asarray(draw(jax.random.PRNGKey(0)))
  assert masks.shape == (64, 28, 28) and set(np.unique(masks)) <= {0.0, 1.0}
  coverage = masks.mean(axis=(1, 2))
  assert 0.15 <= coverage.min() and coverage.max() <= 0.35, coverage
  assert abs(coverage.mean() - 0.25) < 0.03, coverage.mean()
  assert len({m.tobytes() for m in masks}) == 64  # every image gets its own hole
  np.testing.assert_array_equal(masks, np.asarray(draw(jax.random.PRNGKey(0))))  # a function of the key
  assert not np.array_equal(masks, np.asarray(draw(jax.random.PRNGKey(1))))
  # Shapes, not salt and pepper: most missing pixels have all four neighbours missing too.
  padded = np.pad(masks, ((0, 0), (1, 1), (1, 1)), mode="edge")
  neighbours = padded[:, :-2, 1:-1] * padded[:, 2:, 1:-1] * padded[:, 1:-1, :-2] * padded[:, 1:-1, 2:]
  assert (neighbours * masks).sum() / masks.sum() > 0.4  # 7x7 blocks: 25/49; independent pixels: 0.25**4


def test_image_i_gets_the_same_hole_whatever_else_is_in_the_batch():
  # Per-example keys are split from the batch key, as augment_batch does: the hole of image i is the same
  # whether the batch is computed at once or sharded across devices.
  key = jax.random.PRNGKey(3)
  whole = inpainting.draw_masks(key, 16, 28, kind="regions")
  keys = jax.random.split(key, 16)
  one = inpainting.region_mask(keys[5], 28, coverage=0.25, region_grid=4)
  np.testing.assert_array_equal(np.asarray(whole[5]), np.asarray(one))


def test_bad_mask_names_and_images_too_small_are_config_errors(config_of):
  config = config_of("configs/inpainting.py:tiny")
  config.inpainting.mask = "circle"
  with pytest.raises(ConfigError, match="inpainting.mask='circle'"):
    inpainting.check_config(config)
  for kind in inpainting.MASKS:
    config.inpainting.mask = kind
    config.data.image_size = 3
    with pytest.raises(ConfigError, match="image_size=3 is too small"):
      inpainting.METHOD.check_config(config)


# --------------------------------------------------------------------------------------------------- baseline


def test_context_mean_fill_fills_the_hole_with_the_mean_of_the_context():
  images = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 1)
  mask = np.zeros((2, 4, 4), np.float32)
  mask[:, 1:3, 1:3] = 1
  filled = np.asarray(inpainting.context_mean_fill(images, mask))
  for i in range(2):
    context = images[i, ..., 0][mask[i] == 0]
    np.testing.assert_allclose(filled[i, 1:3, 1:3, 0], context.mean(), rtol=1e-6)
    np.testing.assert_array_equal(filled[i][mask[i] == 0], images[i][mask[i] == 0])


def _tree_max_abs(tree) -> float:
  return max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(tree))


def test_generator_and_discriminator_each_get_gradient_only_from_their_own_losses(config_of):
  config = config_of("configs/inpainting.py:tiny")
  config.inpainting.adversarial_weight = 0.001
  # Random values in init's shapes: the same gradients' structure, without init's compile.
  batch = {"image": np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1), np.uint8)}
  shapes = jax.eval_shape(lambda key: inpainting.init(config, key, batch), jax.random.PRNGKey(0))
  values = np.random.default_rng(1)
  params, state = jax.tree.map(lambda s: values.normal(0.0, 0.3, s.shape).astype(np.float32), shapes)
  assert set(params) == {"encoder", "decoder", "discriminator"}
  rng = jax.random.PRNGKey(1)
  names = ("reconstruction", "generator_adversarial", "discriminator")

  def term_losses(p):
    terms = jnp.stack([inpainting.loss_terms(p, state, batch, rng, config)[0][n] for n in names])
    return terms, (terms, inpainting.loss_fn(p, state, batch, rng, config, 0)[0])

  # One compilation: a gradient per term (the rows of the Jacobian), the terms, and the loss the step minimizes.
  jacobian, (terms, total) = jax.jit(jax.jacrev(term_losses, has_aux=True))(params)
  reconstruction, adversarial, discriminator = (jax.tree.map(lambda g, i=i: g[i], jacobian) for i in range(3))
  assert _tree_max_abs(adversarial["discriminator"]) == 0.0  # G's adversarial term leaves D alone ...
  assert _tree_max_abs(adversarial["decoder"]) > 0.0 and _tree_max_abs(adversarial["encoder"]) > 0.0  # ... moves G
  assert _tree_max_abs(discriminator["encoder"]) == 0.0 and _tree_max_abs(discriminator["decoder"]) == 0.0
  assert _tree_max_abs(discriminator["discriminator"]) > 0.0
  assert _tree_max_abs(reconstruction["discriminator"]) == 0.0
  # The one optimizer step minimizes the weighted sum, so G moves by its two terms and D by its own.
  w = config.inpainting.adversarial_weight
  np.testing.assert_allclose(total, (1 - w) * terms[0] + w * terms[1] + terms[2], rtol=1e-6)


def test_init_keeps_the_encoder_where_the_evals_read_it(config_of):
  config = config_of("configs/inpainting.py:tiny")
  batch = {"image": np.zeros((4, 28, 28, 1), np.uint8)}
  params, state = jax.eval_shape(lambda key: inpainting.init(config, key, batch), jax.random.PRNGKey(0))  # shapes
  assert set(params) == {"encoder", "decoder"}  # no discriminator without the adversarial term
  assert set(state["batch_stats"]) == {"encoder", "decoder"}
  features = jax.eval_shape(lambda p, s: inpainting.METHOD.embed(p, s, batch, config), params, state)
  assert features.shape == (4, 4 * config.model.encoder_kwargs.widths[-1])  # pooled_grid of the whole image


# --------------------------------------------------------------------------------------------------- learning


def test_the_step_learns_to_beat_filling_the_hole_with_the_context_mean(train_steps):
  # 40 steps of 64 on 2048 images: most batches are new to the model when it is measured.
  history, _ = train_steps("configs/inpainting.py:tiny", 40, examples=2048, batch_size=64)
  recon = np.mean([h["recon_mse"] for h in history[-5:]])
  baseline = np.mean([h["context_mean_mse"] for h in history[-5:]])
  assert recon < 0.8 * baseline, (recon, baseline)
  assert recon < 0.5 * history[0]["recon_mse"]


TINY = "configs/inpainting.py:tiny"
# Fine-tuning through the suite is exercised by the rotation run; here it would only add compile time.
RUN = ("evals.finetune=False",)

tiny_run, test_evals_are_the_same_on_one_device, test_resumes_exactly_after_sigkill = launcher.end_to_end(
  TINY, *RUN, kill_at=2
)


def test_tiny_run_reports_probes_and_draws_inpaintings(tiny_run):
  workdir = tiny_run[0]
  results = json.load(open(os.path.join(workdir, "eval.json")))
  assert not [name for name in results if "finetune" in name]
  launcher.assert_suite_read_both_encoders(results, ("knn/top1", "linear/top1"))
  assert np.isfinite(results["inpainting/recon_mse"]) and results["inpainting/context_mean_mse"] > 0
  with open(os.path.join(workdir, "inpaintings.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert not [name for name in os.listdir(workdir) if ".tmp" in name]
  metrics = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert all("recon_mse" in m and "context_mean_mse" in m for m in metrics)
