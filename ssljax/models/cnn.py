"""A small CPU-friendly convolutional encoder, and the patch-matmul convolution it is built on.

XLA's convolution backward pass is slow on CPU: the same network written as patch extraction plus one
matrix multiply per layer trained 1.4-2x faster on a 2-core CPU (forward+backward, batch 512, 28x28).
Inference alone is the other way round: with XLA's conv the (16, 32, 64) encoder embedded 2.1x more 28x28
images a second on the same CPU (2444 against 1156; `python benchmarks/small_cnn_convs.py`). `PatchConv` is
the patch convolution; it keeps `nn.Conv`'s parameter layout, so one parameter tree serves every
`conv_impl` of `SmallCNN`, and the default ('auto') takes each where it is faster.
"""
from typing import Any, Callable, Sequence

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


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
  # lax's 'SAME' rule: out = ceil(size / stride), extra padding goes after.
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


class PatchConv(nn.Module):
  """'SAME'-padded 2-D convolution as k*k shifted slices concatenated on channels, then one matmul.

  Numerically `nn.Conv(features, (k, k), strides, padding='SAME')` with the same `kernel` (k, k, C, F)
  parameter; it exists because its backward pass is much faster than XLA's conv on CPU.
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
        [x[:, i:i + (oh - 1) * s + 1:s, j:j + (ow - 1) * s + 1:s, :]
         for i in range(k) for j in range(k)], axis=-1)
    # Channel order (i, j, c) matches kernel.reshape(k*k*c, F). A 2-D matmul: XLA:CPU ran it up to
    # 3x faster than the same dot on the 4-D array.
    n = patches.shape[0]
    y = jnp.dot(patches.reshape(n * oh * ow, k * k * c), kernel.reshape(k * k * c, self.features))
    y = y.reshape(n, oh, ow, self.features)
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
      y = y + jnp.asarray(bias, self.dtype)
    return y


class SmallCNN(nn.Module):
  """VGG-style encoder for 28x28 / 32x32 images: per stage conv-BN-ReLU x2, then 2x2 max-pool.

  The last stage is not pooled (28 -> 14 -> 7 with three stages; 32 -> 16 -> 8). Returns the global
  pool (N, widths[-1]) and aux {'pre_logits', 'feature_map', 'pooled_grid' (N, 4 * widths[-1])}.

  Attributes:
    widths: channels per stage.
    dtype: computation dtype; parameters stay float32.
    conv_impl: 'auto' (PatchConv when training, nn.Conv at inference: the faster of each on CPU),
      'patches' (PatchConv always) or 'xla' (nn.Conv always, for accelerators). All use the same
      parameter tree.
    pool: global readout, 'avg' or 'max'.
  """
  widths: Sequence[int] = (32, 64, 128)
  dtype: Any = jnp.float32
  conv_impl: str = "auto"
  pool: str = "avg"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    if self.conv_impl not in ("auto", "patches", "xla"):
      raise ValueError(f"conv_impl must be 'auto', 'patches' or 'xla', got {self.conv_impl!r}")
    if self.conv_impl == "patches" or (self.conv_impl == "auto" and train):
      conv = lambda f, name: PatchConv(f, 3, dtype=self.dtype, name=name)
    else:
      conv = lambda f, name: nn.Conv(f, (3, 3), padding="SAME", use_bias=False, dtype=self.dtype,
                                     kernel_init=conv_kernel_init, name=name)
    if self.pool not in ("avg", "max"):
      raise ValueError(f"pool must be 'avg' or 'max', got {self.pool!r}")
    # No axis_name: the model runs under jit on global arrays sharded over the mesh, so the batch
    # statistics are over the whole global batch (SimCLR needs global BN) on any number of devices.
    norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                     dtype=self.dtype, name=name)

    x = jnp.asarray(x, self.dtype)
    for i, width in enumerate(self.widths):
      for j in range(2):
        x = nn.relu(norm(f"stage{i + 1}_bn{j + 1}")(conv(width, f"stage{i + 1}_conv{j + 1}")(x)))
      if i < len(self.widths) - 1:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    pooled = x.mean(axis=(1, 2)) if self.pool == "avg" else x.max(axis=(1, 2))
    return pooled, {"pre_logits": pooled, "feature_map": x, "pooled_grid": grid_average_pool(x, 2)}
