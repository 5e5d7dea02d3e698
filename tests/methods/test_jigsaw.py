"""Jigsaw: the maximal-Hamming permutation set, the puzzles, learning on real images, bad geometry."""

import json
import os

import jax
import jax.numpy as jnp
import launcher
import numpy as np
import pytest

from ssljax.config import ConfigError
from ssljax.methods import jigsaw


def test_permutation_set_is_distinct_far_apart_and_reproducible(config_of):
  perms = jigsaw.permutation_set(100, 0)
  assert perms.shape == (100, 9)
  assert all(sorted(p) == list(range(9)) for p in perms.tolist())
  distances = (perms[:, None, :] != perms[None, :, :]).sum(-1)
  np.fill_diagonal(distances, 9)
  # A random set of 100 has pairs 2 swaps apart (distance 2-4); the greedy maximal set keeps every pair far.
  assert distances.min() >= 6
  np.testing.assert_array_equal(jigsaw.permutation_set(100, 0), perms)
  assert not np.array_equal(jigsaw.permutation_set(100, 1), perms)


def test_shown_tiles_follow_the_drawn_permutation(config_of):
  config = config_of("configs/jigsaw.py:tiny")
  config.augment.crop_scale = (1.0, 1.0)  # whole image: cell identities survive the crop
  size = config.jigsaw.image_size
  cell = size // 3
  # Pixel value = its cell's index, so a tile's value says which cell it came from.
  rows, cols = np.meshgrid(np.arange(size) // cell, np.arange(size) // cell, indexing="ij")
  image = (rows * 3 + cols).astype(np.float32)[None, :, :, None] / 8.0
  tiles, labels = jigsaw.puzzles(jnp.asarray(np.repeat(image, 4, 0)), jax.random.PRNGKey(3), config)
  tiles = np.asarray(tiles) * 0.25 + 0.5  # undo normalize
  perms = jigsaw.permutation_set(config.jigsaw.num_permutations, config.jigsaw.permutation_seed)
  for n in range(4):
    shown = np.round(tiles[n].reshape(9, -1).mean(1) * 8).astype(int)
    flipped = np.array([3 * (c // 3) + 2 - c % 3 for c in range(9)])  # a random flip mirrors the columns
    assert (shown == perms[labels[n]]).all() or (shown == flipped[perms[labels[n]]]).all()
    assert np.allclose(tiles[n].reshape(9, -1).std(1), 0, atol=1e-5)  # each tile inside one cell


def test_the_step_learns_to_solve_puzzles(train_steps):
  history, _ = train_steps("configs/jigsaw.py:tiny", 40, batch_size=64, **{"optim.learning_rate": 1e-2})
  assert np.mean([h["jigsaw_accuracy"] for h in history[-5:]]) > 0.4  # chance: 0.1 (10 permutations)


def test_bad_geometry_is_one_line(tmp_path, config_of):
  config = config_of("configs/jigsaw.py:tiny")
  config.jigsaw.image_size = 25
  with pytest.raises(ConfigError, match="jigsaw.image_size=25 is not divisible"):
    jigsaw.check_config(config)
  rc, out, err = launcher.run_main("configs/jigsaw.py:tiny", tmp_path / "w", "jigsaw.tile_size=9")
  assert rc == 2 and err.strip() == "error: jigsaw.tile_size=9 must be in [1, 8] (the cell of a 24-pixel puzzle)"
  assert not os.path.exists(tmp_path / "w")  # refused before anything is written


# ----------------------------------------------------------------------------------------
# End to end on the tiny preset.

TINY = "configs/jigsaw.py:tiny"
RUN = ("evals.finetune=False",)

tiny_run, test_evals_are_the_same_on_one_device, test_resumes_exactly_after_sigkill = launcher.end_to_end(
  TINY, *RUN, kill_at=2
)


def test_tiny_run_reports_probes_beside_random_init(tiny_run):
  workdir, out = tiny_run
  results = launcher.read_json(os.path.join(workdir, "eval.json"))
  launcher.assert_suite_read_both_encoders(results, ("knn/top1", "linear/top1", "linear_10pct/top1"))
  metrics = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6] and all(0 <= m["jigsaw_accuracy"] <= 1 for m in metrics)
