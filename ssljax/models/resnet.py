"""ResNet v1.5 encoders (He et al. 2016, "Deep Residual Learning"; stride in the bottleneck's 3x3 conv).

Encoders only: no classifier. Layer shapes, padding and init follow torchvision, so parameter counts
match torchvision's minus its `fc` layer (ResNet-18: 11,176,512; ResNet-50: 23,508,032).
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax.models.cnn import conv_kernel_init, grid_average_pool, max_pool


def _conv(features: int, kernel: int, strides: int, dtype: Any, name: str) -> nn.Conv:
  # Symmetric k//2 padding as in torchvision; 'SAME' would pad (0, 1) on even sizes with stride 2.
  p = kernel // 2
  return nn.Conv(
    features,
    (kernel, kernel),
    (strides, strides),
    padding=((p, p), (p, p)),
    use_bias=False,
    dtype=dtype,
    kernel_init=conv_kernel_init,
    name=name,
  )


class _ResidualBlock(nn.Module):
  """What every block is built from: its width, its stride, the norm layer (called with name and, for the
  block's last norm, last=True, which zero-init residual uses) and the compute dtype."""

  features: int
  strides: int
  norm: Callable
  dtype: Any = jnp.float32


class BasicBlock(_ResidualBlock):
  """Two 3x3 convs (ResNet-18/34)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = nn.relu(self.norm(name="bn1")(_conv(self.features, 3, self.strides, self.dtype, "conv1")(x)))
    y = self.norm(name="bn2", last=True)(_conv(self.features, 3, 1, self.dtype, "conv2")(y))
    return nn.relu(y + _shortcut(x, y, self.strides, self.norm, self.dtype))


class BottleneckBlock(_ResidualBlock):
  """1x1 reduce, 3x3 (strided, v1.5), 1x1 expand by 4 (ResNet-50 and up)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = nn.relu(self.norm(name="bn1")(_conv(self.features, 1, 1, self.dtype, "conv1")(x)))
    y = nn.relu(self.norm(name="bn2")(_conv(self.features, 3, self.strides, self.dtype, "conv2")(y)))
    y = self.norm(name="bn3", last=True)(_conv(self.features * 4, 1, 1, self.dtype, "conv3")(y))
    return nn.relu(y + _shortcut(x, y, self.strides, self.norm, self.dtype))


def _shortcut(x, y, strides, norm, dtype):
  if x.shape == y.shape:
    return x
  return norm(name="proj_bn")(_conv(y.shape[-1], 1, strides, dtype, "proj_conv")(x))


_BLOCKS = {"basic": BasicBlock, "bottleneck": BottleneckBlock}


class ResNet(nn.Module):
  """ResNet v1.5 encoder. Returns global-average-pooled features: (N, 512) for ResNet-18, (N, 2048) for -50.

  aux: 'pre_logits' (the same pooled vector), 'feature_map' (last stage, (N, h, w, C)) and
  'pooled_grid' (feature map averaged to 2x2 and flattened), the readouts the evals use.

  Attributes:
    stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
    block: 'basic' or 'bottleneck'.
    width: channels of the first stage (before bottleneck expansion); doubles every stage.
    stem: 'imagenet' (7x7/2 conv + 3x3/2 max-pool) or 'cifar' (3x3/1 conv, no pool).
    dtype: computation dtype; parameters stay float32.
    zero_init_residual: start each block's last BN scale at 0, so every block begins as identity
      (Goyal et al. 2017).
  """

  stage_sizes: Sequence[int]
  block: str = "bottleneck"
  width: int = 64
  stem: str = "imagenet"
  dtype: Any = jnp.float32
  zero_init_residual: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    if self.block not in _BLOCKS:
      raise ValueError(f"block must be one of {sorted(_BLOCKS)}, got {self.block!r}")
    if self.stem not in ("imagenet", "cifar"):
      raise ValueError(f"stem must be 'imagenet' or 'cifar', got {self.stem!r}")

    def norm(name: str, last: bool = False) -> nn.BatchNorm:
      # No axis_name: the model runs under jit on global arrays sharded over the mesh, so batch
      # statistics are over the whole global batch (SimCLR needs global BN) on any number of devices.
      zero = last and self.zero_init_residual
      return nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        dtype=self.dtype,
        name=name,
        scale_init=nn.initializers.zeros if zero else nn.initializers.ones,
      )

    x = jnp.asarray(x, self.dtype)
    if self.stem == "imagenet":
      x = nn.relu(norm("stem_bn")(_conv(self.width, 7, 2, self.dtype, "stem_conv")(x)))
      x = max_pool(x, 3, 2, padding=1)
    else:
      x = nn.relu(norm("stem_bn")(_conv(self.width, 3, 1, self.dtype, "stem_conv")(x)))

    block_cls = _BLOCKS[self.block]
    for i, size in enumerate(self.stage_sizes):
      for j in range(size):
        strides = 2 if i > 0 and j == 0 else 1
        x = block_cls(self.width * 2**i, strides, norm, self.dtype, name=f"stage{i + 1}_block{j + 1}")(x)

    pooled = x.mean(axis=(1, 2))
    return pooled, {"pre_logits": pooled, "feature_map": x, "pooled_grid": grid_average_pool(x, 2)}


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block="basic")
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="basic")
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="bottleneck")
