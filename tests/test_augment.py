"""Tests for ssljax.augment: each op against a float64 NumPy reference where one exists, plus the contracts
(shape, dtype, [0, 1] range, jit/vmap, key determinism, sharding invariance) that the train step relies on."""

import colorsys
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssljax import augment

KEY = jax.random.key(0)
LUMA = np.array([0.299, 0.587, 0.114])


def _image(channels, height=16, width=16, seed=0):
  # NumPy, not jax.random: every new shape would otherwise compile its own threefry kernel.
  return jnp.asarray(np.random.default_rng(seed).random((height, width, channels), dtype=np.float32))


def _keys(n, seed=1):
  return jax.random.split(jax.random.key(seed), n)


def _jit(function, /, **kwargs):
  """Compiles the whole call once; op-by-op dispatch compiles every primitive separately and is far slower."""
  return jax.jit(functools.partial(function, **kwargs))


# ----------------------------------------------------------------------------------------- NumPy references


def _np_bilinear_crop(image, box, size):
  """Half-pixel-centred bilinear sampling of box (top, left, h, w), edge-clamped: torchvision's convention."""
  image = np.asarray(image, np.float64)
  top, left, bh, bw = box

  def taps(start, extent, n_out, n_in):
    pos = np.clip(start + (np.arange(n_out) + 0.5) * extent / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    return lo, np.minimum(lo + 1, n_in - 1), pos - lo

  y0, y1, wy = taps(top, bh, size[0], image.shape[0])
  x0, x1, wx = taps(left, bw, size[1], image.shape[1])
  rows = image[y0] * (1 - wy)[:, None, None] + image[y1] * wy[:, None, None]
  return rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]


def _np_luma(x):
  return x @ LUMA if x.shape[-1] == 3 else x[..., 0]


def _np_hue(x, shift):
  out = np.empty_like(x)
  for idx in np.ndindex(x.shape[:-1]):
    h, s, v = colorsys.rgb_to_hsv(*x[idx])
    out[idx] = colorsys.hsv_to_rgb((h + shift) % 1.0, s, v)
  return out


def _np_jitter(x, order, factors):
  """torchvision ColorJitter on a float64 image, ops in the given order, clamped after each."""
  x = np.asarray(x, np.float64)
  for op in order:
    f = float(factors[op])
    if op == 0:
      x = np.clip(f * x, 0, 1)
    elif op == 1:
      x = np.clip(f * x + (1 - f) * _np_luma(x).mean(), 0, 1)
    elif op == 2:
      x = np.clip(f * x + (1 - f) * _np_luma(x)[..., None], 0, 1)
    else:
      x = np.clip(_np_hue(x, f), 0, 1)
  return x


def _np_gaussian(sigma, radius):
  k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  return k / k.sum()


def _np_blur(x, sigma, radius):
  k = _np_gaussian(sigma, radius)
  x = np.pad(np.asarray(x, np.float64), ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
  h, w = x.shape[0] - 2 * radius, x.shape[1] - 2 * radius
  x = sum(k[i] * x[i : i + h] for i in range(len(k)))
  return sum(k[i] * x[:, i : i + w] for i in range(len(k)))


# ------------------------------------------------------------------------------------ contract, every op

RANDOM_OPS = {
  "random_resized_crop": functools.partial(augment.random_resized_crop, size=(12, 10)),
  "center_crop_resize": functools.partial(augment.center_crop_resize, size=(12, 10), crop_fraction=0.8),
  "horizontal_flip": functools.partial(augment.horizontal_flip, p=1.0),
  "color_jitter": functools.partial(augment.color_jitter, p=1.0),
  "grayscale": functools.partial(augment.grayscale, p=1.0),
  "gaussian_blur": functools.partial(augment.gaussian_blur, p=1.0),
  "solarize": functools.partial(augment.solarize, p=1.0),
  "simclr_augment": functools.partial(augment.simclr_augment, size=(12, 10), blur_p=1.0, solarize_p=0.5),
}
RESIZING = {"random_resized_crop", "center_crop_resize", "simclr_augment"}
STOCHASTIC_AT_P1 = {"random_resized_crop", "color_jitter", "gaussian_blur", "simclr_augment"}
# Shared so that tests reusing an op at the same shape hit the compile cache (compiles dominate this file).
BATCHED = {name: _jit(augment.augment_batch, fn=fn) for name, fn in RANDOM_OPS.items()}


def _batch(channels):
  """Eight different images, except that the second repeats the first."""
  images = np.stack([_image(channels, seed=s) for s in range(8)])
  images[1] = images[0]
  return jnp.asarray(images)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", list(RANDOM_OPS))
def test_op_contract_under_jit_and_vmap(name, channels):
  images = _batch(channels)
  out = BATCHED[name](images, KEY)
  expected_hw = (12, 10) if name in RESIZING else (16, 16)
  assert out.shape == (8, *expected_hw, channels)
  assert out.dtype == jnp.float32
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  # Same key, same views: the whole pipeline is a pure function of (image, key).
  np.testing.assert_array_equal(out, BATCHED[name](images, KEY))
  if name in STOCHASTIC_AT_P1:  # one image, two per-example keys: two different views
    assert float(jnp.abs(out[0] - out[1]).mean()) > 1e-3


@pytest.mark.parametrize("name", ["horizontal_flip", "color_jitter", "grayscale", "gaussian_blur", "solarize"])
def test_p_zero_is_identity(name):
  image = _image(3)
  fn = getattr(augment, name)
  np.testing.assert_array_equal(_jit(fn, p=0.0)(image, KEY), image)


# -------------------------------------------------------------------------------------------------- flip


def test_flip_p_one_mirrors_every_time():
  image = _image(3)
  out = jax.jit(jax.vmap(lambda k: augment.horizontal_flip(image, k, p=1.0)))(_keys(8))
  np.testing.assert_array_equal(out, jnp.broadcast_to(image[:, ::-1], out.shape))


def test_flip_half_the_time():
  image = _image(1)
  out = jax.jit(jax.vmap(lambda k: augment.horizontal_flip(image, k, p=0.5)))(_keys(256))
  flipped = np.all(np.asarray(out) == np.asarray(image[:, ::-1]), axis=(1, 2, 3))
  kept = np.all(np.asarray(out) == np.asarray(image), axis=(1, 2, 3))
  assert np.all(flipped ^ kept)
  assert 0.35 < flipped.mean() < 0.65


# -------------------------------------------------------------------------------------------------- crops


@pytest.mark.parametrize(
  "box, size",
  [
    ((3, 2, 9, 7), (12, 10)),  # upsampling an interior box
    ((0, 0, 16, 16), (6, 5)),  # downsampling the whole image
    ((10, 11, 6, 5), (7, 9)),  # box touching the bottom-right edge
  ],
)
def test_crop_resize_matches_numpy_bilinear(box, size):
  image = _image(3)
  out = jax.jit(augment._crop_resize, static_argnums=2)(image, jnp.array(box, jnp.float32), size)
  np.testing.assert_allclose(out, _np_bilinear_crop(image, box, size), atol=1e-5)


def test_random_resized_crop_of_full_square_is_plain_resize():
  image = _image(3)
  same = _jit(augment.random_resized_crop, size=(16, 16), scale=(1, 1), ratio=(1, 1))(image, KEY)
  np.testing.assert_allclose(same, image, atol=1e-6)
  small = _jit(augment.random_resized_crop, size=(8, 8), scale=(1, 1), ratio=(1, 1))(image, KEY)
  np.testing.assert_allclose(small, _np_bilinear_crop(image, (0, 0, 16, 16), (8, 8)), atol=1e-5)


def test_crop_boxes_respect_scale_ratio_and_bounds():
  height, width, scale, ratio = 40, 30, (0.2, 0.6), (0.5, 2.0)
  sample = jax.jit(jax.vmap(lambda k: augment._sample_crop_box(k, height, width, scale, ratio)))
  boxes = np.asarray(sample(_keys(256)))
  top, left, h, w = boxes.T
  np.testing.assert_array_equal(boxes, np.round(boxes))  # whole pixels, as torchvision
  assert np.all((top >= 0) & (left >= 0) & (top + h <= height) & (left + w <= width))
  area = h * w / (height * width)
  # Rounding h and w to whole pixels moves area and ratio slightly past the sampled range.
  assert np.all((area > scale[0] - 0.03) & (area < scale[1] + 0.03))
  assert np.all((w / h > ratio[0] * 0.9) & (w / h < ratio[1] * 1.1))
  assert len({tuple(b) for b in boxes}) > 200  # genuinely random per key


def test_crop_falls_back_to_torchvision_center_crop():
  # An area of twice the image never fits, so every try fails and the ratio-trimmed centre crop is used.
  box = _jit(augment._sample_crop_box, height=20, width=40, scale=(2.0, 2.0), ratio=(1.0, 1.0))(KEY)
  np.testing.assert_array_equal(box, [0, 10, 20, 20])


def test_center_crop_resize():
  image = _image(3, 32, 32)
  np.testing.assert_allclose(
    _jit(augment.center_crop_resize, size=28, crop_fraction=0.875)(image), np.asarray(image)[2:30, 2:30], atol=1e-6
  )
  np.testing.assert_allclose(_jit(augment.center_crop_resize, size=32)(image), image, atol=1e-6)
  wide = _image(1, 20, 40)
  np.testing.assert_allclose(
    _jit(augment.center_crop_resize, size=(10, 10))(wide), _np_bilinear_crop(wide, (0, 10, 20, 20), (10, 10)), atol=1e-5
  )


# --------------------------------------------------------------------------------------------- colour


def test_grayscale_matches_luma_reference():
  image = _image(3)
  out = _jit(augment.grayscale, p=1.0)(image, KEY)
  expected = np.repeat(_np_luma(np.asarray(image, np.float64))[..., None], 3, axis=-1)
  np.testing.assert_allclose(out, expected, atol=1e-6)
  single = _image(1)
  np.testing.assert_array_equal(augment.grayscale(single, KEY, p=1.0), single)


def test_rgb_hsv_conversions_match_colorsys():
  rgb = np.asarray(_image(3, 8, 8), np.float64)
  rgb[0, :3] = [[0.5, 0.5, 0.5], [0, 0, 0], [1, 1, 1]]  # greys: hue and saturation 0
  rgb[1, :3] = np.eye(3)  # primaries: hue on the branch boundaries
  to_hsv, to_rgb = jax.jit(augment._rgb_to_hsv), jax.jit(augment._hsv_to_rgb)
  hsv = np.asarray(to_hsv(jnp.asarray(rgb, jnp.float32)), np.float64)
  expected = np.array([colorsys.rgb_to_hsv(*px) for px in rgb.reshape(-1, 3)]).reshape(rgb.shape)
  hue_gap = np.abs(hsv[..., 0] - expected[..., 0])
  np.testing.assert_allclose(np.minimum(hue_gap, 1 - hue_gap), 0, atol=1e-5)  # hue is circular
  np.testing.assert_allclose(hsv[..., 1:], expected[..., 1:], atol=1e-6)
  np.testing.assert_allclose(to_rgb(jnp.asarray(hsv, jnp.float32)), rgb, atol=1e-5)
  back = np.array([colorsys.hsv_to_rgb(*px) for px in expected.reshape(-1, 3)]).reshape(rgb.shape)
  np.testing.assert_allclose(to_rgb(jnp.asarray(expected, jnp.float32)), back, atol=1e-5)


def test_hue_shift_matches_colorsys_and_zero_is_identity():
  image = _image(3, 6, 6)
  adjust_hue = jax.jit(augment._adjust_hue)
  np.testing.assert_allclose(adjust_hue(image, 0.0), image, atol=1e-6)
  np.testing.assert_allclose(adjust_hue(image, 0.3), _np_hue(np.asarray(image, np.float64), 0.3), atol=1e-5)


def test_brightness_only_jitter_scales_and_clips():
  image = _image(3)
  strengths = dict(brightness=0.4, contrast=0.0, saturation=0.0, hue=0.0)
  run = jax.jit(
    jax.vmap(
      lambda k: (
        augment.color_jitter(image, k, p=1.0, **strengths),
        augment._jitter_params(k, *strengths.values())[2][0],
      )
    )
  )
  out, factors = (np.asarray(a, np.float64) for a in run(_keys(16)))
  assert np.all((factors >= 0.6) & (factors <= 1.4)) and factors.min() < 1 < factors.max()
  expected = np.clip(factors[:, None, None, None] * np.asarray(image, np.float64), 0, 1)
  np.testing.assert_allclose(out, expected, atol=1e-6)


def test_color_jitter_matches_torchvision_reference_in_drawn_order():
  image = _image(3, 6, 6)
  strengths = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
  run = jax.jit(
    jax.vmap(
      lambda k: (
        augment.color_jitter(image, k, p=1.0, **strengths),
        *augment._jitter_params(k, *strengths.values())[1:],
      )
    )
  )
  for got, order, factors in zip(*run(_keys(6))):
    np.testing.assert_allclose(got, _np_jitter(image, np.asarray(order), np.asarray(factors)), atol=2e-5)


def test_color_jitter_order_is_a_random_permutation():
  orders = np.asarray(jax.jit(jax.vmap(lambda k: augment._jitter_params(k, 0.4, 0.4, 0.4, 0.1)[1]))(_keys(256)))
  np.testing.assert_array_equal(np.sort(orders, axis=1), np.broadcast_to(np.arange(4), orders.shape))
  assert len({tuple(o) for o in orders}) == 24  # every order occurs (all 24 in 256 draws w.p. > 0.99)


def test_color_jitter_single_channel_ignores_saturation_and_hue():
  image = _image(1)
  out = _jit(augment.color_jitter, brightness=0.0, contrast=0.0, saturation=0.4, hue=0.1, p=1.0)(image, KEY)
  np.testing.assert_array_equal(out, image)


# --------------------------------------------------------------------------------------- blur, solarize


def test_gaussian_kernel_is_normalised_and_symmetric():
  kernel = np.asarray(_jit(augment._gaussian_kernel, radius=5)(jnp.float32(1.7)))
  assert kernel.shape == (11,)
  np.testing.assert_allclose(kernel.sum(), 1.0, atol=1e-6)
  np.testing.assert_allclose(kernel, kernel[::-1], atol=1e-7)
  np.testing.assert_allclose(kernel, _np_gaussian(1.7, 5), atol=1e-6)


def test_gaussian_blur_preserves_constant_image():
  image = np.full((16, 16, 3), 0.37, np.float32)
  np.testing.assert_allclose(_jit(augment.gaussian_blur, p=1.0)(image, KEY), image, atol=1e-6)


def test_gaussian_blur_of_impulse_is_the_gaussian():
  image = np.zeros((21, 21, 1), np.float32)
  image[10, 10, 0] = 1.0
  out = _jit(augment.gaussian_blur, p=1.0, sigma=(1.3, 1.3), kernel_size=7)(image, KEY)
  expected = np.zeros((21, 21))
  expected[7:14, 7:14] = np.outer(_np_gaussian(1.3, 3), _np_gaussian(1.3, 3))
  np.testing.assert_allclose(out[..., 0], expected, atol=1e-6)


def test_gaussian_blur_matches_reflect_padded_reference():
  image = _image(3, 12, 14)
  out = _jit(augment.gaussian_blur, p=1.0, sigma=(0.8, 0.8), kernel_size=5)(image, KEY)
  np.testing.assert_allclose(out, _np_blur(image, 0.8, 2), atol=1e-5)


def test_default_blur_kernel_is_simclr_ten_percent():
  assert augment._default_blur_kernel_size(224, 224) == 23
  assert augment._default_blur_kernel_size(28, 28) == 3
  assert augment._default_blur_kernel_size(8, 100) == 3


def test_solarize_inverts_above_threshold():
  image = _image(3)
  out = _jit(augment.solarize, p=1.0, threshold=0.6)(image, KEY)
  x = np.asarray(image)
  np.testing.assert_allclose(out, np.where(x >= 0.6, 1 - x, x), atol=1e-7)


def test_normalize():
  image = _image(3)
  mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
  np.testing.assert_allclose(
    augment.normalize(image, mean=mean, std=std), (np.asarray(image) - np.array(mean)) / np.array(std), atol=1e-6
  )


# --------------------------------------------------------------------------------- composition, batching


def test_simclr_without_randomness_is_identity():
  image = _image(3)
  out = _jit(
    augment.simclr_augment, size=16, crop_scale=(1.0, 1.0), flip=False, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0
  )(image, KEY)
  np.testing.assert_allclose(out, image, atol=1e-6)


def test_augment_batch_uses_one_key_per_example_and_accepts_uint8():
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8))
  fn = functools.partial(augment.random_resized_crop, size=12)  # cheap to compile, and key-dependent
  batch = _jit(augment.augment_batch, fn=fn)
  out = batch(images, KEY)
  np.testing.assert_allclose(out, batch(np.asarray(images, np.float32) / 255, KEY), atol=1e-6)
  keys = jax.random.split(KEY, 6)
  np.testing.assert_allclose(out[4], jax.jit(fn)(np.asarray(images[4], np.float32) / 255, keys[4]), atol=1e-6)


def test_augment_batch_is_invariant_to_sharding():
  assert jax.device_count() == 8, "tests/conftest.py should give eight CPU devices"
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  images = _batch(3)
  step = BATCHED["simclr_augment"]  # the contract test has usually compiled the single-device case already
  single = step(images, KEY)
  sharded = step(jax.device_put(images, NamedSharding(mesh, P("data"))), KEY)
  assert len(single.sharding.device_set) == 1 and len(sharded.sharding.device_set) == 8
  np.testing.assert_allclose(sharded, single, atol=1e-6)


# ------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
  "call, message",
  [
    (lambda x: augment.horizontal_flip(x, KEY, p=1.5), "1.5"),
    (lambda x: augment.solarize(x, KEY, p=-0.1), "-0.1"),
    (lambda x: augment.random_resized_crop(x, KEY, size=(0, 8)), r"\(0, 8\)"),
    (lambda x: augment.random_resized_crop(x, KEY, size=8, scale=(0.9, 0.1)), "scale"),
    (lambda x: augment.random_resized_crop(x[0], KEY, size=8), "rank 3"),
    (lambda x: augment.grayscale(x[..., :2], KEY), "got 2"),
    (lambda x: augment.color_jitter(x, KEY, hue=0.7), "0.7"),
    (lambda x: augment.color_jitter(x, KEY, brightness=-1.0), "brightness"),
    (lambda x: augment.gaussian_blur(x, KEY, kernel_size=4), "kernel_size"),
    (lambda x: augment.center_crop_resize(x, size=8, crop_fraction=0.0), "crop_fraction"),
    (lambda x: augment.normalize(x, mean=0.5, std=(1.0, 0.0, 1.0)), "std"),
    (lambda x: augment.augment_batch(x, KEY, augment.solarize), "rank 4"),
    (lambda x: augment.simclr_augment(x, KEY, size=8, jitter_strength=-1.0), "jitter_strength"),
  ],
)
def test_bad_static_arguments_raise(call, message):
  with pytest.raises(ValueError, match=message):
    call(_image(3))


def test_grid_tiles_stay_inside_their_cells_and_jitter_with_the_key():
  size, tile = 15, 3  # 5-pixel cells: up to 2 pixels of jitter
  image = np.arange(size * size, dtype=np.float32).reshape(size, size, 1) / (size * size)
  tiles = np.asarray(augment.grid_tiles(jnp.asarray(image), jax.random.PRNGKey(0), grid=3, tile=tile))
  assert tiles.shape == (9, tile, tile, 1)
  offsets = set()
  for cell in range(9):
    top, left = np.argwhere(image[..., 0] == tiles[cell, 0, 0, 0])[0]
    np.testing.assert_array_equal(tiles[cell], image[top : top + tile, left : left + tile])
    row, col = divmod(cell, 3)
    assert 0 <= top - 5 * row <= 2 and 0 <= left - 5 * col <= 2
    offsets.add((top - 5 * row, left - 5 * col))
  assert len(offsets) > 1
  other = np.asarray(augment.grid_tiles(jnp.asarray(image), jax.random.PRNGKey(1), grid=3, tile=tile))
  assert not np.array_equal(tiles, other)


def test_grid_tiles_refuse_bad_geometry():
  with pytest.raises(ValueError, match="image size 16x15 is not divisible by the 3x3 tile grid"):
    augment.grid_tiles(jnp.zeros((16, 15, 1)), jax.random.PRNGKey(0), grid=3, tile=3)
  with pytest.raises(ValueError, match=r"tile=6 must be in \[1, 5\]"):
    augment.grid_tiles(jnp.zeros((15, 15, 1)), jax.random.PRNGKey(0), grid=3, tile=6)
