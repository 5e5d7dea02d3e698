"""Jigsaw puzzles (Noroozi and Favaro, 2016, arXiv:1603.09246): nine tiles of a 3x3 grid, shuffled by one of
a fixed set of permutations; the network sees each tile alone (a shared encoder), concatenates the nine
features and says which permutation was used. Putting the pieces back needs to know what the parts of an
object look like and where they go.

The permutation set is chosen greedily for maximal minimum Hamming distance (the paper's Algorithm 1), so
every two puzzles differ in many positions; it is a deterministic function of (size, seed), rebuilt, never
stored. Tiles, jitter and the choice of permutation are drawn on device, keyed by the step.
"""

from __future__ import annotations

import functools
import itertools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssljax.config import ConfigError
from ssljax.methods import vision
from ssljax.methods.vision import build_encoder, image_method, init_model, normalize

GRID = 3


@functools.lru_cache(maxsize=4)
def permutation_set(size: int, seed: int = 0, num_tiles: int = GRID * GRID) -> np.ndarray:
  """`size` permutations of range(num_tiles) with (greedily) maximal minimum pairwise Hamming distance.

  Starts from a random permutation and repeatedly adds the one farthest (in minimum Hamming distance) from
  those chosen, ties broken at random: Noroozi and Favaro's "maximal" set.
  """
  every = np.array(list(itertools.permutations(range(num_tiles))), np.int8)
  if not 2 <= size <= len(every):
    raise ConfigError(f"jigsaw.num_permutations={size} must be in [2, {len(every)}]")
  rng = np.random.default_rng(seed)
  chosen = [int(rng.integers(len(every)))]
  nearest = np.full(len(every), num_tiles + 1, np.int16)
  for _ in range(size - 1):
    nearest = np.minimum(nearest, (every != every[chosen[-1]]).sum(1))
    best = np.flatnonzero(nearest == nearest.max())
    chosen.append(int(rng.choice(best)))
  return every[chosen].astype(np.int32)


class JigsawModel(nn.Module):
  """Shared encoder on each tile, the nine features concatenated in shown order, an MLP to the permutation."""

  encoder: nn.Module
  num_permutations: int
  hidden: int = 512

  @nn.compact
  def __call__(self, tiles, *, train: bool):
    n, t = tiles.shape[:2]
    features, aux = self.encoder(tiles.reshape(n * t, *tiles.shape[2:]), train=train)
    x = features.astype(jnp.float32).reshape(n, -1)
    x = nn.relu(nn.Dense(self.hidden, name="fc")(x))
    return nn.Dense(self.num_permutations, name="head")(x), aux


def build_model(config) -> JigsawModel:
  return JigsawModel(build_encoder(config), config.jigsaw.num_permutations, config.jigsaw.hidden)


def check_config(config) -> None:
  j = config.jigsaw
  if not 2 <= j.num_permutations <= math.factorial(GRID * GRID):
    raise ConfigError(f"jigsaw.num_permutations={j.num_permutations} must be in [2, {math.factorial(GRID * GRID)}]")
  vision.check_tiles("jigsaw", j.image_size, j.tile_size, grid=GRID, what="puzzle")


def puzzles(images: jax.Array, rng: jax.Array, config) -> tuple[jax.Array, jax.Array]:
  """(N, H, W, C) images -> shuffled tiles (N, 9, t, t, C), normalized, and the permutation index of each.

  Each image is cropped and flipped at random, resized to `jigsaw.image_size`, cut into jittered tiles, and
  its tiles are shown in the order of a permutation drawn from the set: shown position k holds tile perm[k].
  """
  j = config.jigsaw
  perms = jnp.asarray(permutation_set(j.num_permutations, j.permutation_seed))

  def one(image, key):
    *view_keys, k_perm = jax.random.split(key, 4)
    tiles = vision.crop_flip_tiles(image, view_keys, config, image_size=j.image_size, tile_size=j.tile_size, grid=GRID)
    label = jax.random.randint(k_perm, (), 0, len(perms))
    return tiles[perms[label]], label

  tiles, labels = jax.vmap(one)(vision.to_float(images), jax.random.split(rng, images.shape[0]))
  return normalize(tiles), labels


def init(config, rng, example_batch, *, data=None):
  del data
  tiles, _ = puzzles(example_batch["image"], jax.random.PRNGKey(0), config)
  return init_model(build_model(config), rng, tiles)


def loss_fn(params, state, batch, rng, config, step):
  del step
  tiles, labels = puzzles(batch["image"], rng, config)
  (logits, _), updates = build_model(config).apply(
    {"params": params, **state}, tiles, train=True, mutable=["batch_stats"]
  )
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  metrics = {"jigsaw_accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}
  return loss, (metrics, {"batch_stats": updates["batch_stats"]})


METHOD = image_method("jigsaw", init=init, loss_fn=loss_fn, check_config=check_config)
