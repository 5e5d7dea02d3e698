"""Tests for ssljax.models: encoders, the patch convolution, heads and the registry."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssljax import models
from ssljax.models import (
  LinearClassifier,
  PatchConv,
  ProjectionHead,
  ResNet,
  ResNet18,
  ResNet50,
  SmallCNN,
  get_encoder,
  grid_average_pool,
)

# threefry's normal sampler takes seconds to compile here, per kernel shape; RBG keys compile in a blink.
KEY = jax.random.key(0, impl="unsafe_rbg")
TINY_RESNET = dict(stage_sizes=(1, 1), block="basic", width=8, stem="cifar")


def _normal(shape):
  return jnp.asarray(np.random.default_rng(1).standard_normal(shape, dtype=np.float32))


def _init(model, x, **kw):
  # Jitted: eager op-by-op init is slower than one compile, even for tiny models.
  return jax.jit(lambda x: model.init(KEY, x, **kw))(x)


def _abstract_init(model, shape):
  return jax.eval_shape(lambda: model.init_with_output(KEY, jnp.zeros(shape), train=False))


def _num_params(variables):
  return sum(x.size for x in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [7, 8])
def test_patch_conv_matches_nn_conv(strides, channels, size):
  x = _normal((2, size, size, channels))
  conv = nn.Conv(5, (3, 3), (strides, strides), padding="SAME", use_bias=False)
  params = conv.init(KEY, x)
  expected = conv.apply(params, x)
  actual = PatchConv(5, 3, strides).apply(params, x)
  assert actual.shape == expected.shape
  np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=1e-5)


def test_patch_conv_bias_and_kernel_layout():
  variables = _init(PatchConv(4, 3, use_bias=True), jnp.zeros((1, 5, 5, 2)))
  assert variables["params"]["kernel"].shape == (3, 3, 2, 4)
  assert variables["params"]["bias"].shape == (4,)


def test_grid_average_pool():
  x = jnp.arange(16.0).reshape(1, 4, 4, 1)
  np.testing.assert_allclose(grid_average_pool(x, 2), [[2.5, 4.5, 10.5, 12.5]])
  # Odd sizes overlap in the middle row/column, as torch's adaptive_avg_pool2d does.
  x = jnp.arange(9.0).reshape(1, 3, 3, 1)
  np.testing.assert_allclose(grid_average_pool(x, 2), [[2.0, 3.0, 5.0, 6.0]])


@pytest.mark.parametrize(
  "factory, expected",
  [
    (ResNet18, 11_689_512 - (512 * 1000 + 1000)),  # torchvision resnet18 minus fc
    (ResNet50, 25_557_032 - (2048 * 1000 + 1000)),  # torchvision resnet50 minus fc
  ],
)
def test_resnet_param_count_matches_torchvision(factory, expected):
  _, variables = _abstract_init(factory(), (1, 64, 64, 3))
  assert _num_params(variables) == expected


@pytest.mark.parametrize(
  "factory, stem, shape, dim, grid",
  [
    (ResNet18, "imagenet", (2, 64, 64, 3), 512, 2),
    (ResNet18, "cifar", (2, 32, 32, 3), 512, 4),
    (ResNet18, "cifar", (2, 28, 28, 1), 512, 4),
    (ResNet50, "imagenet", (2, 64, 64, 3), 2048, 2),
    (ResNet50, "cifar", (2, 32, 32, 3), 2048, 4),
  ],
)
def test_resnet_output_shapes(factory, stem, shape, dim, grid):
  (out, aux), _ = _abstract_init(factory(stem=stem), shape)
  assert out.shape == aux["pre_logits"].shape == (2, dim)
  assert aux["feature_map"].shape == (2, grid, grid, dim)
  assert aux["pooled_grid"].shape == (2, 4 * dim)


def test_resnet_bfloat16_keeps_float32_params():
  (out, _), variables = _abstract_init(ResNet18(stem="cifar", dtype=jnp.bfloat16), (2, 32, 32, 3))
  assert out.dtype == jnp.bfloat16
  assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}


def test_resnet_zero_init_residual():
  variables = _init(ResNet(**TINY_RESNET, zero_init_residual=True), jnp.zeros((1, 8, 8, 3)), train=False)
  for name, block in variables["params"].items():
    if name.startswith("stage"):
      np.testing.assert_array_equal(block["bn2"]["scale"], 0.0)
      np.testing.assert_array_equal(block["bn1"]["scale"], 1.0)


@pytest.mark.parametrize("shape, hw", [((2, 28, 28, 1), 7), ((2, 32, 32, 3), 8)])
def test_small_cnn_output_shapes(shape, hw):
  (out, aux), _ = _abstract_init(SmallCNN(), shape)
  assert out.shape == aux["pre_logits"].shape == (2, 128)
  assert aux["feature_map"].shape == (2, hw, hw, 128)
  assert aux["pooled_grid"].shape == (2, 512)


def test_small_cnn_conv_impls_share_params_and_agree():
  x = _normal((4, 12, 12, 3))
  variables = _init(SmallCNN(widths=(8, 16), conv_impl="xla"), x, train=False)
  run = lambda impl: SmallCNN(widths=(8, 16), conv_impl=impl).apply(variables, x, train=True, mutable=["batch_stats"])
  (xla_out, xla_aux), xla_stats = run("xla")
  (patch_out, patch_aux), patch_stats = run("patches")
  np.testing.assert_allclose(patch_out, xla_out, atol=1e-4)
  np.testing.assert_allclose(patch_aux["feature_map"], xla_aux["feature_map"], atol=1e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4), patch_stats, xla_stats)


def test_small_cnn_rejects_unknown_conv_impl():
  with pytest.raises(ValueError, match="conv_impl"):
    _init(SmallCNN(conv_impl="fft"), jnp.zeros((1, 8, 8, 1)), train=False)


ENCODERS_UNDER_TEST = {
  "small_cnn": lambda: SmallCNN(widths=(8, 16)),
  "resnet": lambda: ResNet(**TINY_RESNET),
}


@pytest.mark.parametrize("name", sorted(ENCODERS_UNDER_TEST))
def test_train_mode_batchnorm_uses_global_batch_statistics(name):
  model = ENCODERS_UNDER_TEST[name]()
  # Each device's shard gets a different offset, so per-device statistics would differ from global ones.
  x = _normal((16, 8, 8, 3)) + jnp.repeat(jnp.arange(8.0), 2)[:, None, None, None]
  variables = _init(model, x, train=False)
  forward = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
  (out_one, _), stats_one = forward(variables, x)

  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  x_sharded = jax.device_put(x, NamedSharding(mesh, P("data")))
  variables_replicated = jax.device_put(variables, NamedSharding(mesh, P()))
  (out_mesh, _), stats_mesh = forward(variables_replicated, x_sharded)

  assert len(out_mesh.sharding.device_set) == 8
  np.testing.assert_allclose(out_mesh, out_one, atol=1e-5, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5), stats_mesh, stats_one)
  # Guard against a vacuous pass: one shard on its own (local BN) gives different outputs.
  (out_local, _), _ = forward(variables, x[:2])
  assert not np.allclose(out_local, out_one[:2], atol=1e-3)


@pytest.mark.parametrize("name", sorted(ENCODERS_UNDER_TEST))
def test_eval_mode_uses_running_averages(name):
  model = ENCODERS_UNDER_TEST[name]()
  x = _normal((6, 8, 8, 3)) * 3.0 + 1.0
  variables = _init(model, x, train=False)
  # Non-trivial running statistics: one train-mode update.
  _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
  variables = {**variables, **updates}
  full, _ = model.apply(variables, x, train=False)
  alone, _ = model.apply(variables, x[:1], train=False)
  np.testing.assert_allclose(alone, full[:1], atol=1e-5, rtol=1e-5)
  (alone_train, _), _ = model.apply(variables, x[:2], train=True, mutable=["batch_stats"])
  (full_train, _), _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
  assert not np.allclose(alone_train[:1], full_train[:1], atol=1e-3)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_projection_head_shapes(num_layers):
  x = _normal((4, 16))
  head = ProjectionHead(hidden_dim=32, out_dim=8, num_layers=num_layers)
  variables = _init(head, x, train=False)
  (z, aux), _ = head.apply(variables, x, train=True, mutable=["batch_stats"])
  assert z.shape == (4, 8)
  assert aux["hidden"].shape == ((4, 16) if num_layers == 1 else (4, 32))
  # SimCLR v2's last BN has no affine parameters, so train-mode outputs are standardised per dimension.
  assert f"bn{num_layers}" not in variables["params"]
  np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-5)


def test_projection_head_without_bn_uses_biases():
  variables = _init(ProjectionHead(hidden_dim=32, out_dim=8, use_bn=False), jnp.zeros((2, 16)), train=False)
  assert "batch_stats" not in variables
  assert set(variables["params"]) == {"dense1", "dense2"}
  assert all("bias" in layer for layer in variables["params"].values())


def test_linear_classifier():
  x = jnp.ones((3, 16))
  model = LinearClassifier(num_classes=10)
  logits, aux = model.apply(_init(model, x, train=False), x, train=False)
  assert logits.shape == (3, 10) and aux == {}


def test_get_encoder():
  assert isinstance(get_encoder("small_cnn", widths=(8,)), SmallCNN)
  encoder = get_encoder("resnet18", stem="cifar")
  assert isinstance(encoder, ResNet) and encoder.stem == "cifar" and encoder.block == "basic"
  assert get_encoder("resnet50").block == "bottleneck"
  with pytest.raises(ValueError, match="Unknown encoder 'vgg'.*resnet18.*small_cnn"):
    get_encoder("vgg")
  assert set(models.ENCODERS) >= {"resnet18", "resnet50", "small_cnn"}


def _max_pool_reference(x, window, strides, padding):
  """float64 NumPy max-pool of (N, H, W, C), -inf padding, VALID windows."""
  x = np.pad(
    np.asarray(x, np.float64), ((0, 0), (padding, padding), (padding, padding), (0, 0)), constant_values=-np.inf
  )
  oh, ow = (x.shape[1] - window) // strides + 1, (x.shape[2] - window) // strides + 1
  out = np.empty((x.shape[0], oh, ow, x.shape[3]))
  for i in range(oh):
    for j in range(ow):
      out[:, i, j] = x[:, i * strides : i * strides + window, j * strides : j * strides + window].max(axis=(1, 2))
  return out


@pytest.mark.parametrize(
  "window,strides,padding,size", [(2, 2, 0, 8), (2, 2, 0, 7), (3, 2, 1, 8), (3, 2, 1, 9), (3, 1, 1, 5)]
)
def test_max_pool_matches_reference_and_nn_max_pool_gradients(window, strides, padding, size):
  from ssljax.models.cnn import max_pool

  x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size, 3))  # no ties: one maximum per window
  out = max_pool(x, window, strides, padding)
  np.testing.assert_allclose(out, _max_pool_reference(x, window, strides, padding), rtol=0, atol=0)
  pads = ((padding, padding), (padding, padding))
  flax_pool = lambda x: nn.max_pool(x, (window, window), (strides, strides), pads)
  cotangent = jax.random.normal(jax.random.PRNGKey(1), out.shape)
  ours = jax.grad(lambda x: jnp.sum(max_pool(x, window, strides, padding) * cotangent))(x)
  theirs = jax.grad(lambda x: jnp.sum(flax_pool(x) * cotangent))(x)
  np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("window,strides,padding", [(2, 2, 0), (3, 2, 1)])
def test_max_pool_backward_has_no_scatter(window, strides, padding):
  from ssljax.models.cnn import max_pool

  x = jnp.zeros((2, 16, 16, 8))
  grad = jax.jit(jax.grad(lambda x: jnp.sum(max_pool(x, window, strides, padding) ** 2)))
  scatters = lambda f: re.findall(r"= \S+ (?:select-and-)?scatter\(", f.lower(x).compile().as_text())
  assert not scatters(grad)
  # what it replaces does scatter, so the check can fail
  pads = ((padding, padding),) * 2
  theirs = jax.jit(jax.grad(lambda x: jnp.sum(nn.max_pool(x, (window,) * 2, (strides,) * 2, pads) ** 2)))
  assert scatters(theirs)


def test_max_pool_off_the_cpu_is_flax_max_pool(monkeypatch):
  from ssljax.models import cnn

  x = jnp.zeros((2, 8, 8, 3))
  reduce_window = lambda: "reduce_window_max" in str(jax.make_jaxpr(lambda x: cnn.max_pool(x, 3, 2, 1))(x))
  assert not reduce_window()
  monkeypatch.setattr(cnn.jax, "default_backend", lambda: "gpu")
  assert reduce_window()
