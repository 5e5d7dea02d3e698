"""Image augmentations for self-supervised learning, in pure JAX.

Every augmentation acts on ONE float32 image of shape (H, W, C) with values in [0, 1] and C in {1, 3}, and is a
pure function of `(image, key, *, params)`. They contain no Python control flow on traced values and keep
static output shapes, so `augment_batch` can vmap them over a batch inside a jitted train step, on any device.

Semantics follow torchvision (RandomResizedCrop, ColorJitter, RandomGrayscale, GaussianBlur) as used by SimCLR:
Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", 2020, appendix A.

  >>> views = augment_batch(images_uint8, key, simclr_augment, size=(28, 28))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# ITU-R BT.601 luma, the weights torchvision and PIL use for "L" conversion.
_LUMA = (0.299, 0.587, 0.114)
# torchvision RandomResizedCrop draws this many candidate boxes before falling back to a center crop.
_CROP_TRIES = 10


# ----------------------------------------------------------------------------------------------- validation


def _check_image(image: jax.Array) -> int:
  """Returns the channel count, after checking the (H, W, C) contract every op relies on."""
  if image.ndim != 3:
    raise ValueError(f"image must have rank 3 (H, W, C), got shape {image.shape}")
  if image.shape[-1] not in (1, 3):
    raise ValueError(f"image must have 1 or 3 channels, got {image.shape[-1]} (shape {image.shape})")
  return image.shape[-1]


def _check_probability(p: float, name: str = "p") -> float:
  if not 0.0 <= p <= 1.0:
    raise ValueError(f"{name} must be in [0, 1], got {p}")
  return float(p)


def _check_size(size: int | Sequence[int]) -> tuple[int, int]:
  hw = (size, size) if isinstance(size, int) else tuple(size)
  if len(hw) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in hw):
    raise ValueError(f"size must be a positive int or a pair of positive ints (h, w), got {size}")
  return int(hw[0]), int(hw[1])


def _check_range(rng: Sequence[float], name: str) -> tuple[float, float]:
  lo, hi = (float(v) for v in rng)
  if not 0.0 < lo <= hi:
    raise ValueError(f"{name} must be a pair (lo, hi) with 0 < lo <= hi, got {rng}")
  return lo, hi


def _draw_count(n: int) -> int:
  # XLA:CPU compiles threefry for some lengths (6, 9, 10, 12, ...) several times slower than for multiples of 8;
  # a few spare numbers cost nothing at run time and save about a second of compile per call site.
  return n if n <= 2 else -(-n // 8) * 8


def _uniforms(key: jax.Array, n: int) -> jax.Array:
  # One threefry call per op, sliced, rather than further splits: each call site is separately compiled code.
  return jax.random.uniform(key, (_draw_count(n),))[:n]


def _apply_with_probability(coin: jax.Array, p: float, augmented: jax.Array, image: jax.Array) -> jax.Array:
  """Picks `augmented` when the uniform `coin` falls below p (so p = 1 always applies, p = 0 never)."""
  # A select, not lax.cond: under vmap a batched cond becomes a select anyway, and this keeps it explicit.
  return jnp.where(coin < p, augmented, image)


# ------------------------------------------------------------------------------------------ crop and resize


def _crop_resize(image: jax.Array, box: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Bilinearly resamples the box (top, left, height, width), in pixels, to `size`.

  The box may be traced and fractional; the output shape depends only on `size`, which is what lets
  random crops run under vmap. Pixel centers sit at half-integers, as in torchvision and jax.image.resize.
  """
  top, left, height, width = (jnp.asarray(v, jnp.float32) for v in box)
  scale = jnp.stack([size[0] / height, size[1] / width])
  # scale_and_translate maps input x to x * scale + translation; the box's top-left edge must land on 0.
  translation = -jnp.stack([top, left]) * scale
  # No antialiasing: cheaper, and it is what torchvision did on tensors for years; the crops rarely shrink far.
  out = jax.image.scale_and_translate(
    image, (*size, image.shape[-1]), (0, 1), scale, translation, method="linear", antialias=False
  )
  # Bilinear weights are convex only up to rounding; keep the [0, 1] contract exact.
  return jnp.clip(out, 0.0, 1.0)


def _sample_crop_box(
  key: jax.Array, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> jax.Array:
  """Returns an integer box (top, left, h, w) drawn as torchvision RandomResizedCrop.get_params does.

  All tries are drawn at once and the first valid one wins, which matches the sequential loop in
  distribution without data-dependent control flow.
  """
  u = _uniforms(key, 2 * _CROP_TRIES + 2)
  u_area, u_ratio, (u_top, u_left) = u[:_CROP_TRIES], u[_CROP_TRIES:-2], u[-2:]
  target_area = height * width * (scale[0] + (scale[1] - scale[0]) * u_area)
  log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
  aspect = jnp.exp(log_lo + (log_hi - log_lo) * u_ratio)
  w = jnp.round(jnp.sqrt(target_area * aspect))
  h = jnp.round(jnp.sqrt(target_area / aspect))
  valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)
  first = jnp.argmax(valid)
  h, w = h[first], w[first]
  top = jnp.floor(u_top * (height - h + 1))
  left = jnp.floor(u_left * (width - w + 1))

  # torchvision's fallback: the whole image, trimmed to the nearest allowed aspect ratio, centered.
  in_ratio = width / height
  if in_ratio < ratio[0]:
    fh, fw = round(width / ratio[0]), width
  elif in_ratio > ratio[1]:
    fh, fw = height, round(height * ratio[1])
  else:
    fh, fw = height, width
  fallback = jnp.array([(height - fh) // 2, (width - fw) // 2, fh, fw], jnp.float32)
  return jnp.where(valid.any(), jnp.stack([top, left, h, w]), fallback)


def random_resized_crop(
  image: jax.Array,
  key: jax.Array,
  *,
  size: int | Sequence[int],
  scale: Sequence[float] = (0.08, 1.0),
  ratio: Sequence[float] = (3 / 4, 4 / 3),
) -> jax.Array:
  """Inception-style random crop (torchvision RandomResizedCrop), resized bilinearly to `size`.

  Args:
    image: (H, W, C) float image in [0, 1].
    key: PRNG key.
    size: output (h, w), or one int for a square.
    scale: range of the crop's area as a fraction of the image's area.
    ratio: range of the crop's aspect ratio w/h, sampled log-uniformly.
  Returns:
    (h, w, C) float32 image.

  >>> view = random_resized_crop(image, key, size=(224, 224))
  """
  _check_image(image)
  size = _check_size(size)
  scale = _check_range(scale, "scale")
  ratio = _check_range(ratio, "ratio")
  box = _sample_crop_box(key, image.shape[0], image.shape[1], scale, ratio)
  return _crop_resize(image, box, size)


def center_crop_resize(
  image: jax.Array, key: jax.Array | None = None, *, size: int | Sequence[int], crop_fraction: float = 1.0
) -> jax.Array:
  """Deterministic evaluation crop: the largest centered box with the aspect ratio of `size`, shrunk by
  `crop_fraction` per side, resized bilinearly to `size`.

  `key` is ignored; it is accepted so this composes with `augment_batch` like the random ops.

  Args:
    image: (H, W, C) float image in [0, 1].
    key: unused.
    size: output (h, w), or one int for a square.
    crop_fraction: side length of the crop relative to the largest fitting box, in (0, 1]
      (0.875 is the classic ImageNet 224-of-256 crop).
  Returns:
    (h, w, C) float32 image.

  >>> eval_view = center_crop_resize(image, size=224, crop_fraction=0.875)
  """
  del key
  _check_image(image)
  size = _check_size(size)
  if not 0.0 < crop_fraction <= 1.0:
    raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
  height, width = image.shape[:2]
  # Match the output aspect ratio so the eval view is never stretched.
  out_ratio = size[1] / size[0]
  if width / height > out_ratio:
    ch, cw = height, height * out_ratio
  else:
    ch, cw = width / out_ratio, width
  ch, cw = ch * crop_fraction, cw * crop_fraction
  return _crop_resize(image, ((height - ch) / 2, (width - cw) / 2, ch, cw), size)


def grid_tiles(image: jax.Array, key: jax.Array, *, grid: int = 3, tile: int) -> jax.Array:
  """Cuts the image into a grid x grid lattice of cells and takes one tile x tile square from each, at a random
  offset inside its cell: the gaps and the jitter keep neighbouring tiles from sharing edges, so a network cannot
  solve a layout task by continuing lines across the cut (Doersch et al. 2015; Noroozi and Favaro 2016).

  Args:
    image: (H, W, C) float image; H and W divisible by `grid`.
    key: PRNG key for the offsets.
    grid: cells per side.
    tile: side of each tile, at most the cell's side (equal: no gap and no jitter).
  Returns:
    (grid * grid, tile, tile, C), cells in row-major order.

  >>> tiles = grid_tiles(image, key, grid=3, tile=12)   # a 48x48 image: 16-pixel cells
  """
  _check_image(image)
  height, width, channels = image.shape
  if height % grid or width % grid:
    raise ValueError(f"image size {height}x{width} is not divisible by the {grid}x{grid} tile grid")
  cell_h, cell_w = height // grid, width // grid
  if not 0 < tile <= min(cell_h, cell_w):
    raise ValueError(
      f"tile={tile} must be in [1, {min(cell_h, cell_w)}] (the cell of a {height}x{width} image "
      f"on a {grid}x{grid} grid)"
    )
  rows, cols = np.divmod(np.arange(grid * grid), grid)
  jitter = jax.random.randint(key, (grid * grid, 2), 0, np.array([cell_h, cell_w]) - tile + 1)
  tops = jnp.asarray(rows * cell_h) + jitter[:, 0]
  lefts = jnp.asarray(cols * cell_w) + jitter[:, 1]
  return jax.vmap(lambda t, l: lax.dynamic_slice(image, (t, l, 0), (tile, tile, channels)))(tops, lefts)


# ------------------------------------------------------------------------------------------- flips, colour


def horizontal_flip(image: jax.Array, key: jax.Array, *, p: float = 0.5) -> jax.Array:
  """Mirrors the image left-right with probability p.

  Args:
    image: (H, W, C) float image.
    key: PRNG key.
    p: probability of flipping.
  Returns:
    Image of the same shape.

  >>> view = horizontal_flip(image, key, p=0.5)
  """
  _check_image(image)
  p = _check_probability(p)
  return _apply_with_probability(_uniforms(key, 1)[0], p, image[:, ::-1], image)


def _luma(image: jax.Array) -> jax.Array:
  """(H, W, 1) luma; a single channel is already luma."""
  if image.shape[-1] == 1:
    return image
  return _LUMA[0] * image[..., 0:1] + _LUMA[1] * image[..., 1:2] + _LUMA[2] * image[..., 2:3]


def _blend(image: jax.Array, other: jax.Array, factor: jax.Array) -> jax.Array:
  # torchvision clamps after every op, so each op sees an in-range image whatever the order.
  return jnp.clip(factor * image + (1.0 - factor) * other, 0.0, 1.0)


def _rgb_to_hsv(rgb: jax.Array) -> jax.Array:
  """RGB in [0, 1] to HSV in [0, 1], the colorsys formulas without branches."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  # Elementwise max/min: the same values, but XLA:CPU compiles a reduction over the channel axis ~4x slower.
  maxc = jnp.maximum(r, jnp.maximum(g, b))
  delta = maxc - jnp.minimum(r, jnp.minimum(g, b))
  # Guard the divisions; the where's below discard the guarded values, and gradients stay finite.
  safe_delta = jnp.where(delta > 0, delta, 1.0)
  s = jnp.where(maxc > 0, delta / jnp.where(maxc > 0, maxc, 1.0), 0.0)
  rc, gc, bc = ((maxc - c) / safe_delta for c in (r, g, b))
  h = jnp.where(maxc == r, bc - gc, jnp.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
  h = jnp.where(delta > 0, (h / 6.0) % 1.0, 0.0)
  return jnp.stack([h, s, maxc], axis=-1)


def _hsv_to_rgb(hsv: jax.Array) -> jax.Array:
  """HSV in [0, 1] to RGB; the closed form f(n) = v - v s clip(min(k, 4 - k), 0, 1), k = (n + 6h) mod 6."""
  h, s, v = hsv[..., 0:1], hsv[..., 1:2], hsv[..., 2:3]
  k = (jnp.asarray([5.0, 3.0, 1.0], hsv.dtype) + 6.0 * h) % 6.0
  return v - v * s * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def _adjust_hue(image: jax.Array, factor: jax.Array) -> jax.Array:
  hsv = _rgb_to_hsv(image)
  hsv = hsv.at[..., 0].set((hsv[..., 0] + factor) % 1.0)
  return jnp.clip(_hsv_to_rgb(hsv), 0.0, 1.0)


def _jitter_params(
  key: jax.Array, brightness: float, contrast: float, saturation: float, hue: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Draws torchvision ColorJitter.get_params plus the apply coin.

  Returns (coin, order, factors): order is a permutation of the ops (brightness, contrast, saturation, hue);
  the first three factors multiply, the hue factor shifts.
  """
  u = _uniforms(key, 9)
  # argsort of iid uniforms is a uniformly random permutation, without a second threefry call.
  order = jnp.argsort(u[1:5])
  low = jnp.array([max(0.0, 1 - brightness), max(0.0, 1 - contrast), max(0.0, 1 - saturation), -hue])
  high = jnp.array([1 + brightness, 1 + contrast, 1 + saturation, hue])
  return u[0], order, low + (high - low) * u[5:9]


def _apply_jitter(image: jax.Array, order: jax.Array, factors: jax.Array, enabled: Sequence[bool]) -> jax.Array:
  """Applies the enabled ops (0 brightness, 1 contrast, 2 saturation, 3 hue) in `order`; disabled ops are
  exact identities, not factors of 1.

  Brightness, contrast and saturation are the same blend towards different targets (black, the mean luma,
  the luma image), so each step blends towards the target its op picks. A lax.switch over the four ops does
  the same, but under vmap it evaluates every branch at every step and compiled about 3x slower on CPU.
  """
  on = jnp.asarray(enabled)
  for step in range(4):
    op = order[step]
    luma = _luma(image)
    target = jnp.where(op == 0, 0.0, jnp.where(op == 1, jnp.mean(luma), luma))
    stepped = _blend(image, target, factors[op])
    if enabled[3]:  # static: single-channel images never trace the HSV conversion
      stepped = jnp.where(op == 3, _adjust_hue(image, factors[3]), stepped)
    image = jnp.where(on[op], stepped, image)
  return image


def color_jitter(
  image: jax.Array,
  key: jax.Array,
  *,
  brightness: float = 0.4,
  contrast: float = 0.4,
  saturation: float = 0.4,
  hue: float = 0.1,
  p: float = 0.8,
) -> jax.Array:
  """torchvision ColorJitter in a random per-example order, applied with probability p.

  Brightness, contrast and saturation factors are uniform in [max(0, 1 - x), 1 + x]; contrast blends with
  the mean luma, saturation with the luma image; hue is shifted by a uniform amount in [-hue, hue] turns.
  Saturation and hue leave a single-channel image unchanged.

  Args:
    image: (H, W, C) float image in [0, 1].
    key: PRNG key.
    brightness, contrast, saturation: non-negative strengths; 0 disables the op.
    hue: strength in [0, 0.5]; 0 disables the op.
    p: probability of applying the whole transform.
  Returns:
    Image of the same shape, clipped to [0, 1].

  >>> view = color_jitter(image, key, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
  """
  channels = _check_image(image)
  p = _check_probability(p)
  for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
    if value < 0:
      raise ValueError(f"{name} must be >= 0, got {value}")
  if not 0.0 <= hue <= 0.5:
    raise ValueError(f"hue must be in [0, 0.5], got {hue}")
  if p == 0.0:
    return image
  coin, order, factors = _jitter_params(key, brightness, contrast, saturation, hue)
  enabled = (brightness > 0, contrast > 0, saturation > 0 and channels == 3, hue > 0 and channels == 3)
  return _apply_with_probability(coin, p, _apply_jitter(image, order, factors, enabled), image)


def grayscale(image: jax.Array, key: jax.Array, *, p: float = 0.2) -> jax.Array:
  """Replaces the image by its BT.601 luma with probability p, keeping C channels.

  Args:
    image: (H, W, C) float image.
    key: PRNG key.
    p: probability of converting.
  Returns:
    Image of the same shape; with C = 1 it is unchanged.

  >>> view = grayscale(image, key, p=0.2)
  """
  channels = _check_image(image)
  p = _check_probability(p)
  if channels == 1 or p == 0.0:
    return image
  return _apply_with_probability(_uniforms(key, 1)[0], p, jnp.broadcast_to(_luma(image), image.shape), image)


# --------------------------------------------------------------------------------------------- blur, solarize


def _gaussian_kernel(sigma: jax.Array, radius: int) -> jax.Array:
  """Normalised 1-D Gaussian taps at -radius..radius; the normalisation keeps a constant image constant."""
  x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  kernel = jnp.exp(-0.5 * (x / sigma) ** 2)
  return kernel / jnp.sum(kernel)


def _default_blur_kernel_size(height: int, width: int) -> int:
  # SimCLR: 10% of the side, made odd; at least 3 so small images still blur.
  return 2 * max(1, (min(height, width) // 10) // 2) + 1


def _blur_axis(image: jax.Array, kernel: jax.Array, axis: int) -> jax.Array:
  radius = (kernel.shape[0] - 1) // 2
  pad = [(0, 0)] * image.ndim
  pad[axis] = (radius, radius)
  padded = jnp.pad(image, pad, mode="reflect")
  n = image.shape[axis]
  # Shifted sums, not lax.conv: the kernel differs per example, and under vmap this stays cheap elementwise work.
  return sum(kernel[i] * lax.slice_in_dim(padded, i, i + n, axis=axis) for i in range(kernel.shape[0]))


def gaussian_blur(
  image: jax.Array,
  key: jax.Array,
  *,
  p: float = 0.5,
  sigma: Sequence[float] = (0.1, 2.0),
  kernel_size: int | None = None,
) -> jax.Array:
  """Separable Gaussian blur with sigma uniform in `sigma`, reflect padding, applied with probability p.

  Args:
    image: (H, W, C) float image.
    key: PRNG key.
    p: probability of blurring.
    sigma: range of the standard deviation, in pixels.
    kernel_size: odd tap count; default about 10% of the shorter side, at least 3 (as SimCLR).
  Returns:
    Image of the same shape.

  >>> view = gaussian_blur(image, key, p=0.5)
  """
  _check_image(image)
  p = _check_probability(p)
  sigma = _check_range(sigma, "sigma")
  height, width = image.shape[:2]
  if kernel_size is None:
    kernel_size = _default_blur_kernel_size(height, width)
  if not (isinstance(kernel_size, int) and kernel_size > 0 and kernel_size % 2 == 1):
    raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}")
  if kernel_size // 2 >= min(height, width):
    raise ValueError(f"kernel_size {kernel_size} too large for reflect padding of a {height}x{width} image")
  if p == 0.0:
    return image
  coin, u_sigma = _uniforms(key, 2)
  kernel = _gaussian_kernel(sigma[0] + (sigma[1] - sigma[0]) * u_sigma, kernel_size // 2)
  # Clip: the taps sum to 1 only up to rounding, which can push a white pixel a hair above 1.
  blurred = jnp.clip(_blur_axis(_blur_axis(image, kernel, 0), kernel, 1), 0.0, 1.0)
  return _apply_with_probability(coin, p, blurred, image)


def solarize(image: jax.Array, key: jax.Array, *, p: float = 0.0, threshold: float = 0.5) -> jax.Array:
  """Inverts pixels at or above `threshold` (x -> 1 - x) with probability p (BYOL's second view uses p = 0.2).

  Args:
    image: (H, W, C) float image in [0, 1].
    key: PRNG key.
    p: probability of solarizing.
    threshold: inversion threshold.
  Returns:
    Image of the same shape.

  >>> view = solarize(image, key, p=0.2)
  """
  _check_image(image)
  p = _check_probability(p)
  if p == 0.0:
    return image
  return _apply_with_probability(_uniforms(key, 1)[0], p, jnp.where(image >= threshold, 1.0 - image, image), image)


def normalize(image: jax.Array, *, mean: float | Sequence[float], std: float | Sequence[float]) -> jax.Array:
  """(image - mean) / std per channel; works on one image or a batch (channels last).

  Args:
    image: (..., C) float array.
    mean: scalar or C values.
    std: scalar or C positive values.
  Returns:
    Array of the same shape.

  >>> x = normalize(image, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
  """
  # NumPy constants: validated on the host, folded into the compiled graph.
  mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
  channels = image.shape[-1]
  if mean.ndim > 1 or std.ndim > 1 or mean.size not in (1, channels) or std.size not in (1, channels):
    raise ValueError(f"mean and std must be scalars or have {channels} values, got {mean} and {std}")
  if not np.all(std > 0):
    raise ValueError(f"std must be positive, got {std}")
  return (image - mean) / std


# --------------------------------------------------------------------------------------------- compositions


def simclr_augment(
  image: jax.Array,
  key: jax.Array,
  *,
  size: int | Sequence[int],
  crop_scale: Sequence[float] = (0.08, 1.0),
  flip: bool = True,
  jitter_strength: float = 0.5,
  jitter_p: float = 0.8,
  grayscale_p: float = 0.2,
  blur_p: float = 0.5,
  solarize_p: float = 0.0,
) -> jax.Array:
  """SimCLR's view: crop -> flip -> colour jitter -> grayscale -> blur -> solarize.

  Jitter strength s gives brightness, contrast and saturation 0.8 s and hue 0.2 s (SimCLR appendix A).
  SimCLR uses s = 1.0 and blur_p = 0.5 on ImageNet, s = 0.5 and blur_p = 0 on CIFAR-10.

  Args:
    image: (H, W, C) float image in [0, 1].
    key: PRNG key; each stage draws from its own subkey.
    size: output (h, w), or one int for a square.
    crop_scale: area range of the random resized crop.
    flip: whether to flip horizontally with probability 0.5.
    jitter_strength: s above.
    jitter_p, grayscale_p, blur_p, solarize_p: per-stage probabilities.
  Returns:
    (h, w, C) float32 image in [0, 1].

  >>> view = simclr_augment(image, key, size=(224, 224), jitter_strength=1.0)
  """
  if jitter_strength < 0:
    raise ValueError(f"jitter_strength must be >= 0, got {jitter_strength}")
  k_crop, k_flip, k_jitter, k_gray, k_blur, k_solar = jax.random.split(key, _draw_count(6))[:6]
  s = jitter_strength
  image = random_resized_crop(image, k_crop, size=size, scale=crop_scale)
  if flip:
    image = horizontal_flip(image, k_flip, p=0.5)
  image = color_jitter(
    image, k_jitter, brightness=0.8 * s, contrast=0.8 * s, saturation=0.8 * s, hue=0.2 * s, p=jitter_p
  )
  image = grayscale(image, k_gray, p=grayscale_p)
  image = gaussian_blur(image, k_blur, p=blur_p)
  return solarize(image, k_solar, p=solarize_p)


def augment_batch(images: jax.Array, key: jax.Array, fn: Callable[..., jax.Array], **kwargs) -> jax.Array:
  """Applies `fn(image, key, **kwargs)` to every image of a batch, each with its own key.

  The per-example keys come from splitting `key` by the global batch size, so example i gets the same view
  whether the batch sits on one device or is sharded across many.

  Args:
    images: (N, H, W, C) batch, float in [0, 1] or uint8 in [0, 255].
    key: one PRNG key for the whole batch.
    fn: a per-image augmentation such as `simclr_augment`.
    **kwargs: static keyword arguments for `fn`.
  Returns:
    (N, h, w, C) float32 batch.

  >>> views = jax.jit(lambda x, k: augment_batch(x, k, simclr_augment, size=(28, 28)))(images, key)
  """
  if images.ndim != 4:
    raise ValueError(f"images must have rank 4 (N, H, W, C), got shape {images.shape}")
  if images.dtype == jnp.uint8:
    images = images.astype(jnp.float32) / 255.0
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(lambda image, k: fn(image, k, **kwargs))(images, keys)
