"""A small CPU-friendly convolutional encoder, the patch-matmul convolution it is built on, and the
conv-BN-ReLU layer it shares with the decoders (`ssljax.models.decoders`).

`PatchConv` is the same convolution written as patch extraction plus one matrix multiply. It trained SmallCNN
1.4-2x faster than XLA's convolution on CPU while jaxlib handed convolutions to YNNPACK; with that fusion off
(`ssljax.cpu_flags`) XLA's convolution is the faster one both ways (training 1405 against 797 images/s,
inference 4263 against 1510: benchmarks/small_cnn_convs.py), so it is the default and `conv_impl='patches'`
the fallback for a jaxlib without the flag. Both keep `nn.Conv`'s parameter layout, so one parameter tree serves
either.
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# He et al. 2015 "fan_out" normal init, as torchvision initialises ResNet convolutions.
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def grid_average_pool(x: jax.Array, grid: int = 2) -> jax.Array:
  """Average-pools an (N, H, W, C) map to a (grid x grid) grid and flattens it to (N, grid*grid*C).

  Bins follow torch's adaptive_avg_pool2d: bin i spans [floor(i*H/g), ceil((i+1)*H/g)), so odd
  sizes (a 7x7 map) give overlapping bins rather than dropping a row.
  """
  n, h, w, c = x.shape

  def bins(size):
    return [(i * size // grid, -(-(i + 1) * size // grid)) for i in range(grid)]

  cells = [x[:, h0:h1, w0:w1, :].mean(axis=(1, 2)) for h0, h1 in bins(h) for w0, w1 in bins(w)]
  return jnp.stack(cells, axis=1).reshape(n, grid * grid * c)


def max_pool(x: jax.Array, window: int, strides: int, padding: int = 0) -> jax.Array:
  """`nn.max_pool(x, (window, window), (strides, strides), ((padding, padding),) * 2)` on (N, H, W, C), with a
  backward pass that needs no scatter.

  `lax.reduce_window`'s gradient is a select-and-scatter, which XLA:CPU ran as four int32 index arrays the size
  of the activations and a scatter (about 170 ms of the SimCLR `cpu` step; torch's pooling took 10). Here a
  window that tiles the map is a reshape and a max, any other the maximum of its window*window strided slices;
  both differentiate into elementwise selects. Where a window holds equal maxima, the gradient is shared among
  them instead of going to the first; after a ReLU those ties are zeros, whose gradient the ReLU drops anyway.
  Off the CPU it is `nn.max_pool` itself: accelerators run select-and-scatter well, and their graphs stay as
  they were.
  """
  if jax.default_backend() != "cpu":
    pads = ((padding, padding), (padding, padding))
    return nn.max_pool(x, (window, window), (strides, strides), pads)
  if padding:
    x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)), constant_values=-jnp.inf)
  n, h, w, c = x.shape
  oh, ow = (h - window) // strides + 1, (w - window) // strides + 1
  if window == strides:
    x = x[:, : oh * window, : ow * window]
    return x.reshape(n, oh, window, ow, window, c).max(axis=(2, 4))
  out = None
  for i in range(window):
    for j in range(window):
      tap = x[:, i : i + (oh - 1) * strides + 1 : strides, j : j + (ow - 1) * strides + 1 : strides]
      out = tap if out is None else jnp.maximum(out, tap)
  return out


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
  # lax's 'SAME' rule: out = ceil(size / stride), extra padding goes after.
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


class PatchConv(nn.Module):
  """'SAME'-padded 2-D convolution as k*k shifted slices concatenated on channels, then one matmul.

  Numerically `nn.Conv(features, (k, k), strides, padding='SAME')` with the same `kernel` (k, k, C, F)
  parameter; kept for a jaxlib whose convolutions train slowly on CPU (YNNPACK's, where the flag is missing).
  """

  features: int
  kernel_size: int = 3
  strides: int = 1
  use_bias: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_init: Callable = conv_kernel_init

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, s = self.kernel_size, self.strides
    _, h, w, c = x.shape
    kernel = self.param("kernel", self.kernel_init, (k, k, c, self.features), self.param_dtype)
    # Cast before extracting patches: the k*k-times larger patch array is the memory cost here.
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    x = jnp.pad(x, ((0, 0), _same_pads(h, k, s), _same_pads(w, k, s), (0, 0)))
    oh, ow = -(-h // s), -(-w // s)
    patches = jnp.concatenate(
      [x[:, i : i + (oh - 1) * s + 1 : s, j : j + (ow - 1) * s + 1 : s, :] for i in range(k) for j in range(k)], axis=-1
    )
    # Channel order (i, j, c) matches kernel.reshape(k*k*c, F). A 2-D matmul: XLA:CPU ran it up to
    # 3x faster than the same dot on the 4-D array.
    n = patches.shape[0]
    y = jnp.dot(patches.reshape(n * oh * ow, k * k * c), kernel.reshape(k * k * c, self.features))
    y = y.reshape(n, oh, ow, self.features)
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
      y = y + jnp.asarray(bias, self.dtype)
    return y


def conv(
  conv_impl: str,
  features: int,
  *,
  kernel: int = 3,
  strides: int = 1,
  use_bias: bool = False,
  dtype: Any = jnp.float32,
  kernel_init: Callable = conv_kernel_init,
  name: str | None = None,
) -> nn.Module:
  """A 'SAME'-padded k x k convolution: `nn.Conv` (conv_impl='xla') or `PatchConv` ('patches'), one parameter
  layout for both."""
  if conv_impl == "patches":
    return PatchConv(features, kernel, strides, use_bias=use_bias, dtype=dtype, kernel_init=kernel_init, name=name)
  if conv_impl != "xla":
    raise ValueError(f"conv_impl must be 'xla' or 'patches', got {conv_impl!r}")
  return nn.Conv(
    features,
    (kernel, kernel),
    (strides, strides),
    padding="SAME",
    use_bias=use_bias,
    dtype=dtype,
    kernel_init=kernel_init,
    name=name,
  )


def batch_norm(*, train: bool, dtype: Any = jnp.float32, name: str | None = None) -> nn.BatchNorm:
  # No axis_name: the model runs under jit on global arrays sharded over the mesh, so the batch statistics are
  # over the whole global batch (SimCLR needs global BN) on any number of devices.
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name)


def conv_bn_relu(
  x: jax.Array,
  features: int,
  *,
  train: bool,
  conv_impl: str = "xla",
  dtype: Any = jnp.float32,
  conv_name: str,
  bn_name: str,
) -> jax.Array:
  """3x3 `conv` without bias, BatchNorm, ReLU. Call it inside a compact `__call__`: the two layers become that
  module's children `conv_name` and `bn_name`."""
  y = conv(conv_impl, features, dtype=dtype, name=conv_name)(x)
  return nn.relu(batch_norm(train=train, dtype=dtype, name=bn_name)(y))


class SmallCNN(nn.Module):
  """VGG-style encoder for 28x28 / 32x32 images: per stage conv-BN-ReLU x2, then 2x2 max-pool.

  The last stage is not pooled (28 -> 14 -> 7 with three stages; 32 -> 16 -> 8). Returns the global
  pool (N, widths[-1]) and aux {'pre_logits', 'feature_map', 'pooled_grid' (N, 4 * widths[-1])}.

  Attributes:
    widths: channels per stage.
    dtype: computation dtype; parameters stay float32.
    conv_impl: 'xla' (nn.Conv) or 'patches' (PatchConv); both use the same parameter tree.
    pool: global readout, 'avg' or 'max'.
  """

  widths: Sequence[int] = (32, 64, 128)
  dtype: Any = jnp.float32
  conv_impl: str = "xla"
  pool: str = "avg"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    if self.pool not in ("avg", "max"):
      raise ValueError(f"pool must be 'avg' or 'max', got {self.pool!r}")
    x = jnp.asarray(x, self.dtype)
    for i, width in enumerate(self.widths):
      for j in range(2):
        x = conv_bn_relu(
          x,
          width,
          train=train,
          conv_impl=self.conv_impl,
          dtype=self.dtype,
          conv_name=f"stage{i + 1}_conv{j + 1}",
          bn_name=f"stage{i + 1}_bn{j + 1}",
        )
      if i < len(self.widths) - 1:
        x = max_pool(x, 2, 2)
    pooled = x.mean(axis=(1, 2)) if self.pool == "avg" else x.max(axis=(1, 2))
    return pooled, {"pre_logits": pooled, "feature_map": x, "pooled_grid": grid_average_pool(x, 2)}
