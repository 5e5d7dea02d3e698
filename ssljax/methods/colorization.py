"""Colorization: predict an image's colour from its lightness in CIE Lab, and learn features on the way.

  colorize     Zhang, Isola and Efros, "Colorful Image Colorization", ECCV 2016 (arXiv:1603.08511). The encoder
               sees only L; a light decoder turns its feature map into a distribution over quantized ab (a, b) per
               pixel. Naming the colour of a thing needs to know what the thing is (skies are blue, leaves green),
               so the encoder learns objects and textures.
  split_brain  Zhang, Isola and Efros, "Split-Brain Autoencoders", CVPR 2017 (arXiv:1611.09842). The network is
               split in two halves along its channels: one sees L and predicts ab, the other sees ab and predicts
               L. The representation is both halves' features concatenated.

The losses (`colorization.loss`):
  classification (default)  cross-entropy against Zhang et al.'s soft-encoded targets: each target ab spread over
           its 5 nearest in-gamut bins of `ab_grid` (262 bins of side 10) with Gaussian weights; L (split-brain's
           other half) over `l_bins` equal bins of [0, 100] with Gaussian weights one bin wide. Both papers found it
           gave better features than L2 regression on ImageNet (regression of a multimodal colour settles on the
           desaturated mean), so the cifar10 and imagenet presets use it. Zhang et al.'s class rebalancing is not
           done.
  regression  mean squared error on normalized ab (and L). The cpu preset uses it: on photo crops evaluated on
           Fashion-MNIST it gave the better features (kNN on the encoder's output, 10k/2k Fashion-MNIST images, 300
           steps: 0.739 against 0.711 for classification, random init 0.726) at 2/3 of the step time.

Two input options exist for training on one domain and evaluating on another (the cpu preset: nine colour photos,
then Fashion-MNIST). On nine photos the shortest road to colour is a lookup from absolute lightness and local
texture to the colour of each photo's materials; features made for that lookup transferred no better than the
random-init encoder's. `standardize_l` feeds L at zero mean and unit deviation per image, and `input_jitter` draws a
random gamma and contrast for the input L of each image (and a saturation for split-brain's ab input) while the
targets stay the true colours: the lookup no longer works and the encoder has to recognize structure. Both apply to
the encoder's input only, at training and evaluation alike (jitter at training only), and cost colour accuracy.

Prediction happens at `colorization.decoder_widths`-many 2x upsamplings of the encoder's feature map (the cpu
preset: 7x7 -> 14x14 for 28x28 crops, stride 2; Zhang et al. predicted at stride 4) against targets area-averaged
to that size; pictures upsample the prediction bilinearly to the image. The point estimate of a distribution is its
mean (the squared-error optimum; `ab_mse` metrics) or, for pictures, the paper's annealed mean at temperature
`annealed_temperature` (0.38), which keeps colours vivid.

Views, all on device inside the jitted step: a random crop and flip of the RGB image (`augment.crop_scale`), then
Lab (`ssljax.color.rgb_to_lab`, which matches scikit-image's rgb2lab), then the input jitter. Network inputs are
normalized: L/50 - 1 (or standardized per image) and ab/110; targets are the normalized true L and ab.

Evaluation (kNN, linear probe, fine-tuning at label fractions, vs the random-init encoder: the vision suite) reads
the encoder's features of L, so grayscale evaluation data works: a gray image is converted as RGB with three equal
channels (its ab is 0). The cpu preset trains on photo crops and evaluates on Fashion-MNIST through `evals.data`.
Split-brain limitation: on grayscale images the ab half sees ab = 0 everywhere, so its features are constant and
only the L half (half the channels) carries information.

Where things live: the model (`Colorizer`, `ColorDecoder`, split-brain's `SplitBrainEncoder`) in
`ssljax.models.decoders`; the cross-entropy against soft targets in `ssljax.losses.soft_cross_entropy`; the crop
and flip and the eval view's resize in `ssljax.methods.vision`, with Lab conversion (`to_lab`) on top; the figure
in `ssljax.evals.plots`.

Parameters: the encoder under `params['encoder']` (split-brain: `SplitBrainEncoder`, the halves under
`params['encoder']['l']` and `['ab']`), BatchNorm statistics under `state['batch_stats']['encoder']`, decoders under
`params['ab_decoder']` (and `params['l_decoder']`): the suite lifts `params['encoder']` with this module's
`build_encoder` and `eval_view` / `finetune_view` for fine-tuning. `evaluate` also writes `colorizations.png`
(held-out crops: the L input, the colorized prediction, the original) and held-out colour errors to eval.json.

Training data must be colour: a grayscale dataset is refused with a ConfigError that names it.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssljax import color, losses
from ssljax.config import ConfigError
from ssljax.methods import vision
from ssljax.models.decoders import ColorDecoder, Colorizer, SplitBrainEncoder

MODES = ("colorize", "split_brain")
LOSSES = ("classification", "regression")


def check_config(config) -> None:
  c = config.colorization
  if c.mode not in MODES:
    raise ConfigError(f"colorization.mode='{c.mode}' is not one of {', '.join(MODES)}")
  if c.loss not in LOSSES:
    raise ConfigError(f"colorization.loss='{c.loss}' is not one of {', '.join(LOSSES)}")
  if c.conv_impl not in ("patches", "xla"):
    raise ConfigError(f"colorization.conv_impl='{c.conv_impl}' is not one of patches, xla")
  if not 0.0 < c.split_width <= 1.0:
    raise ConfigError(f"colorization.split_width={c.split_width} must be in (0, 1]")
  if c.l_bins < 2:
    raise ConfigError(f"colorization.l_bins={c.l_bins} must be at least 2")
  vision.check_image_config(config)  # the encoder below is the config's `model.encoder`, halved or not
  build_encoder(config)  # split-brain: refuses an encoder it cannot halve


def check_colour(channels: int, config) -> None:
  """ConfigError naming the dataset when the training images are not RGB: there is no colour to predict."""
  if channels != 3:
    raise ConfigError(
      f"colorization needs colour (RGB) training images, but data.name='{config.data.name}' has "
      f"{channels} channel{'s' if channels != 1 else ''}; train on data.name='skimage_photos' "
      "(offline), cifar10 or imagenet2012, and evaluate on a grayscale set with evals.data"
    )


# ----------------------------------------------------------------------------------------------------- views


def to_lab(rgb: jax.Array) -> jax.Array:
  """(N, H, W, C) floats in [0, 1], C = 3 (RGB) or 1 (gray) -> normalized Lab (N, H, W, 3): L/50 - 1, ab/110.

  A gray image is RGB with three equal channels: its L is that colour's lightness and its ab is exactly 0."""
  if rgb.shape[-1] not in (1, 3):
    raise ValueError(f"colorization takes RGB or grayscale images, got {rgb.shape[-1]} channels")
  lab = color.rgb_to_lab(jnp.broadcast_to(rgb, (*rgb.shape[:-1], 3)))
  lightness = color.normalize_l(lab[..., :1])
  ab = color.normalize_ab(lab[..., 1:]) if rgb.shape[-1] == 3 else jnp.zeros_like(lab[..., 1:])
  return jnp.concatenate([lightness, ab], axis=-1)


def model_input(lab: jax.Array, config) -> jax.Array:
  """What the encoder reads: L alone (colorize) or L and ab (split-brain: each half takes its own); with
  `colorization.standardize_l`, L at zero mean and unit deviation per image (`standardize`)."""
  lightness = lab[..., :1]
  if config.colorization.standardize_l:
    lightness = standardize(lightness)
  return lightness if config.colorization.mode == "colorize" else jnp.concatenate([lightness, lab[..., 1:]], -1)


def standardize(x: jax.Array, eps: float = 0.1) -> jax.Array:
  """Per-image contrast normalization of (N, H, W, 1): (x - mean) / (std + eps). The cpu preset trains on photo
  crops and is evaluated on Fashion-MNIST, whose mostly-black images have other L statistics; with this the encoder
  sees both at one contrast (and cannot map absolute lightness to colour). eps keeps a flat crop's noise down."""
  mean = x.mean(axis=(1, 2, 3), keepdims=True)
  return (x - mean) / (jnp.sqrt(jnp.mean(jnp.square(x - mean), axis=(1, 2, 3), keepdims=True)) + eps)


def train_view(images: jax.Array, rng: jax.Array, config) -> jax.Array:
  """A random crop (`augment.crop_scale`) and flip, then normalized Lab (N, S, S, 3)."""
  return to_lab(vision.crop_flip(images, rng, config, config.augment.crop_scale))


def eval_lab(images: jax.Array, config) -> jax.Array:
  """The whole image, resized to the training size, as normalized Lab (N, S, S, 3)."""
  return to_lab(vision.eval_pixels(images, config))


def eval_view(images: jax.Array, config) -> jax.Array:
  """The encoder's input for evaluation (uint8 or [0, 1] floats, RGB or gray)."""
  return model_input(eval_lab(images, config), config)


def finetune_view(images: jax.Array, rng: jax.Array, config) -> jax.Array:
  """The fine-tuning view, as the vision suite's: a crop of at least half the image and a flip."""
  return model_input(to_lab(vision.crop_flip(images, rng, config, vision.FINETUNE_CROP_SCALE)), config)


def load_train_data(config, *, workdir: str | None = None):
  split = vision.load_train_data(config, workdir=workdir)
  check_colour(split.example_batch(1)["image"].shape[-1], config)  # a streamed split has no `.images`
  return split


# ----------------------------------------------------------------------------------------------------- models


def _narrower(encoder: nn.Module, fraction: float) -> nn.Module:
  """The same encoder with `fraction` of the channels (SmallCNN's `widths`, ResNet's `width`)."""
  if hasattr(encoder, "widths"):
    return encoder.clone(widths=tuple(max(1, round(w * fraction)) for w in encoder.widths))
  if hasattr(encoder, "width"):
    return encoder.clone(width=max(1, round(encoder.width * fraction)))
  raise ConfigError(
    f"split_brain cannot split model.encoder='{type(encoder).__name__}' into halves: it has no "
    "widths or width attribute"
  )


def build_encoder(config) -> nn.Module:
  """The config's encoder (colorize), or two copies with `colorization.split_width` of its channels each
  (split-brain: the paper splits the network in half, so the concatenated features are as wide as one)."""
  encoder = vision.build_encoder(config)
  if config.colorization.mode == "colorize":
    return encoder
  fraction = config.colorization.split_width
  return SplitBrainEncoder(l=_narrower(encoder, fraction), ab=_narrower(encoder, fraction))


def ab_centres(config) -> np.ndarray:
  return color.ab_grid(config.colorization.ab_bin_size)


def l_centres(config) -> np.ndarray:
  """Centres of `l_bins` equal bins of [0, 100], normalized like the L input."""
  bins = config.colorization.l_bins
  return color.normalize_l((np.arange(bins, dtype=np.float32) + 0.5) * (100.0 / bins))


def build_model(config) -> Colorizer:
  c = config.colorization
  classify = c.loss == "classification"
  decoder = lambda out: ColorDecoder(
    tuple(c.decoder_widths), out, tuple(c.head_widths), c.conv_impl, jnp.dtype(config.model.dtype)
  )
  ab_decoder = decoder(len(ab_centres(config)) if classify else 2)
  l_decoder = decoder(c.l_bins if classify else 1) if c.mode == "split_brain" else None
  return Colorizer(build_encoder(config), ab_decoder, l_decoder)


# ----------------------------------------------------------------------------------------------------- losses


def resize(x: jax.Array, size: int) -> jax.Array:
  """(N, H, W, C) -> (N, size, size, C), bilinear; shrinking averages (antialiased), as a target at the
  prediction's resolution should be, and growing interpolates, as a prediction shown at the image's size."""
  if x.shape[1:3] == (size, size):
    return x
  return jax.image.resize(x, (x.shape[0], size, size, x.shape[-1]), method="linear", antialias=True)


def soft_encode_l(lightness: jax.Array, centres: jax.Array) -> jax.Array:
  """(..., 1) normalized L -> (..., bins) Gaussian weights one bin wide over the L bins, summing to 1."""
  width = centres[1] - centres[0]
  return jax.nn.softmax(-jnp.square(lightness - centres) / (2.0 * width**2), axis=-1)


def point_estimate(logits: jax.Array, centres: jax.Array, temperature: float = 1.0) -> jax.Array:
  """The mean of softmax(logits / temperature) over the bin centres (..., D): temperature 1 is the squared-error
  optimum; Zhang et al.'s annealed mean uses 0.38 for vivid pictures."""
  return jax.nn.softmax(logits / temperature, axis=-1) @ jnp.asarray(centres, jnp.float32)


def prediction_loss(
  prediction: jax.Array, target: jax.Array, *, loss: str, centres: jax.Array, encode
) -> tuple[jax.Array, jax.Array]:
  """(loss, point estimate) of one half's prediction against its normalized (N, h, w, D) target.

  classification: `losses.soft_cross_entropy` against `encode(target)`, the soft-encoded target, averaged over
  pixels; regression: mean squared error over pixels and channels.
  """
  if loss == "regression":
    return jnp.mean(jnp.square(prediction - target)), prediction
  return losses.soft_cross_entropy(prediction, encode(target)), point_estimate(prediction, centres)


def _ab_loss(out, lab, config):
  centres = ab_centres(config)
  target = resize(lab[..., 1:], out["ab"].shape[1])
  # Soft encoding works in ab units, where the bin side and sigma are defined.
  encode = lambda ab: color.soft_encode_ab(
    color.denormalize_ab(ab), centres, neighbours=config.colorization.neighbours, sigma=config.colorization.sigma
  )
  loss, estimate = prediction_loss(
    out["ab"], target, loss=config.colorization.loss, centres=color.normalize_ab(centres), encode=encode
  )
  return loss, estimate, target


def _l_loss(out, lab, config):
  centres = jnp.asarray(l_centres(config))
  target = resize(lab[..., :1], out["l"].shape[1])
  loss, estimate = prediction_loss(
    out["l"],
    target,
    loss=config.colorization.loss,
    centres=centres[:, None],
    encode=lambda t: soft_encode_l(t, centres),
  )
  return loss, estimate, target


def jitter_inputs(lab: jax.Array, key: jax.Array, strength: float) -> jax.Array:
  """The network's inputs with per-image random gamma and contrast of L, and random saturation of ab (split-brain's
  other input); the targets stay the true Lab. A lookup from intensity to colour no longer works, so the encoder
  has to recognize what it sees. strength s: gamma, contrast and saturation factors exp(U(-s, s)); 0: off."""
  if strength == 0:
    return lab
  n = lab.shape[0]
  gamma, contrast, saturation = jnp.exp(jax.random.uniform(key, (3, n, 1, 1, 1), minval=-strength, maxval=strength))
  lightness = 2.0 * jnp.power(jnp.clip((lab[..., :1] + 1.0) / 2.0, 0.0, 1.0), gamma) - 1.0  # gamma on L in [0, 1]
  mean = lightness.mean(axis=(1, 2, 3), keepdims=True)
  lightness = jnp.clip(mean + contrast * (lightness - mean), -1.0, 1.0)
  return jnp.concatenate([lightness, saturation * lab[..., 1:]], axis=-1)


def init(config, rng, example_batch, *, data=None):
  del data
  return vision.init_model(build_model(config), rng, eval_view(example_batch["image"], config))


def loss_fn(params, state, batch, rng, config, step):
  del step
  if batch["image"].shape[-1] != 3:
    raise ValueError(f"colorization trains on RGB images, got {batch['image'].shape[-1]} channels")
  k_view, k_jitter = jax.random.split(rng)
  lab = train_view(batch["image"], k_view, config)
  x = jitter_inputs(lab, k_jitter, config.colorization.input_jitter)
  out, updates = build_model(config).apply(
    {"params": params, **state}, model_input(x, config), train=True, mutable=["batch_stats"]
  )
  loss, ab_estimate, ab_target = _ab_loss(out, lab, config)
  # Squared errors in normalized ab; predicting grey (ab = 0) is the baseline to beat.
  metrics = {
    "ab_loss": loss,
    "ab_mse": jnp.mean(jnp.square(ab_estimate - ab_target)),
    "gray_ab_mse": jnp.mean(jnp.square(ab_target)),
  }
  if "l" in out:
    l_loss, l_estimate, l_target = _l_loss(out, lab, config)
    loss = loss + l_loss
    metrics.update(
      l_loss=l_loss,
      l_mse=jnp.mean(jnp.square(l_estimate - l_target)),
      mean_l_mse=jnp.mean(jnp.square(l_target - l_target.mean())),
    )
  return loss, (metrics, {"batch_stats": updates["batch_stats"]})


def colorize(params, state, images: jax.Array, config, *, temperature: float | None = None) -> dict[str, jax.Array]:
  """Eval-mode predictions for whole images (uint8 or [0, 1] floats), at the image's resolution.

  Returns normalized Lab (N, S, S, 3) arrays: 'original' and 'colorized' (the original L with the predicted ab,
  the annealed mean at `temperature`, default `colorization.annealed_temperature`, for a classifier); for
  split-brain also 'l_from_ab' (the predicted L with the original ab).
  """
  c = config.colorization
  temperature = c.annealed_temperature if temperature is None else temperature
  lab = eval_lab(images, config)
  out = build_model(config).apply({"params": params, **state}, model_input(lab, config), train=False)
  size = lab.shape[1]
  ab = out["ab"]
  if c.loss == "classification":
    ab = point_estimate(ab, color.normalize_ab(ab_centres(config)), temperature)
  result = {"original": lab, "colorized": jnp.concatenate([lab[..., :1], resize(ab, size)], axis=-1)}
  if "l" in out:
    lightness = out["l"]
    if c.loss == "classification":
      lightness = point_estimate(lightness, jnp.asarray(l_centres(config))[:, None])
    result["l_from_ab"] = jnp.concatenate([resize(lightness, size), lab[..., 1:]], axis=-1)
  return result


def lab_to_pixels(lab: jax.Array) -> jax.Array:
  """Normalized Lab -> sRGB in [0, 1] (out-of-gamut colours clipped)."""
  return color.lab_to_rgb(
    jnp.concatenate([color.denormalize_l(lab[..., :1]), color.denormalize_ab(lab[..., 1:])], axis=-1)
  )


# ------------------------------------------------------------------------------------------------------ evals


def held_out_errors(params, state, images: np.ndarray, config, *, batch_size: int = 256) -> dict[str, float]:
  """Per-pixel colour errors on `images` at full resolution, in Lab units, against the trivial predictions:
  'ab_rmse' of the predicted ab (the mean for a classifier) vs 'gray_ab_rmse' of ab = 0; split-brain adds
  'l_rmse' of L predicted from ab vs 'constant_l_rmse' of every pixel at the images' mean L."""
  fn = jax.jit(lambda p, s, x: colorize(p, s, x, config, temperature=1.0))
  sums: dict[str, float] = {}
  lightness = []
  for start in range(0, len(images), batch_size):
    out = jax.device_get(fn(params, state, images[start : start + batch_size]))
    ab, ab_pred = color.denormalize_ab(out["original"][..., 1:]), color.denormalize_ab(out["colorized"][..., 1:])
    sums["ab"] = sums.get("ab", 0.0) + float(np.sum(np.square(ab_pred - ab).sum(-1)))
    sums["gray_ab"] = sums.get("gray_ab", 0.0) + float(np.sum(np.square(ab).sum(-1)))
    if "l_from_ab" in out:
      l_true = np.asarray(color.denormalize_l(out["original"][..., 0]))
      sums["l"] = sums.get("l", 0.0) + float(np.sum(np.square(color.denormalize_l(out["l_from_ab"][..., 0]) - l_true)))
      lightness.append(l_true)
  pixels = images.shape[0] * config.data.image_size**2
  results = {f"colorization/{k}_rmse": float(np.sqrt(v / pixels)) for k, v in sums.items()}
  if lightness:
    lightness = np.concatenate(lightness)
    results["colorization/constant_l_rmse"] = float(np.sqrt(np.mean(np.square(lightness - lightness.mean()))))
  return results


def _write_colorizations(context, params, method_state, images, errors) -> None:
  from ssljax.evals import plots  # lazy: only evaluation draws

  config = context.config
  out = jax.device_get(jax.jit(lambda p, s, x: colorize(p, s, x, config))(params, method_state, images))
  gray = out["original"].copy()
  gray[..., 1:] = 0.0
  columns = {
    "input (L)": np.asarray(lab_to_pixels(gray)),
    "colorized": np.asarray(lab_to_pixels(out["colorized"])),
    "original": np.asarray(lab_to_pixels(out["original"])),
  }
  if "l_from_ab" in out:
    columns["L from ab"] = np.asarray(lab_to_pixels(out["l_from_ab"]))
  title = (
    f"held-out crops, {config.colorization.mode}\nab RMSE {errors['colorization/ab_rmse']:.1f}"
    f" (gray {errors['colorization/gray_ab_rmse']:.1f})"
  )
  plots.write_side_by_side(
    columns, context.workdir, "colorizations", title=title, writer=context.writer, step=context.step
  )


def evaluate(context) -> dict:
  """The vision suite (on `evals.data` when set), then held-out colour errors on the run's own `data.eval_split`
  (`colorization/*_rmse`, Lab units) and `workdir/colorizations.png`."""
  results = vision.evaluate(context)
  config = context.config
  if config.colorization.eval_examples > 0:
    images = vision.held_out_images(config, config.colorization.eval_examples, shuffled=True)
    check_colour(images.shape[-1], config)
    # On the host: a thousand small crops are not worth the mesh.
    params, method_state = jax.device_get((context.params, context.method_state))
    errors = held_out_errors(params, method_state, images, config)
    results.update(errors)
    print("eval colorization: " + ", ".join(f"{k.split('/')[1]} {v:.2f}" for k, v in errors.items()), flush=True)
    if config.colorization.plot_examples > 0 and jax.process_index() == 0:
      _write_colorizations(context, params, method_state, images[: config.colorization.plot_examples], errors)
  return results


METHOD = vision.image_method(
  "colorization",
  init=init,
  loss_fn=loss_fn,
  check_config=check_config,
  evaluate=evaluate,
  load_train_data=load_train_data,
  build_encoder=build_encoder,
  eval_view=eval_view,
  finetune_view=finetune_view,
)
