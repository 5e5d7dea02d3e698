"""What every image method shares: the encoder named by the config, pixel scaling, the evaluation view, the
training split, and the evaluation suite (kNN, linear probe, fine-tuning at label fractions).

A vision method keeps its encoder's parameters under `params['encoder']` (and its BatchNorm statistics under
`state['batch_stats']['encoder']`), so the evals can lift the encoder out of any method's model and fine-tune
it with a new head.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ssljax import augment
from ssljax.config import ConfigError
from ssljax.data import images as image_data
from ssljax.models import ENCODERS, get_encoder


def build_encoder(config):
  m = config.model
  if m.encoder not in ENCODERS:
    raise ConfigError(f"model.encoder='{m.encoder}' is not one of {', '.join(sorted(ENCODERS))}")
  kwargs = m.encoder_kwargs.to_dict() if hasattr(m.encoder_kwargs, "to_dict") else dict(m.encoder_kwargs)
  return get_encoder(m.encoder, dtype=jnp.dtype(m.dtype), **kwargs)


def normalize(images: jax.Array) -> jax.Array:
  """[0, 1] floats -> zero-centred inputs; BatchNorm after the stem takes care of the rest of the scale."""
  return (images - 0.5) / 0.25


def to_float(images: jax.Array) -> jax.Array:
  return images.astype(jnp.float32) / 255.0 if images.dtype == jnp.uint8 else images.astype(jnp.float32)


def eval_view(images: jax.Array, config) -> jax.Array:
  """The deterministic view the evals embed: the whole image, resized to the training size, normalized."""
  size = (config.data.image_size, config.data.image_size)
  images = to_float(images)
  if images.shape[1:3] != size:
    images = jax.vmap(lambda im: augment.center_crop_resize(im, size=size))(images)
  return normalize(images)


def crop_flip(images: jax.Array, rng: jax.Array, config, scale) -> jax.Array:
  """A random resized crop (area fraction in `scale`) at the training size and a random flip, in [0, 1]."""
  size = (config.data.image_size, config.data.image_size)

  def one(image, key):
    k_crop, k_flip = jax.random.split(key)
    image = augment.random_resized_crop(image, k_crop, size=size, scale=tuple(scale))
    return augment.horizontal_flip(image, k_flip)

  return augment.augment_batch(images, rng, one)


def train_view(images: jax.Array, rng: jax.Array, config) -> jax.Array:
  """The light crop (`augment.crop_scale`) and flip most pretext tasks train on, normalized."""
  return normalize(crop_flip(images, rng, config, config.augment.crop_scale))


def finetune_view(images: jax.Array, rng: jax.Array, config) -> jax.Array:
  """The fine-tuning view: a random crop of at least half the image, resized, and a random flip."""
  return normalize(crop_flip(images, rng, config, (0.5, 1.0)))


def load_train_data(config, *, workdir: str | None = None) -> image_data.ImageSplit | image_data.TfdsTrainData:
  """In memory for IDX files and the scikit-image photos; streamed per process for tfds (imagenet2012 does not
  fit in a host's memory, and each process reads only its own shards)."""
  del workdir
  return image_data.load_train_data(config.data)


def encoder_features(params, state, images, config, *, readout: str | None = None, encoder=None) -> jax.Array:
  """The named feature (`model.readout` by default) of the encoder inside any vision method's params; `encoder`
  is the module, when the method builds its own (MAE's ViT)."""
  variables = {"params": params["encoder"]}
  if "encoder" in state.get("batch_stats", {}):
    variables["batch_stats"] = state["batch_stats"]["encoder"]
  encoder = encoder or build_encoder(config)
  _, aux = encoder.apply(variables, eval_view(images, config), train=False)
  return aux[readout or config.model.readout].astype(jnp.float32)


def evaluate(config, **kwargs) -> dict:
  """kNN and linear probes (and fine-tuning, when the config asks) against the configured baselines."""
  from ssljax.evals import suite  # lazy: matplotlib and sklearn

  return suite.evaluate(config, **kwargs)
