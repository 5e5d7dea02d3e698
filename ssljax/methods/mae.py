"""Masked autoencoders (He et al., 2021, arXiv:2111.06377): hide most patches of an image (75%, a new random
subset per example and step), encode only the visible ones with a ViT, and let a light decoder with mask
tokens predict the pixels of the hidden ones; the loss counts only hidden patches, against targets normalized
per patch. Seeing a quarter of the patches, the encoder saves compute; predicting the rest needs what objects
look like, not local texture.

MAE is judged by fine-tuning (its linear probe is known to be weak): the eval suite fine-tunes the ViT with a
new head at each label fraction, against the same ViT from its random init with the same steps.

The ViT and its decoder are `ssljax.models.vit.ViT` / `MAE`, the loss `ssljax.losses.mae_recon`. With
`evals.plots`, `evaluate` also writes `workdir/reconstructions.png` (`reconstruction_images` of the first 8 test
images, drawn by `ssljax.evals.plots`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import losses
from ssljax.config import ConfigError
from ssljax.methods import vision
from ssljax.methods.vision import eval_view, train_view
from ssljax.models import vit


def build_encoder(config) -> vit.ViT:
  m = config.mae
  dtype = jnp.dtype(config.model.dtype)
  if m.size == "custom":
    return vit.ViT(patch_size=m.patch_size, hidden=m.hidden, depth=m.depth, heads=m.heads, dtype=dtype, pool=m.pool)
  return vit.vit(m.size, m.patch_size, dtype=dtype, pool=m.pool)


def build_model(config) -> vit.MAE:
  m = config.mae
  return vit.MAE(
    build_encoder(config), decoder_hidden=m.decoder_hidden, decoder_depth=m.decoder_depth, decoder_heads=m.decoder_heads
  )


def check_config(config) -> None:
  m, size = config.mae, config.data.image_size
  if m.size != "custom" and m.size not in vit.VIT_SIZES:
    raise ConfigError(f"mae.size='{m.size}' is not one of {', '.join(vit.VIT_SIZES)}, custom")
  if size % m.patch_size:
    raise ConfigError(f"data.image_size={size} is not divisible by mae.patch_size={m.patch_size}")
  if not 0.0 < m.mask_ratio < 1.0:
    raise ConfigError(f"mae.mask_ratio={m.mask_ratio} must be in (0, 1)")


def num_patches(config) -> int:
  return (config.data.image_size // config.mae.patch_size) ** 2


def reconstruct(params, images: jax.Array, rng: jax.Array, config) -> dict[str, jax.Array]:
  """Masks, encodes and decodes `images` (already normalized): the loss and the pieces of a picture."""
  n = images.shape[0]
  keep_idx, mask, restore_idx = vit.random_masking(rng, n, num_patches(config), config.mae.mask_ratio)
  pred, _ = build_model(config).apply({"params": params}, images, keep_idx, restore_idx, train=True)
  target = vit.patchify(images, config.mae.patch_size)
  loss = losses.mae_recon(pred, target, mask, norm_pix=config.mae.norm_pix)
  return {"loss": loss, "pred": pred, "target": target, "mask": mask}


def init(config, rng, example_batch, *, data=None):
  del data
  images = eval_view(example_batch["image"], config)
  keep_idx, _, restore_idx = vit.random_masking(
    jax.random.PRNGKey(0), images.shape[0], num_patches(config), config.mae.mask_ratio
  )
  return build_model(config).init(rng, images, keep_idx, restore_idx, train=False)["params"], {}


def loss_fn(params, state, batch, rng, config, step):
  del step
  k_view, k_mask = jax.random.split(rng)
  out = reconstruct(params, train_view(batch["image"], k_view, config), k_mask, config)
  return out["loss"], ({}, state)


def reconstruction_images(params, images_uint8: np.ndarray, config, *, seed: int = 0) -> dict[str, np.ndarray]:
  """Original, masked input and reconstruction (visible patches kept, hidden ones predicted) in [0, 1].

  With per-patch normalized targets the prediction of a patch has no mean or scale of its own; it is shown
  with the true patch's, as the MAE paper's figures do.
  """
  images = eval_view(jnp.asarray(images_uint8), config)
  out = jax.jit(lambda p, x: reconstruct(p, x, jax.random.PRNGKey(seed), config))(params, images)
  pred, target, mask = (np.asarray(out[k], np.float32) for k in ("pred", "target", "mask"))
  if config.mae.norm_pix:
    mean, std = target.mean(-1, keepdims=True), np.sqrt(target.var(-1, keepdims=True) + 1e-6)
    pred = pred * std + mean
  hidden = mask[..., None] > 0
  p, (_, h, w, c) = config.mae.patch_size, images.shape
  to_image = lambda patches: np.clip(
    vision.denormalize(np.asarray(vit.unpatchify(jnp.asarray(patches), p, c, (h // p, w // p)))), 0.0, 1.0
  )
  # Hidden patches show as mid-grey: 0 after `normalize`.
  return {
    "original": to_image(target),
    "masked": to_image(np.where(hidden, 0.0, target)),
    "reconstruction": to_image(np.where(hidden, pred, target)),
  }


def evaluate(context) -> dict:
  """The vision suite, then (with `evals.plots`) `workdir/reconstructions.png` of the first 8 test images."""
  config = context.config
  results = vision.evaluate(context)
  if config.evals.plots and jax.process_index() == 0:
    from ssljax.evals import plots  # lazy: only evaluation draws

    pictures = reconstruction_images(context.params, vision.held_out_images(config, 8), config, seed=config.seed)
    plots.write_side_by_side(
      pictures,
      context.workdir,
      "reconstructions",
      title=f"MAE, {config.mae.mask_ratio:.0%} of patches hidden"
      + (" (shown at the true patch mean and contrast)" if config.mae.norm_pix else ""),
      writer=context.writer,
      step=context.step,
    )
  return results


METHOD = vision.image_method(
  "mae",
  init=init,
  loss_fn=loss_fn,
  check_config=check_config,
  evaluate=evaluate,
  build_encoder=build_encoder,
)
