"""CIE Lab colour space in pure JAX, for colorization pretext tasks.

Colorization predicts the chroma channels (a, b) of an image from its lightness L: Zhang et al., "Colorful Image
Colorization", ECCV 2016, and the split-brain autoencoder, Zhang et al., CVPR 2017, which also predicts L from ab.
Lab is used because it separates lightness from chroma and is roughly perceptually uniform, so Euclidean distance in
ab is a sensible error and a regular ab grid is a sensible set of colour classes.

The conversions reproduce `skimage.color.rgb2lab` / `lab2rgb` (illuminant D65, observer "2"), which is what the
reference colorization code calls, so targets computed here match those of the published models. They are
elementwise in float32, act on any leading batch dimensions (..., 3), and contain no data-dependent control flow, so
they run under jit and vmap on any device.

  >>> lab = rgb_to_lab(images)                       # (B, H, W, 3), rgb in [0, 1]
  >>> inputs = normalize_l(lab[..., :1])              # L in [-1, 1]
  >>> targets = soft_encode_ab(lab[..., 1:], ab_grid())  # (B, H, W, Q) distribution over ab bins
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# sRGB (IEC 61966-2-1) linear RGB -> CIE XYZ, exactly the matrix skimage uses; its inverse is computed, as there.
_XYZ_FROM_RGB = np.array(
  [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)
# D65 white point, 2-degree observer, normalized to Y = 1.
_D65_WHITE = (0.95047, 1.0, 1.08883)

# sRGB transfer curve: linear segment below these knees (encoded and linear side), power 2.4 above.
_SRGB_KNEE = 0.04045
_LINEAR_KNEE = 0.0031308
# Lab's f(t) = cbrt(t) above (6/29)^3, linear below. skimage uses these rounded forms of (6/29)^3, 1/(3 (6/29)^2)
# and 6/29; using them too (not the exact fractions) keeps a and b within float32 rounding of skimage near the knee.
_LAB_EPSILON = 0.008856
_LAB_SLOPE = 7.787
_LAB_F_KNEE = 0.2068966
_LAB_OFFSET = 16.0 / 116.0

# Normalizers for network inputs and regression targets. L in [0, 100] maps to [-1, 1]. 110 bounds |a| and |b| over
# the sRGB gamut (a in [-86, 98], b in [-108, 95]), so normalized ab lies in [-1, 1]; it is the value of Zhang et
# al.'s released code. Note their L normalization is (L - 50) / 100, i.e. [-0.5, 0.5]: models ported from those
# weights need half of `normalize_l`.
L_CENTRE = 50.0
L_SCALE = 50.0
AB_SCALE = 110.0


# ----------------------------------------------------------------------------------------------- validation


def _check_triplets(x: jax.Array, name: str) -> None:
  if x.ndim < 1 or x.shape[-1] != 3:
    raise ValueError(f"{name} must have shape (..., 3) with channels last, got shape {x.shape}")


def _check_pairs(x: jax.Array, name: str) -> None:
  if x.ndim < 1 or x.shape[-1] != 2:
    raise ValueError(f"{name} must have shape (..., 2) with (a, b) last, got shape {x.shape}")


# ------------------------------------------------------------------------------------------------- helpers


def _apply_matrix(matrix: np.ndarray, x: jax.Array) -> jax.Array:
  """Returns matrix @ x over the last axis of x, as multiply-adds rather than a dot.

  TPUs (bf16 passes) and recent GPUs (TF32) run float32 dots at reduced precision by default, which costs about 1e-2
  in Lab; nine elementwise products are exact in float32 everywhere and fuse with their neighbours.
  """
  return jnp.sum(x[..., None, :] * jnp.asarray(matrix, jnp.float32), axis=-1)


def _where_pow(mask: jax.Array, base: jax.Array, exponent: float) -> jax.Array:
  """base ** exponent where mask holds, 1 elsewhere: the unused branch of a where must not see a negative base, whose
  NaN would leak into gradients even though the forward value discards it."""
  return jnp.power(jnp.where(mask, base, 1.0), exponent)


# ------------------------------------------------------------------------------------------------ conversion


def rgb_to_lab(rgb: jax.Array) -> jax.Array:
  """Converts sRGB to CIE Lab (D65, 2-degree observer), matching `skimage.color.rgb2lab`.

  Args:
    rgb: (..., 3) float array, sRGB (gamma-encoded) in [0, 1]. Integer images must be scaled first (uint8 / 255);
      they are rejected rather than silently treated as 0-255 floats.
  Returns:
    (..., 3) float32 Lab: L in [0, 100], a in about [-86, 98], b in about [-108, 95] for in-range input.

  >>> lab = rgb_to_lab(jnp.array([1.0, 0.0, 0.0]))   # ~ [53.24, 80.09, 67.20]
  """
  rgb = jnp.asarray(rgb)
  _check_triplets(rgb, "rgb")
  if not jnp.issubdtype(rgb.dtype, jnp.floating):
    raise ValueError(
      f"rgb must be a float array in [0, 1], got dtype {rgb.dtype} (shape {rgb.shape}); "
      "scale integer images first, e.g. image / 255"
    )
  rgb = rgb.astype(jnp.float32)

  above = rgb > _SRGB_KNEE
  linear = jnp.where(above, _where_pow(above, (rgb + 0.055) / 1.055, 2.4), rgb / 12.92)
  t = _apply_matrix(_XYZ_FROM_RGB, linear) / jnp.asarray(_D65_WHITE, jnp.float32)

  above = t > _LAB_EPSILON
  # cbrt of a guarded input: its derivative is infinite at 0, which would poison gradients of the linear branch.
  f = jnp.where(above, jnp.cbrt(jnp.where(above, t, 1.0)), _LAB_SLOPE * t + _LAB_OFFSET)
  fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
  return jnp.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lab_to_rgb(lab: jax.Array) -> jax.Array:
  """Converts CIE Lab (D65, 2-degree observer) to sRGB, matching `skimage.color.lab2rgb`.

  Lab colours outside the sRGB gamut (a predicted ab that is too saturated for its L) come out clipped to [0, 1]
  per channel, as skimage does; skimage also clamps a negative intermediate Z to 0 first, and so does this.

  Args:
    lab: (..., 3) array, L in [0, 100] and a, b in the usual range.
  Returns:
    (..., 3) float32 sRGB in [0, 1].

  >>> rgb = lab_to_rgb(jnp.concatenate([lightness, denormalize_ab(predicted_ab)], axis=-1))
  """
  lab = jnp.asarray(lab)
  _check_triplets(lab, "lab")
  lab = lab.astype(jnp.float32)

  fy = (lab[..., 0] + 16.0) / 116.0
  fx = lab[..., 1] / 500.0 + fy
  fz = jnp.maximum(fy - lab[..., 2] / 200.0, 0.0)
  f = jnp.stack([fx, fy, fz], axis=-1)
  t = jnp.where(f > _LAB_F_KNEE, f**3, (f - _LAB_OFFSET) / _LAB_SLOPE)
  linear = _apply_matrix(_RGB_FROM_XYZ, t * jnp.asarray(_D65_WHITE, jnp.float32))

  above = linear > _LINEAR_KNEE
  rgb = jnp.where(above, 1.055 * _where_pow(above, linear, 1.0 / 2.4) - 0.055, 12.92 * linear)
  return jnp.clip(rgb, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------- normalizers


def normalize_l(lightness: jax.Array) -> jax.Array:
  """Maps L in [0, 100] to [-1, 1], a zero-centred network input: (L - 50) / 50."""
  return (lightness - L_CENTRE) / L_SCALE


def denormalize_l(x: jax.Array) -> jax.Array:
  """Inverse of `normalize_l`: maps [-1, 1] back to L in [0, 100]."""
  return x * L_SCALE + L_CENTRE


def normalize_ab(ab: jax.Array) -> jax.Array:
  """Maps a, b to [-1, 1] over the sRGB gamut: ab / 110, for tanh or regression heads."""
  return ab / AB_SCALE


def denormalize_ab(x: jax.Array) -> jax.Array:
  """Inverse of `normalize_ab`: x * 110."""
  return x * AB_SCALE


# ----------------------------------------------------------------------------------------- ab quantization


@functools.lru_cache(maxsize=8)
def ab_grid(bin_size: float = 10.0, *, samples_per_edge: int = 512) -> np.ndarray:
  """The in-gamut ab bin centres: the classes of Zhang et al. 2016's colour classifier.

  Centres lie at integer multiples of `bin_size` (as in Zhang et al.'s `pts_in_hull.npy`) and a colour belongs to
  the nearest one. A bin is kept when some sRGB colour, at any lightness, falls in it. Only the six faces of the RGB
  cube are sampled: the cube's surface maps onto the boundary of the Lab gamut, and a solid's projection onto the
  ab plane is the projection of its boundary, so the interior adds no bins.

  With the defaults this gives 262 bins (a from -90 to 100, b from -110 to 90); 8-bit colours alone
  (samples_per_edge=256) hit 261. Zhang et al. report Q = 313 for the same grid: their gamut test is not published
  and evidently looser than "hit by an sRGB colour", so their trained weights need their own 313 centres.

  Computed once per argument set, eagerly even when called under jit, and returned as a read-only NumPy constant.

  Args:
    bin_size: spacing of the grid in ab units.
    samples_per_edge: samples along each edge of each cube face (linspace over [0, 1]).
  Returns:
    (Q, 2) float32 centres (a, b), sorted by a then b.

  >>> centres = ab_grid()          # (262, 2)
  """
  if not bin_size > 0:
    raise ValueError(f"bin_size must be positive, got {bin_size}")
  if samples_per_edge < 2:
    raise ValueError(f"samples_per_edge must be at least 2, got {samples_per_edge}")
  t = np.linspace(0.0, 1.0, samples_per_edge, dtype=np.float32)
  u, v = (x.ravel() for x in np.meshgrid(t, t, indexing="ij"))
  faces = []
  for axis in range(3):
    for value in (0.0, 1.0):
      face = np.empty((u.size, 3), np.float32)
      face[:, axis] = value
      face[:, [a for a in range(3) if a != axis]] = np.stack([u, v], axis=-1)
      faces.append(face)
  # Concrete arrays in, concrete array out, even when the first call happens while tracing a jitted function.
  # Jitted, because op-by-op dispatch compiles each primitive separately and costs about a second.
  with jax.ensure_compile_time_eval():
    ab = np.asarray(jax.jit(rgb_to_lab)(np.concatenate(faces))[:, 1:])
  bins = np.round(ab / bin_size).astype(np.int64)
  # An occupancy grid rather than np.unique(axis=0), which sorts a million rows; argwhere yields a-then-b order.
  lowest = bins.min(axis=0)
  occupied = np.zeros(bins.max(axis=0) - lowest + 1, bool)
  occupied[tuple((bins - lowest).T)] = True
  centres = ((np.argwhere(occupied) + lowest) * bin_size).astype(np.float32)
  centres.flags.writeable = False  # shared by every caller through the cache
  return centres


def soft_encode_ab(ab: jax.Array, centres: jax.Array, *, neighbours: int = 5, sigma: float = 5.0) -> jax.Array:
  """Soft-encodes ab values as a distribution over bin centres: the classification target of Zhang et al. 2016.

  Each ab value spreads its mass over its `neighbours` nearest centres with Gaussian weights
  exp(-d^2 / (2 sigma^2)) in the distance d, normalized to sum to 1 (section 2.1 of the paper: 5 neighbours,
  sigma = 5). Ties at the last neighbour go to the centre listed first.

  Args:
    ab: (..., 2) array of (a, b).
    centres: (Q, 2) bin centres, e.g. `ab_grid()`.
    neighbours: how many nearest centres share the mass, 1 <= neighbours <= Q.
    sigma: Gaussian width in ab units.
  Returns:
    (..., Q) float32 distribution, zero outside the nearest `neighbours` centres.

  >>> target = soft_encode_ab(lab[..., 1:], ab_grid())
  >>> loss = -jnp.sum(target * jax.nn.log_softmax(logits), axis=-1)
  """
  ab = jnp.asarray(ab, jnp.float32)
  centres = jnp.asarray(centres, jnp.float32)
  _check_pairs(ab, "ab")
  if centres.ndim != 2 or centres.shape[-1] != 2:
    raise ValueError(f"centres must have shape (Q, 2), got shape {centres.shape}")
  num_bins = centres.shape[0]
  if not 1 <= neighbours <= num_bins:
    raise ValueError(f"neighbours must be in [1, {num_bins}] (the number of centres), got {neighbours}")
  if not sigma > 0:
    raise ValueError(f"sigma must be positive, got {sigma}")

  # Differences, not the |x|^2 - 2 x.c + |c|^2 expansion: that needs a dot (reduced precision on accelerators) and
  # cancels badly for nearby points.
  sq_dist = jnp.sum((ab[..., None, :] - centres) ** 2, axis=-1)
  neg_sq_dist, nearest = lax.top_k(-sq_dist, neighbours)
  # softmax subtracts the max: an ab far outside the gamut would otherwise underflow every weight to 0 and give 0/0.
  weights = jax.nn.softmax(neg_sq_dist / (2.0 * sigma**2), axis=-1)
  # Scatter by comparison and sum, which XLA fuses without materializing a (..., neighbours, Q) one-hot.
  hit = nearest[..., :, None] == jnp.arange(num_bins)
  return jnp.sum(jnp.where(hit, weights[..., :, None], 0.0), axis=-2)
