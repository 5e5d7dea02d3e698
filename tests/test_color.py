"""Tests for ssljax.color: the Lab conversions against scikit-image (the reference the colorization papers' code
uses), on random colours and a real photograph, plus the jit/vmap/gradient contracts and the ab quantization."""

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax import color

# float32 noise floor: a = 500 (f(X) - f(Y)) with f near 1 rounds to about 3e-5 per term.
LAB_ATOL = 1e-4


def _skimage_color():
  # scikit-image is a reference only, not a dependency of ssljax.
  return pytest.importorskip("skimage.color")


def _colours(n=4096, seed=0):
  """Random sRGB colours plus the awkward ones: cube corners, the darks on the linear segment, the gamma knee."""
  rng = np.random.default_rng(seed)
  corners = np.array(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij")).reshape(3, -1).T
  darks = rng.random((64, 3)) * 0.05
  knee = 0.04045 + rng.uniform(-1e-4, 1e-4, (64, 3))
  return np.concatenate([rng.random((n - 136, 3)), corners, darks, knee]).astype(np.float32)


@pytest.fixture(scope="module")
def rgb_to_lab():
  return jax.jit(color.rgb_to_lab)


@pytest.fixture(scope="module")
def lab_to_rgb():
  return jax.jit(color.lab_to_rgb)


# ---------------------------------------------------------------------------------------------- conversion


def test_rgb_to_lab_matches_skimage_on_random_colours(rgb_to_lab):
  colours = _colours()
  ours = rgb_to_lab(colours)
  assert ours.dtype == jnp.float32 and ours.shape == colours.shape
  # The float64 reference: skimage in float32 is itself about 1e-4 off in a.
  np.testing.assert_allclose(ours, _skimage_color().rgb2lab(colours.astype(np.float64)), rtol=0, atol=LAB_ATOL)


def test_rgb_to_lab_matches_skimage_on_a_photograph(rgb_to_lab):
  data = pytest.importorskip("skimage.data")
  image = (data.astronaut()[::8, ::8] / 255.0).astype(np.float32)  # 64 x 64: skin, suit, flag, sky
  np.testing.assert_allclose(
    rgb_to_lab(image), _skimage_color().rgb2lab(image.astype(np.float64)), rtol=0, atol=LAB_ATOL
  )


def test_known_colours(rgb_to_lab):
  lab = rgb_to_lab(np.array([[0, 0, 0], [1, 1, 1], [1, 0, 0]], np.float32))
  np.testing.assert_allclose(lab[0], [0, 0, 0], atol=1e-4)
  np.testing.assert_allclose(lab[1], [100, 0, 0], atol=1e-2)  # the rounded sRGB matrix puts white ~5e-3 off grey
  np.testing.assert_allclose(lab[2], [53.2406, 80.0923, 67.2028], atol=1e-3)


def test_round_trip(rgb_to_lab, lab_to_rgb):
  colours = _colours()
  np.testing.assert_allclose(lab_to_rgb(rgb_to_lab(colours)), colours, rtol=0, atol=2e-5)


def test_lab_to_rgb_matches_skimage(lab_to_rgb):
  skcolor = _skimage_color()
  in_gamut = skcolor.rgb2lab(_colours(seed=1).astype(np.float64))
  np.testing.assert_allclose(lab_to_rgb(in_gamut.astype(np.float32)), skcolor.lab2rgb(in_gamut), rtol=0, atol=2e-5)
  # Out of gamut, which is what a colorization model can predict: both clip, and both clamp a negative Z first.
  rng = np.random.default_rng(2)
  arbitrary = np.concatenate([rng.uniform(0, 100, (4096, 1)), rng.uniform(-128, 127, (4096, 2))], axis=-1)
  ours = lab_to_rgb(arbitrary.astype(np.float32))
  assert ours.min() == 0.0 and ours.max() == 1.0
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # skimage warns about the negative Z values it clamps
    np.testing.assert_allclose(ours, skcolor.lab2rgb(arbitrary), rtol=0, atol=2e-5)


def test_any_leading_dims_jit_and_vmap(rgb_to_lab):
  images = _colours(n=2 * 4 * 8 * 8).reshape(2, 4, 8, 8, 3)
  # Fused (jit) and op-by-op (eager) code round differently, so they agree to the float32 floor, not bitwise.
  eager = color.rgb_to_lab(images)
  assert eager.shape == images.shape
  np.testing.assert_allclose(rgb_to_lab(images), eager, rtol=0, atol=LAB_ATOL)
  np.testing.assert_allclose(jax.jit(jax.vmap(color.rgb_to_lab))(images), eager, rtol=0, atol=LAB_ATOL)
  np.testing.assert_allclose(jax.jit(jax.vmap(color.lab_to_rgb))(eager), images, rtol=0, atol=2e-5)
  # A single colour is the smallest batch.
  np.testing.assert_allclose(rgb_to_lab(images[0, 0, 0, 0]), eager[0, 0, 0, 0], rtol=0, atol=LAB_ATOL)


def test_gradients_are_finite_at_the_edges():
  # Black and the knees are where an unguarded pow or cbrt would return NaN or inf gradients.
  rgb = jnp.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.04045, 0.5, 0.0]])
  grad = jax.jit(jax.grad(lambda x: jnp.sum(color.lab_to_rgb(color.rgb_to_lab(x)))))(rgb)
  assert np.isfinite(grad).all()
  lab = jnp.array([[0.0, 0.0, 0.0], [50.0, 0.0, 150.0]])  # black, and a yellow whose Z is clamped
  grad = jax.jit(jax.grad(lambda lab: jnp.sum(color.lab_to_rgb(lab))))(lab)
  assert np.isfinite(grad).all()


@pytest.mark.parametrize(
  "function, name, shape",
  [
    (color.rgb_to_lab, "rgb", (4, 4)),
    (color.rgb_to_lab, "rgb", ()),
    (color.lab_to_rgb, "lab", (2, 3, 4)),
  ],
)
def test_bad_shape_is_named(function, name, shape):
  with pytest.raises(ValueError, match=rf"{name} must have shape \(\.\.\., 3\).*{re.escape(str(shape))}"):
    function(np.zeros(shape, np.float32))


def test_integer_rgb_is_rejected():
  with pytest.raises(ValueError, match="uint8.*image / 255"):
    color.rgb_to_lab(np.zeros((2, 3), np.uint8))


def test_normalizers_map_the_ranges_to_unit_interval():
  np.testing.assert_allclose(color.normalize_l(jnp.array([0.0, 50.0, 100.0])), [-1, 0, 1])
  np.testing.assert_allclose(color.normalize_ab(jnp.array([-110.0, 0.0, 110.0])), [-1, 0, 1])
  x = jnp.array([-0.3, 0.7])
  np.testing.assert_allclose(color.normalize_l(color.denormalize_l(x)), x, atol=1e-7)
  np.testing.assert_allclose(color.normalize_ab(color.denormalize_ab(x)), x, atol=1e-7)


# ------------------------------------------------------------------------------------------ quantization

# Whole calls compiled once: op-by-op dispatch compiles every primitive separately and is far slower.
_soft_encode = jax.jit(color.soft_encode_ab, static_argnames=("neighbours", "sigma"))


def test_ab_grid_covers_the_srgb_gamut(rgb_to_lab):
  centres = color.ab_grid()
  # Zhang et al. report 313 for this grid; hits by sRGB colours give 262 (see ab_grid's docstring).
  assert centres.shape == (262, 2) and centres.dtype == np.float32
  assert np.all(centres % 10 == 0)
  assert [0, 0] in centres.tolist()
  assert color.ab_grid() is centres  # cached
  # Every colour's nearest grid point is a kept centre.
  ab = np.asarray(rgb_to_lab(_colours()))[:, 1:]
  kept = {tuple(c) for c in centres.tolist()}
  assert all(tuple(c) in kept for c in (np.round(ab / 10) * 10).tolist())


def test_soft_encode_sums_to_one_and_peaks_at_the_nearest_centre():
  centres = color.ab_grid()
  rng = np.random.default_rng(3)
  ab = rng.uniform(-80, 80, (3, 50, 2)).astype(np.float32)
  target = _soft_encode(ab, centres)
  assert target.shape == (3, 50, len(centres))
  np.testing.assert_allclose(target.sum(-1), 1.0, atol=1e-6)
  assert np.all((np.asarray(target) > 0).sum(-1) == 5)
  nearest = np.argmin(((ab[..., None, :] - centres) ** 2).sum(-1), axis=-1)
  np.testing.assert_array_equal(np.argmax(target, axis=-1), nearest)


def test_soft_encode_weights_by_hand():
  centres = np.array([[0, 0], [10, 0], [0, 10], [-10, 0], [30, 30]], np.float32)
  target = _soft_encode(np.array([3.0, 0.0]), centres, neighbours=3, sigma=5.0)
  d2 = np.array([9, 49, 109])  # (0, 0), (10, 0), then (0, 10) beats (-10, 0) at 169
  expected = np.exp(-d2 / 50) / np.exp(-d2 / 50).sum()
  np.testing.assert_allclose(target, [*expected, 0, 0], atol=1e-6)


def test_soft_encode_far_outside_the_gamut_is_still_a_distribution():
  target = _soft_encode(np.array([[500.0, 500.0]]), color.ab_grid())
  assert np.isfinite(target).all()
  np.testing.assert_allclose(target.sum(-1), 1.0, atol=1e-6)


def test_soft_encode_rejects_bad_shapes():
  with pytest.raises(ValueError, match=r"ab must have shape \(\.\.\., 2\).*\(4, 3\)"):
    color.soft_encode_ab(np.zeros((4, 3)), color.ab_grid())
  with pytest.raises(ValueError, match=r"centres must have shape \(Q, 2\)"):
    color.soft_encode_ab(np.zeros((4, 2)), np.zeros((10,)))
  with pytest.raises(ValueError, match="neighbours"):
    color.soft_encode_ab(np.zeros((4, 2)), np.zeros((3, 2)), neighbours=5)
