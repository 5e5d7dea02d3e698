"""Upside-down prediction: is the image upright or turned 180 degrees? A method outside ssljax, in one file."""

import flax.linen as nn
import jax.numpy as jnp
import optax

from ssljax.config import ConfigError
from ssljax.methods import vision


class Model(nn.Module):
  encoder: nn.Module  # kept at params['encoder']: the vision suite probes and fine-tunes it

  @nn.compact
  def __call__(self, x, *, train: bool):
    features, aux = self.encoder(x, train=train)
    return nn.Dense(2, name="head")(features.astype(jnp.float32)), aux


def init(config, rng, example_batch, *, data):
  variables = Model(vision.build_encoder(config)).init(
    rng, vision.eval_view(example_batch["image"], config), train=False
  )
  return variables["params"], {"batch_stats": variables["batch_stats"]}


def loss_fn(params, state, batch, rng, config, step):
  x = vision.train_view(batch["image"], rng, config)
  x, labels = jnp.concatenate([x, x[:, ::-1, ::-1]]), jnp.repeat(jnp.arange(2), x.shape[0])
  (logits, _), new_state = Model(vision.build_encoder(config)).apply(
    {"params": params, **state}, x, train=True, mutable=["batch_stats"]
  )
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return loss, ({"accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}, new_state)


def check_config(config):
  if config.data.image_size < 8:
    raise ConfigError(f"data.image_size={config.data.image_size}: upside_down needs at least 8 pixels")


METHOD = vision.image_method("upside_down", init=init, loss_fn=loss_fn, check_config=check_config)
