"""SimCLR (Chen et al., 2020, arXiv:2002.05709): two augmented views of each image, an encoder and a
projection head, and NT-Xent with the rest of the global batch as negatives.

Both views go through the network as one batch, so BatchNorm statistics cover all 2N views of the global
batch, as SimCLR's global BN does.
"""

from __future__ import annotations

import jax.numpy as jnp

from ssljax import losses
from ssljax.methods.vision import eval_view, image_method, init_model, projection_model
from ssljax.methods.vision import two_views as train_views


def init(config, rng, example_batch, *, data=None):
  del data  # the example batch's shapes are all SimCLR needs
  return init_model(projection_model(config), rng, eval_view(example_batch["image"], config))


def loss_fn(params, state, batch, rng, config, step):
  del step
  v1, v2 = train_views(batch["image"], rng, config)
  (z, _), updates = projection_model(config).apply(
    {"params": params, **state}, jnp.concatenate([v1, v2]), train=True, mutable=["batch_stats"]
  )
  z1, z2 = jnp.split(z.astype(jnp.float32), 2)
  loss = losses.nt_xent(z1, z2, temperature=config.simclr.temperature)
  metrics = {"accuracy": losses.contrastive_accuracy(z1, z2)}
  return loss, (metrics, {"batch_stats": updates["batch_stats"]})


METHOD = image_method("simclr", init=init, loss_fn=loss_fn)
