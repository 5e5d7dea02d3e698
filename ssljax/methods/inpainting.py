"""Context Encoders (Pathak, Krähenbühl, Donahue, Darrell and Efros, CVPR 2016, arXiv:1604.07379): an
encoder-decoder fills in a missing region of an image from its context. Filling a hole plausibly needs what the
object is and how its parts are laid out, so the encoder learns them; the representation is the encoder's.

The hole (`inpainting.mask`) is drawn on device inside the train step, one key per image of the global batch:
  center   the central square, `coverage` of the area (a quarter: half the side);
  blocks   random squares of side `block_size` x the image side, added until they cover about `coverage`;
  regions  the paper's random regions: a coarse uniform noise field, upsampled (bicubic) and thresholded at its
           `coverage` quantile, so smooth random shapes cover `coverage` of every image.
The hole is filled with 0 in normalized pixels (the mid grey) before the encoder; the decoder maps the encoder's
feature map back to the image, and the loss is the L2 error on the hole only. With
`inpainting.adversarial_weight` w > 0 a small discriminator judges the filled-in image, and one optimizer step
trains both sides (simultaneous gradient descent):

  loss = (1 - w) L_rec(G) + w L_adv(G; stop_gradient(D)) + L_D(D; stop_gradient(G's output))

so the generator's gradient comes only from its own terms and the discriminator's only from its classification
loss (the paper: w = 0.001, reconstruction 0.999).

The model (`ContextEncoder`: the config's encoder and a `ContextDecoder`) and the `Discriminator` are in
`ssljax.models.decoders`; the hole L2 and the GAN terms in `ssljax.losses` (`masked_l2`, `gan_generator`,
`gan_discriminator`). The model keeps the encoder under `params['encoder']` and its BatchNorm statistics under
`state['batch_stats']['encoder']`, so the evals fine-tune and probe that encoder on whole, unmasked images; the
discriminator's parameters are under `params['discriminator']`.
`evaluate` adds to the vision suite the hole MSE on test images against filling the hole with the mean of its
context (`inpainting/recon_mse`, `inpainting/context_mean_mse`) and `inpaintings.png` (test images, their masked
inputs and the inpainted result).

  python launch/run.py --config configs/inpainting.py:cpu --workdir workdirs/inpainting_cpu
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import losses
from ssljax.config import ConfigError
from ssljax.methods import vision
from ssljax.methods.vision import build_encoder, eval_view, train_view
from ssljax.models.decoders import ContextDecoder, ContextEncoder, Discriminator

MASKS = ("center", "blocks", "regions")
FILL_VALUE = 0.0  # normalized pixels: what the encoder sees in the hole


# ------------------------------------------------------------------------------------------------------ masks


def _check_mask(kind: str, image_size: int, coverage: float, block_size: float, region_grid: int) -> None:
  """ConfigError (a ValueError) naming the config key when a mask cannot be drawn on `image_size` images."""
  if kind not in MASKS:
    raise ConfigError(f"inpainting.mask='{kind}' is not one of {', '.join(MASKS)}")
  if not 0.0 < coverage <= 0.75:
    raise ConfigError(f"inpainting.coverage={coverage} must be in (0, 0.75]: the hole needs context around it")
  if kind == "center":
    side = round(image_size * math.sqrt(coverage))
    if side < 2 or side > image_size - 2:
      raise ConfigError(
        f"data.image_size={image_size} is too small for a center hole covering {coverage:g} of "
        f"the image (side {side} px; it needs at least 2 px and a 1-px context border)"
      )
  elif kind == "blocks":
    if not 0.0 < block_size <= 0.5:
      raise ConfigError(f"inpainting.block_size={block_size} must be in (0, 0.5] (a block's side / the image's)")
    side = round(image_size * block_size)
    if side < 2:
      raise ConfigError(
        f"data.image_size={image_size} is too small for blocks of inpainting.block_size="
        f"{block_size:g} x the side ({side} px; a block needs at least 2)"
      )
  else:
    if region_grid < 2:
      raise ConfigError(f"inpainting.region_grid={region_grid} must be at least 2")
    if image_size < 2 * region_grid:
      raise ConfigError(
        f"data.image_size={image_size} is too small for regions upsampled from a {region_grid}x"
        f"{region_grid} noise grid (inpainting.region_grid): it needs at least {2 * region_grid} px"
      )


def center_mask(image_size: int, *, coverage: float = 0.25) -> jax.Array:
  """(S, S) float32, 1 in the central square of side round(S * sqrt(coverage)) (half the side for 1/4)."""
  side = round(image_size * math.sqrt(coverage))
  start = (image_size - side) // 2
  inside = (jnp.arange(image_size) >= start) & (jnp.arange(image_size) < start + side)
  return (inside[:, None] & inside[None, :]).astype(jnp.float32)


def _num_candidate_blocks(coverage: float, block_side: int, image_size: int) -> int:
  # Enough squares that their union nearly always reaches `coverage` despite overlaps; a multiple of 4 so the
  # 2-per-block threefry draw is a multiple of 8 (XLA:CPU compiles those faster, see augment._draw_count).
  needed = coverage * image_size**2 / block_side**2
  return 4 * max(2, math.ceil(3 * needed / 4))


def block_mask(key: jax.Array, image_size: int, *, coverage: float = 0.25, block_size: float = 0.25) -> jax.Array:
  """(S, S) float32: the union of random squares of side round(S * block_size), fully inside the image, taken
  in drawn order up to the count whose union covers the fraction nearest `coverage`."""
  side = round(image_size * block_size)
  k = _num_candidate_blocks(coverage, side, image_size)
  corners = jax.random.randint(key, (k, 2), 0, image_size - side + 1)
  pos = jnp.arange(image_size)
  rows = (pos >= corners[:, :1]) & (pos < corners[:, :1] + side)  # (k, S)
  cols = (pos >= corners[:, 1:]) & (pos < corners[:, 1:] + side)
  unions = jax.lax.cummax((rows[:, :, None] & cols[:, None, :]).astype(jnp.float32), axis=0)  # union of 1..j
  count = jnp.argmin(jnp.abs(unions.mean(axis=(1, 2)) - coverage))
  return unions[count]


def region_mask(key: jax.Array, image_size: int, *, coverage: float = 0.25, region_grid: int = 4) -> jax.Array:
  """(S, S) float32: the paper's random region. Uniform noise on a (grid x grid) lattice, upsampled bicubically
  to S x S, is 1 where it falls under its own `coverage` quantile: smooth random shapes, round(coverage * S^2)
  pixels in every image."""
  noise = jax.random.uniform(key, (region_grid, region_grid))
  field = jax.image.resize(noise, (image_size, image_size), method="cubic").reshape(-1)
  count = max(1, round(coverage * image_size**2))
  threshold = jnp.sort(field)[count - 1]
  return (field <= threshold).astype(jnp.float32).reshape(image_size, image_size)


def draw_masks(
  key: jax.Array,
  num: int,
  image_size: int,
  *,
  kind: str = "regions",
  coverage: float = 0.25,
  block_size: float = 0.25,
  region_grid: int = 4,
) -> jax.Array:
  """`num` holes for `image_size` x `image_size` images: (num, S, S) float32, 1 = missing.

  Image i's mask depends only on (key, i): the keys are `jax.random.split(key, num)` over the global batch, as in
  `augment.augment_batch`, so a batch gets the same holes on one device or many.

  Args:
    key: one PRNG key for the batch.
    num: global batch size.
    image_size: side S of the square images.
    kind: 'center' | 'blocks' | 'regions' (see the module docstring).
    coverage: the fraction of the image to remove.
    block_size: for 'blocks', the side of one square as a fraction of S.
    region_grid: for 'regions', the side of the noise lattice (smaller: larger blobs).

  >>> masks = draw_masks(jax.random.PRNGKey(0), 8, 28, kind="regions")  # (8, 28, 28), 196 ones each
  """
  _check_mask(kind, image_size, coverage, block_size, region_grid)
  if kind == "center":
    return jnp.broadcast_to(center_mask(image_size, coverage=coverage), (num, image_size, image_size))
  keys = jax.random.split(key, num)
  if kind == "blocks":
    return jax.vmap(lambda k: block_mask(k, image_size, coverage=coverage, block_size=block_size))(keys)
  return jax.vmap(lambda k: region_mask(k, image_size, coverage=coverage, region_grid=region_grid))(keys)


def masks_for(config, key: jax.Array, num: int) -> jax.Array:
  """`draw_masks` with the config's `inpainting` section and `data.image_size`."""
  c = config.inpainting
  return draw_masks(
    key,
    num,
    config.data.image_size,
    kind=c.mask,
    coverage=c.coverage,
    block_size=c.block_size,
    region_grid=c.region_grid,
  )


def check_config(config) -> None:
  c = config.inpainting
  _check_mask(c.mask, config.data.image_size, c.coverage, c.block_size, c.region_grid)
  if not 0.0 <= c.adversarial_weight < 1.0:
    raise ConfigError(f"inpainting.adversarial_weight={c.adversarial_weight} must be in [0, 1)")
  if c.conv_impl not in ("patches", "xla"):
    raise ConfigError(f"inpainting.conv_impl='{c.conv_impl}' is not one of patches, xla")


# --------------------------------------------------------------------------------------------------- baseline


def context_mean_fill(images: jax.Array, mask: jax.Array) -> jax.Array:
  """Each image with its hole filled by the per-channel mean of its visible context: the baseline an inpainter
  has to beat (its `losses.masked_l2` is the `context_mean_mse` metric)."""
  visible = (1.0 - mask)[..., None]
  mean = (images * visible).sum(axis=(1, 2), keepdims=True) / jnp.maximum(visible.sum(axis=(1, 2), keepdims=True), 1)
  return images * visible + mean * mask[..., None]


# ----------------------------------------------------------------------------------------------------- models


def build_model(config, channels: int) -> ContextEncoder:
  c = config.inpainting
  decoder = ContextDecoder(
    tuple(c.decoder_widths),
    config.data.image_size,
    channels,
    channel_fc=c.channel_fc,
    conv_impl=c.conv_impl,
    dtype=jnp.dtype(config.model.dtype),
  )
  return ContextEncoder(build_encoder(config), decoder)


def build_discriminator(config) -> Discriminator:
  c = config.inpainting
  return Discriminator(tuple(c.discriminator_widths), c.conv_impl, jnp.dtype(config.model.dtype))


# ----------------------------------------------------------------------------------------------- the method


def mask_images(images: jax.Array, masks: jax.Array) -> jax.Array:
  """Normalized images with the holes set to FILL_VALUE: what the encoder sees."""
  return images * (1.0 - masks[..., None]) + FILL_VALUE * masks[..., None]


def init(config, rng, example_batch, *, data=None):
  del data
  x = eval_view(example_batch["image"], config)
  # The model takes `rng` itself, as every vision method's does: flax derives the encoder's init from it and the
  # name 'encoder', so the random-init baseline is the same encoder whichever method's run measures it.
  params, state = vision.init_model(build_model(config, x.shape[-1]), rng, x)
  params = dict(params)
  if config.inpainting.adversarial_weight > 0:
    params["discriminator"] = build_discriminator(config).init(jax.random.fold_in(rng, 1), x)["params"]
  return params, state


def loss_terms(params, state, batch, rng, config):
  """The separate losses of one step, ({name: scalar}, (metrics, new_state)).

  'reconstruction' trains the encoder-decoder; with `adversarial_weight` > 0, 'generator_adversarial' (the
  discriminator's params under stop_gradient) trains it too, and 'discriminator' (the inpainted images under
  stop_gradient) trains only the discriminator. `loss_fn` weighs and adds them.
  """
  k_view, k_mask = jax.random.split(rng)
  images = train_view(batch["image"], k_view, config)
  masks = masks_for(config, k_mask, images.shape[0])
  generator = {k: v for k, v in params.items() if k != "discriminator"}
  predictions, updates = build_model(config, images.shape[-1]).apply(
    {"params": generator, **state}, mask_images(images, masks), train=True, mutable=["batch_stats"]
  )
  terms = {"reconstruction": losses.masked_l2(predictions, images, masks)}
  metrics = {
    "recon_mse": terms["reconstruction"],
    "context_mean_mse": losses.masked_l2(context_mean_fill(images, masks), images, masks),
    "mask_fraction": masks.mean(),
  }
  if config.inpainting.adversarial_weight > 0:
    discriminator = build_discriminator(config)
    inpainted = images * (1.0 - masks[..., None]) + predictions * masks[..., None]
    frozen_d = jax.lax.stop_gradient(params["discriminator"])
    # Non-saturating, as DCGAN (which the paper's adversarial setup follows) trains.
    terms["generator_adversarial"] = losses.gan_generator(discriminator.apply({"params": frozen_d}, inpainted))
    real = discriminator.apply({"params": params["discriminator"]}, images)
    fake = discriminator.apply({"params": params["discriminator"]}, jax.lax.stop_gradient(inpainted))
    terms["discriminator"] = losses.gan_discriminator(real, fake)
    metrics["generator_adversarial"] = terms["generator_adversarial"]
    metrics["discriminator_loss"] = terms["discriminator"]
    metrics["discriminator_accuracy"] = 0.5 * (jnp.mean(real > 0) + jnp.mean(fake < 0))
  return terms, (metrics, {"batch_stats": updates["batch_stats"]})


def loss_fn(params, state, batch, rng, config, step):
  del step
  terms, aux = loss_terms(params, state, batch, rng, config)
  w = config.inpainting.adversarial_weight
  if w == 0:
    return terms["reconstruction"], aux
  return (1.0 - w) * terms["reconstruction"] + w * terms["generator_adversarial"] + terms["discriminator"], aux


def inpaint(params, state, images: jax.Array, masks: jax.Array, config) -> dict[str, jax.Array]:
  """Eval-mode inpainting of whole images (uint8 or [0, 1] floats, at the training size) with the given holes.

  Returns normalized (N, S, S, C) arrays: 'original', 'masked' (the encoder's input), 'prediction' (the decoder's
  output everywhere) and 'inpainted' (context kept, the hole from the prediction).
  """
  original = eval_view(images, config)
  masked = mask_images(original, masks)
  variables = {"params": {k: v for k, v in params.items() if k != "discriminator"}, **state}
  prediction = build_model(config, original.shape[-1]).apply(variables, masked, train=False)
  return {
    "original": original,
    "masked": masked,
    "prediction": prediction,
    "inpainted": original * (1.0 - masks[..., None]) + prediction * masks[..., None],
  }


# ------------------------------------------------------------------------------------------------------ evals


def test_inpainting(config, workdir, params, method_state, writer=None, step: int = 0) -> dict:
  """Hole MSE (normalized pixels) of the trained inpainter on the first `inpainting.eval_examples` test images,
  against filling each hole with the mean of its context, and `workdir/inpaintings.png` (`inpainting.plot_examples`
  of them: original, masked input, inpainted). The holes are drawn from the run's seed, so runs compare."""
  from ssljax.evals import plots  # lazy: only evaluation draws

  c = config.inpainting
  images = vision.held_out_images(config, c.eval_examples)
  num = len(images)
  # On the host: a thousand small images are not worth the mesh, and these params are small.
  params, method_state = jax.device_get((params, method_state))
  masks = masks_for(config, jax.random.PRNGKey(config.seed), num)
  fn = jax.jit(lambda p, s, x, m: inpaint(p, s, x, m, config))
  chunks = [fn(params, method_state, images[i : i + 256], masks[i : i + 256]) for i in range(0, num, 256)]
  out = {k: np.concatenate([np.asarray(ch[k]) for ch in chunks]) for k in chunks[0]}
  masks = np.asarray(masks)
  results = {
    "inpainting/recon_mse": float(losses.masked_l2(out["inpainted"], out["original"], masks)),
    "inpainting/context_mean_mse": float(
      losses.masked_l2(context_mean_fill(out["original"], masks), out["original"], masks)
    ),
  }
  print(
    f"eval inpainting: hole MSE {results['inpainting/recon_mse']:.4f}, filled with the context mean "
    f"{results['inpainting/context_mean_mse']:.4f} ({num} test images, {c.mask} holes)",
    flush=True,
  )
  if c.plot_examples > 0:
    to_pixels = lambda x: vision.denormalize(x[: c.plot_examples])
    plots.write_side_by_side(
      {
        "original": to_pixels(out["original"]),
        "masked input": to_pixels(out["masked"]),
        "inpainted": to_pixels(out["inpainted"]),
      },
      workdir,
      "inpaintings",
      title=f"{c.mask} holes, test images\nhole MSE {results['inpainting/recon_mse']:.3f}, context mean "
      f"{results['inpainting/context_mean_mse']:.3f}",
      writer=writer,
      step=step,
    )
  return results


def evaluate(context) -> dict:
  """The vision suite (kNN, linear probe, fine-tuning at label fractions, vs the random-init encoder), then
  `test_inpainting`: the hole MSE on test images against the context-mean fill, and `workdir/inpaintings.png`."""
  results = vision.evaluate(context)
  if jax.process_index() == 0:
    c = context
    results.update(test_inpainting(c.config, c.workdir, c.params, c.method_state, c.writer, c.step))
  return results


METHOD = vision.image_method("inpainting", init=init, loss_fn=loss_fn, check_config=check_config, evaluate=evaluate)
