"""What every image method shares: the encoder named by the config, pixel scaling, the evaluation view, the
crop-and-flip training views (and the jittered tile grid of jigsaw and relative position), model init, the
training split, a sample of held-out images for a method's own evals and pictures, and the evaluation suite
(kNN, linear probe, fine-tuning at label fractions).

A vision method keeps its encoder's parameters under `params['encoder']` (and its BatchNorm statistics under
`state['batch_stats']['encoder']`), so the evals can lift the encoder out of any method's model and fine-tune
it with a new head. `image_method(...)` makes its `Method` with these shared pieces as defaults.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import augment, storage
from ssljax.config import ConfigError
from ssljax.data import images as image_data
from ssljax.methods.base import ImageHooks, Method
from ssljax.models import ENCODERS, EncoderWithHead, ProjectionHead, get_encoder


def check_image_config(config, *, model_encoder: bool = True) -> None:
  """What every image method's config must hold (`model.encoder` too, when the method uses it); a method's own
  `check_config` adds to it."""
  m = config.model
  if model_encoder and m.encoder not in ENCODERS:
    raise ConfigError(f"model.encoder='{m.encoder}' is not one of {', '.join(sorted(ENCODERS))}")
  if config.data.image_size < 1:
    raise ConfigError(f"data.image_size={config.data.image_size} must be a positive number of pixels")
  if config.evals.batch_size % jax.device_count():  # the suite embeds on the training mesh: all devices
    raise ConfigError(
      f"evals.batch_size={config.evals.batch_size} is not divisible by the {jax.device_count()} devices"
    )


def build_encoder(config):
  m = config.model
  kwargs = m.encoder_kwargs.to_dict() if hasattr(m.encoder_kwargs, "to_dict") else dict(m.encoder_kwargs)
  return get_encoder(m.encoder, dtype=jnp.dtype(m.dtype), **kwargs)


def projection_model(config) -> EncoderWithHead:
  """The encoder with the projection MLP of `model.proj_hidden_dim`, `proj_out_dim`, `proj_layers` and `proj_bn`
  (SimCLR, MoCo)."""
  m = config.model
  head = ProjectionHead(
    hidden_dim=m.proj_hidden_dim,
    out_dim=m.proj_out_dim,
    num_layers=m.proj_layers,
    use_bn=m.proj_bn,
    dtype=jnp.dtype(m.dtype),
  )
  return EncoderWithHead(encoder=build_encoder(config), head=head)


def normalize(images: jax.Array) -> jax.Array:
  """[0, 1] floats -> zero-centred inputs; BatchNorm after the stem takes care of the rest of the scale."""
  return (images - 0.5) / 0.25


def denormalize(x):
  """The inverse of `normalize`, for pictures (NumPy or JAX arrays)."""
  return x * 0.25 + 0.5


def to_float(images: jax.Array) -> jax.Array:
  return images.astype(jnp.float32) / 255.0 if images.dtype == jnp.uint8 else images.astype(jnp.float32)


def eval_pixels(images: jax.Array, config) -> jax.Array:
  """The whole image, resized to the training size, in [0, 1]: the eval view before `normalize`."""
  size = (config.data.image_size, config.data.image_size)
  images = to_float(images)
  if images.shape[1:3] != size:
    images = jax.vmap(lambda im: augment.center_crop_resize(im, size=size))(images)
  return images


def eval_view(images: jax.Array, config) -> jax.Array:
  """The deterministic view the evals embed: the whole image, resized to the training size, normalized."""
  return normalize(eval_pixels(images, config))


def crop_flip(images: jax.Array, rng: jax.Array, config, scale, *, flip: bool = True) -> jax.Array:
  """A random resized crop (area fraction in `scale`) at the training size and, with `flip`, a random flip, in
  [0, 1]."""
  size = (config.data.image_size, config.data.image_size)

  def one(image, key):
    k_crop, k_flip = jax.random.split(key)
    image = augment.random_resized_crop(image, k_crop, size=size, scale=tuple(scale))
    return augment.horizontal_flip(image, k_flip) if flip else image

  return augment.augment_batch(images, rng, one)


def train_view(images: jax.Array, rng: jax.Array, config) -> jax.Array:
  """The light crop (`augment.crop_scale`) and flip most pretext tasks train on, normalized."""
  return normalize(crop_flip(images, rng, config, config.augment.crop_scale))


def two_views(images: jax.Array, rng: jax.Array, config) -> tuple[jax.Array, jax.Array]:
  """Two independent strong views of each image, normalized: SimCLR's augmentation, which is MoCo v2's too (random
  resized crop, flip, colour jitter, grayscale, blur, solarize, with the probabilities of `config.augment`)."""
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


# Every image method's fine-tuning crop (colorization's Lab view too), so fine-tuned figures compare.
FINETUNE_CROP_SCALE = (0.5, 1.0)


def finetune_view(images: jax.Array, rng: jax.Array, config) -> jax.Array:
  """The fine-tuning view: a random crop of at least half the image, resized, and a random flip."""
  return normalize(crop_flip(images, rng, config, FINETUNE_CROP_SCALE))


def check_tiles(section: str, image_size: int, tile_size: int, *, grid: int, what: str) -> None:
  """ConfigError naming `section`'s key when `image_size` pixels cannot be cut into a grid x grid of tiles of
  side `tile_size` (`what` names the whole in the message: 'puzzle', 'grid')."""
  if image_size % grid:
    raise ConfigError(f"{section}.image_size={image_size} is not divisible by the {grid}x{grid} tile grid")
  if not 0 < tile_size <= image_size // grid:
    raise ConfigError(
      f"{section}.tile_size={tile_size} must be in [1, {image_size // grid}] (the cell of a {image_size}-pixel {what})"
    )


def crop_flip_tiles(image: jax.Array, keys, config, *, image_size: int, tile_size: int, grid: int) -> jax.Array:
  """One image in [0, 1] -> its grid*grid jittered tiles (grid*grid, t, t, C) in row-major grid order: a random
  resized crop (`augment.crop_scale`) to `image_size`, a random flip, then `augment.grid_tiles`. `keys` are the
  (crop, flip, tiles) keys, split by the caller with whatever else it draws per image."""
  k_crop, k_flip, k_tiles = keys
  size = (image_size, image_size)
  image = augment.random_resized_crop(image, k_crop, size=size, scale=tuple(config.augment.crop_scale))
  return augment.grid_tiles(augment.horizontal_flip(image, k_flip), k_tiles, grid=grid, tile=tile_size)


def init_model(model, rng: jax.Array, x: jax.Array) -> tuple[dict, dict]:
  """`model.init` in eval mode on `x`: (params, method state holding the BatchNorm statistics)."""
  variables = model.init(rng, x, train=False)
  return variables["params"], {"batch_stats": variables.get("batch_stats", {})}


def load_train_data(config, *, workdir: str | None = None) -> image_data.ImageSplit | image_data.TfdsTrainData:
  """In memory for IDX files and the scikit-image photos; streamed per process for tfds (imagenet2012 does not
  fit in a host's memory, and each process reads only its own shards). The splits the evals will read are
  opened here too, before the first step."""
  del workdir
  train = image_data.load_train_data(config.data)
  image_data.check_split(config.data, config.data.eval_split)
  d = config.get("evals", {}).get("data")
  if d is not None and d.get("name"):
    image_data.check_split(d, d.train_split)
    image_data.check_split(d, d.eval_split)
  return train


def held_out_images(config, num: int, *, shuffled: bool = False) -> np.ndarray:
  """Up to `num` uint8 images of the run's own `data.eval_split` (within `data.max_eval_examples`), for a
  method's evals and pictures beyond the suite: the first ones, or with `shuffled` a sample drawn with
  `config.seed`, the same in every run of the config."""
  split = image_data.load_split(config.data, config.data.eval_split, config.data.max_eval_examples)
  num = min(num, len(split.images))
  if shuffled:
    return split.images[np.random.default_rng(config.seed).permutation(len(split.images))[:num]]
  return split.images[:num]


def encoder_features(
  params, state, images, config, *, readout: str | None = None, encoder=None, view=eval_view
) -> jax.Array:
  """The named feature (`model.readout` by default) of the encoder inside any vision method's params, on `view`
  of `images`; `encoder` is the module, when the method builds its own (MAE's ViT, split-brain)."""
  encoder = encoder or build_encoder(config)
  _, aux = encoder.apply(encoder_variables(params, state), view(images, config), train=False)
  return aux[readout or config.model.readout].astype(jnp.float32)


def encoder_variables(params, state) -> dict:
  """The variables of the encoder inside a vision method's params and state."""
  variables = {"params": params["encoder"]}
  if "encoder" in state.get("batch_stats", {}):
    variables["batch_stats"] = state["batch_stats"]["encoder"]
  return variables


def batch_from_images(config, workdir: str, images) -> dict:
  """uint8 images of any size ((N, H, W[, C]) or a list of (H, W[, C])) -> {'image': ...} at the run's size and
  channels (`workdir/inputs.json`): gray <-> RGB as needed, an alpha channel dropped, each image centre-cropped
  to a square and resized as the eval view does."""
  channels = storage.read_json(storage.path(workdir) / "inputs.json")["image"]["shape"][-1]
  size = config.data.image_size
  out = []
  for i, image in enumerate(images):
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
      raise ValueError(f"image {i}: expected uint8 (H, W) or (H, W, C), got {image.dtype} {image.shape}")
    image = image[..., None] if image.ndim == 2 else image[..., :3]  # RGBA -> RGB
    if channels == 1 and image.shape[-1] == 3:  # ITU-R 601 luma, as PIL's convert('L')
      image = np.round(image @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[..., None]
    elif channels == 3 and image.shape[-1] == 1:
      image = np.repeat(image, 3, axis=-1)
    out.append(image)
  # One resize per distinct shape, over all the images of that shape at once.
  resize = jax.jit(jax.vmap(lambda im: augment.center_crop_resize(im.astype(jnp.float32) / 255.0, size=(size, size))))
  by_shape = {}
  for i, image in enumerate(out):
    by_shape.setdefault(image.shape, []).append(i)
  for shape, rows in by_shape.items():
    if shape[:2] != (size, size):
      resized = np.asarray(resize(np.stack([out[i] for i in rows])))
      for i, image in zip(rows, np.round(np.clip(resized, 0.0, 1.0) * 255.0).astype(np.uint8)):
        out[i] = image
  return {"image": np.stack(out)}


def evaluate(context) -> dict:
  """kNN and linear probes (and fine-tuning, when the config asks) against the configured baselines."""
  from ssljax.evals import suite  # lazy: matplotlib and sklearn

  return suite.evaluate(context)


# What an image method shares unless it gives its own (MAE builds a ViT, inpainting and colorization add evals).
SHARED = {
  "load_train_data": load_train_data,
  "evaluate": evaluate,
  "build_encoder": build_encoder,
  "eval_view": eval_view,
  "finetune_view": finetune_view,
}


def image_method(name: str, *, init, loss_fn, check_config=None, embed=None, **own) -> Method:
  """An image method's `Method`: `SHARED`'s pieces unless `own` replaces them; `check_config` runs after the
  checks every image method gets (and the `model.encoder` check, when the shared encoder is used). `embed`
  defaults to the encoder's `model.readout` feature of the eval view."""
  unknown = set(own) - set(SHARED)
  if unknown:
    raise TypeError(f"image_method({name!r}): unknown parts {sorted(unknown)} (known: {sorted(SHARED)})")
  parts = {**SHARED, **own}
  if embed is None:
    embed = lambda params, state, batch, config: encoder_features(
      params, state, batch["image"], config, encoder=parts["build_encoder"](config), view=parts["eval_view"]
    )

  def check(config) -> None:
    check_image_config(config, model_encoder=parts["build_encoder"] is build_encoder)
    if check_config is not None:
      check_config(config)

  return Method(
    name=name,
    load_train_data=parts["load_train_data"],
    init=init,
    loss_fn=loss_fn,
    embed=embed,
    evaluate=parts["evaluate"],
    check_config=check,
    batch_from_inputs=batch_from_images,
    encoder=lambda config, params, state: (parts["build_encoder"](config), encoder_variables(params, state)),
    image=ImageHooks(
      build_encoder=parts["build_encoder"], eval_view=parts["eval_view"], finetune_view=parts["finetune_view"]
    ),
  )
