"""Rotation prediction (Gidaris, Singh and Komodakis, 2018, arXiv:1803.07728): every image of the batch is shown
at 0, 90, 180 and 270 degrees and the network says which. Recognising which way is up needs the objects' parts
and their layout, so the encoder learns them; the representation is the encoder's output (the layer under the
4-way head).

All four rotations of each image go through the network in one batch (the paper found that better than one
random rotation per image): BatchNorm statistics and the gradient see every orientation of every image.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ssljax.config import ConfigError
from ssljax.methods.vision import build_encoder, eval_view, image_method, init_model, train_view

NUM_ROTATIONS = 4


class RotationModel(nn.Module):
  encoder: nn.Module

  @nn.compact
  def __call__(self, x, *, train: bool):
    features, aux = self.encoder(x, train=train)
    return nn.Dense(NUM_ROTATIONS, name="head")(features.astype(jnp.float32)), aux


def build_model(config) -> RotationModel:
  return RotationModel(build_encoder(config))


def rotate_all(images: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(N, S, S, C) -> (4N, S, S, C) and labels (4N,): the batch at 0, 90, 180, 270 degrees counter-clockwise,
  rotation-major (rows k*N .. (k+1)*N - 1 are rotated by k quarter turns)."""
  if images.shape[1] != images.shape[2]:
    raise ConfigError(f"rotation needs square images, got {images.shape[1]}x{images.shape[2]}")
  rotated = jnp.concatenate([jnp.rot90(images, k, axes=(1, 2)) for k in range(NUM_ROTATIONS)])
  labels = jnp.repeat(jnp.arange(NUM_ROTATIONS, dtype=jnp.int32), images.shape[0])
  return rotated, labels


def init(config, rng, example_batch, *, data=None):
  del data
  return init_model(build_model(config), rng, eval_view(example_batch["image"], config))


def loss_fn(params, state, batch, rng, config, step):
  del step
  x, labels = rotate_all(train_view(batch["image"], rng, config))
  (logits, _), updates = build_model(config).apply({"params": params, **state}, x, train=True, mutable=["batch_stats"])
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  metrics = {"rotation_accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}
  return loss, (metrics, {"batch_stats": updates["batch_stats"]})


METHOD = image_method("rotation", init=init, loss_fn=loss_fn)
