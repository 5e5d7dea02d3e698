"""SimCLR (Chen et al., 2020, arXiv:2002.05709): two augmented views of each image, an encoder and a
projection head, and NT-Xent with the rest of the global batch as negatives.

Both views go through the network as one batch, so BatchNorm statistics cover all 2N views of the global
batch, as SimCLR's global BN does.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax import augment, losses
from ssljax.methods.vision import build_encoder, eval_view, image_method, init_model, normalize
from ssljax.models.heads import ProjectionHead


class SimCLRModel(nn.Module):
  encoder: nn.Module
  head: nn.Module

  def __call__(self, x, *, train: bool):
    features, aux = self.encoder(x, train=train)
    z, _ = self.head(features, train=train)
    return z, aux


def build_model(config) -> SimCLRModel:
  head = ProjectionHead(
    hidden_dim=config.model.proj_hidden_dim,
    out_dim=config.model.proj_out_dim,
    num_layers=config.model.proj_layers,
    dtype=jnp.dtype(config.model.dtype),
  )
  return SimCLRModel(encoder=build_encoder(config), head=head)


def train_views(images: jax.Array, rng: jax.Array, config) -> tuple[jax.Array, jax.Array]:
  a = config.augment
  kwargs = dict(
    size=(config.data.image_size, config.data.image_size),
    crop_scale=tuple(a.crop_scale),
    flip=a.flip,
    jitter_strength=a.jitter_strength,
    jitter_p=a.jitter_p,
    grayscale_p=a.grayscale_p,
    blur_p=a.blur_p,
    solarize_p=a.solarize_p,
  )
  k1, k2 = jax.random.split(rng)
  v1 = augment.augment_batch(images, k1, augment.simclr_augment, **kwargs)
  v2 = augment.augment_batch(images, k2, augment.simclr_augment, **kwargs)
  return normalize(v1), normalize(v2)


def init(config, rng, example_batch, *, data=None):
  del data  # the example batch's shapes are all SimCLR needs
  return init_model(build_model(config), rng, eval_view(example_batch["image"], config))


def loss_fn(params, state, batch, rng, config, step):
  del step
  v1, v2 = train_views(batch["image"], rng, config)
  (z, _), updates = build_model(config).apply(
    {"params": params, **state}, jnp.concatenate([v1, v2]), train=True, mutable=["batch_stats"]
  )
  z1, z2 = jnp.split(z.astype(jnp.float32), 2)
  loss = losses.nt_xent(z1, z2, temperature=config.simclr.temperature)
  metrics = {"accuracy": losses.contrastive_accuracy(z1, z2)}
  return loss, (metrics, {"batch_stats": updates["batch_stats"]})


METHOD = image_method("simclr", init=init, loss_fn=loss_fn)
