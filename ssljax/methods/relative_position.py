"""Relative patch position, or context prediction (Doersch, Gupta and Efros, 2015, arXiv:1505.05192): given the
centre tile of a 3x3 grid and one of its eight neighbours, each through the same encoder (a siamese pair), say
where the neighbour sits. Knowing that an ear goes above an eye needs to know ears and eyes.

Gaps and random jitter between the tiles (`augment.grid_tiles`) leave no edge to continue. Every image gives
all eight pairs: the centre is encoded once and paired with each neighbour, eight examples for nine tile
encodings (the paper sampled one pair per image).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssljax.methods import vision
from ssljax.methods.vision import build_encoder, image_method, init_model, normalize

GRID = 3
CENTRE = 4  # row-major index of the middle cell
NEIGHBOURS = np.array([i for i in range(GRID * GRID) if i != CENTRE])  # label k: the neighbour in cell NEIGHBOURS[k]


class PairModel(nn.Module):
  """Shared encoder on every tile; an MLP on (centre, neighbour) feature pairs says which of 8 positions."""

  encoder: nn.Module
  hidden: int = 512

  @nn.compact
  def __call__(self, tiles, *, train: bool):
    n, t = tiles.shape[:2]
    features, aux = self.encoder(tiles.reshape(n * t, *tiles.shape[2:]), train=train)
    features = features.astype(jnp.float32).reshape(n, t, -1)
    centre = jnp.broadcast_to(features[:, CENTRE : CENTRE + 1], (n, len(NEIGHBOURS), features.shape[-1]))
    pairs = jnp.concatenate([centre, features[:, NEIGHBOURS]], axis=-1)
    x = nn.relu(nn.Dense(self.hidden, name="fc")(pairs))
    return nn.Dense(len(NEIGHBOURS), name="head")(x), aux  # (N, 8 pairs, 8 positions)


def build_model(config) -> PairModel:
  return PairModel(build_encoder(config), config.relative_position.hidden)


def check_config(config) -> None:
  r = config.relative_position
  vision.check_tiles("relative_position", r.image_size, r.tile_size, grid=GRID, what="grid")


def tile_grid(images: jax.Array, rng: jax.Array, config) -> jax.Array:
  """(N, H, W, C) images -> the nine jittered tiles of each (N, 9, t, t, C), normalized, in grid order."""
  r = config.relative_position
  one = lambda image, key: vision.crop_flip_tiles(
    image, jax.random.split(key, 3), config, image_size=r.image_size, tile_size=r.tile_size, grid=GRID
  )
  return normalize(jax.vmap(one)(vision.to_float(images), jax.random.split(rng, images.shape[0])))


def init(config, rng, example_batch, *, data=None):
  del data
  return init_model(build_model(config), rng, tile_grid(example_batch["image"], jax.random.PRNGKey(0), config))


def loss_fn(params, state, batch, rng, config, step):
  del step
  (logits, _), updates = build_model(config).apply(
    {"params": params, **state}, tile_grid(batch["image"], rng, config), train=True, mutable=["batch_stats"]
  )
  labels = jnp.broadcast_to(jnp.arange(len(NEIGHBOURS)), logits.shape[:2])
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  metrics = {"position_accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}
  return loss, (metrics, {"batch_stats": updates["batch_stats"]})


METHOD = image_method("relative_position", init=init, loss_fn=loss_fn, check_config=check_config)
