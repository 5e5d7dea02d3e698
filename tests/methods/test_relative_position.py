"""Relative patch position: the tile grid and its labels, learning on real images, bad geometry."""

import json
import os

import jax
import jax.numpy as jnp
import launcher
import numpy as np
import pytest

from ssljax.config import ConfigError
from ssljax.methods import relative_position as relpos


def test_tiles_come_from_their_cells_with_gaps_and_jitter(config_of):
  config = config_of("configs/relative_position.py:cpu")
  config.augment.crop_scale = (1.0, 1.0)
  size, tile = config.relative_position.image_size, config.relative_position.tile_size
  cell = size // 3
  rows, cols = np.meshgrid(np.arange(size) // cell, np.arange(size) // cell, indexing="ij")
  image = (rows * 3 + cols).astype(np.float32)[None, :, :, None] / 8.0
  tiles = np.asarray(relpos.tile_grid(jnp.asarray(np.repeat(image, 8, 0)), jax.random.PRNGKey(0), config))
  assert tiles.shape == (8, 9, tile, tile, 1)
  values = np.round((tiles * 0.25 + 0.5).reshape(8, 9, -1) * 8)
  assert (values.std(-1) == 0).all()  # no tile crosses a cell boundary
  # Each tile comes from its own cell, or, when the image was flipped, from the cell mirrored left to right.
  upright, mirrored = np.arange(9), np.arange(9).reshape(3, 3)[:, ::-1].ravel()
  assert all((v == upright).all() or (v == mirrored).all() for v in values[..., 0]), values[..., 0]
  assert (values[:, relpos.CENTRE, 0] == relpos.CENTRE).all()
  # Jitter: the same image gives different tiles under another key.
  gradient = np.linspace(0, 1, size * size, dtype=np.float32).reshape(1, size, size, 1)
  a = relpos.tile_grid(jnp.asarray(gradient), jax.random.PRNGKey(0), config)
  b = relpos.tile_grid(jnp.asarray(gradient), jax.random.PRNGKey(1), config)
  assert not np.allclose(np.asarray(a), np.asarray(b))


def test_the_step_learns_where_the_neighbour_sits(train_steps):
  history, _ = train_steps("configs/relative_position.py:tiny", 40, batch_size=64, **{"optim.learning_rate": 1e-2})
  assert np.mean([h["position_accuracy"] for h in history[-5:]]) > 0.3  # chance: 0.125


def test_a_grid_that_does_not_divide_is_refused(config_of):
  config = config_of("configs/relative_position.py:tiny")
  config.relative_position.image_size = 32
  with pytest.raises(ConfigError, match="relative_position.image_size=32 is not divisible by the 3x3"):
    relpos.check_config(config)


# ----------------------------------------------------------------------------------------
# End to end on the tiny preset.

TINY = "configs/relative_position.py:tiny"
RUN = ("evals.finetune=False",)

tiny_run, test_evals_are_the_same_on_one_device, test_resumes_exactly_after_sigkill = launcher.end_to_end(
  TINY, *RUN, kill_at=2
)


def test_tiny_run_reports_probes_beside_random_init(tiny_run):
  workdir, out = tiny_run
  results = launcher.read_json(os.path.join(workdir, "eval.json"))
  launcher.assert_suite_read_both_encoders(results, ("knn/top1", "linear/top1", "linear_10pct/top1"))
  metrics = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
  assert all(0 <= m["position_accuracy"] <= 1 for m in metrics)
