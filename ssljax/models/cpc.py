"""CPC's networks (van den Oord et al. 2018): an encoder g_enc over the elements of a sequence, an autoregressive
GRU g_ar that summarizes the past into c_t, and the K linear maps W_k that predict z_{t+k} from c_t.

Both inputs end as sequences of shape (B, G, T, D): an image is a grid of overlapping patches, each encoded on its
own (so no patch sees its neighbours), whose G columns are read top to bottom; raw audio is one sequence (G = 1)
of frames from a strided 1-D convolution stack.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def patch_grid(images: jax.Array, *, patch: int, stride: int) -> jax.Array:
  """(B, H, W, C) -> (B, R, S, patch, patch, C): the overlapping patches at rows and columns 0, stride, 2 stride, ...
  that fit in the image, in row-major grid order."""
  b, h, w, c = images.shape
  if patch > min(h, w) or stride < 1:
    raise ValueError(f"patch={patch}, stride={stride} do not fit a {h}x{w} image")
  rows, cols = (h - patch) // stride + 1, (w - patch) // stride + 1
  r_idx = jnp.arange(rows)[:, None] * stride + jnp.arange(patch)[None, :]  # (R, p)
  c_idx = jnp.arange(cols)[:, None] * stride + jnp.arange(patch)[None, :]  # (S, p)
  x = images[:, r_idx]  # (B, R, p, W, C)
  x = x[:, :, :, c_idx]  # (B, R, p, S, p, C)
  return x.transpose(0, 1, 3, 2, 4, 5)


def grid_size(image_size: int, *, patch: int, stride: int) -> int:
  """Rows (and columns) of `patch_grid` on a square image."""
  return (image_size - patch) // stride + 1


class Autoregressor(nn.Module):
  """g_ar: a GRU over the steps of every sequence; (B, G, T, D) -> (B, G, T, H), c_t seeing steps <= t only."""

  hidden: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    b, g, t, d = z.shape
    gru = nn.RNN(nn.GRUCell(features=self.hidden, dtype=self.dtype, param_dtype=jnp.float32), name="gru")
    return gru(z.reshape(b * g, t, d)).reshape(b, g, t, self.hidden)


class PatchGridEncoder(nn.Module):
  """CPC's image encoder: g_enc on each patch of the grid, then g_ar down each column.

  Returns (the readout feature, aux) with aux 'z' (B, G, T, D) and 'context' (B, G, T, H), G the grid's columns and
  T its rows, and 'pre_logits' the readout the probes read (`READOUTS`: the mean of the patch encodings over the
  grid, as the paper's linear evaluation reads them, or of c_t; or either whole grid).
  """

  patch_encoder: nn.Module  # (N, p, p, C) -> (features, aux)
  patch: int
  stride: int
  context_dim: int
  readout: str = "z"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict]:
    patches = patch_grid(x, patch=self.patch, stride=self.stride)
    b, rows, cols = patches.shape[:3]
    z, _ = self.patch_encoder(patches.reshape(b * rows * cols, *patches.shape[3:]), train=train)
    z = z.reshape(b, rows, cols, -1).transpose(0, 2, 1, 3)  # (B, G=cols, T=rows, D): columns read top to bottom
    c = Autoregressor(self.context_dim, dtype=self.dtype, name="autoregressor")(z)
    return _readout(z, c, self.readout)


class WaveEncoder(nn.Module):
  """g_enc for raw audio: strided 1-D convolutions with ReLU, each followed by a LayerNorm over channels (per frame,
  so no statistics are shared between the frames a loss contrasts). The paper's strides (5, 4, 2, 2, 2) and kernels
  (10, 8, 4, 4, 4) turn 16 kHz into 100 frames a second. (B, L) -> (B, L / prod(strides), width)."""

  width: int = 512
  kernels: Sequence[int] = (10, 8, 4, 4, 4)
  strides: Sequence[int] = (5, 4, 2, 2, 2)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, wave: jax.Array) -> jax.Array:
    x = jnp.asarray(wave, self.dtype)[..., None]
    for i, (k, s) in enumerate(zip(self.kernels, self.strides)):
      x = nn.Conv(self.width, (k,), (s,), padding="SAME", dtype=self.dtype, name=f"conv{i + 1}")(x)
      x = nn.relu(nn.LayerNorm(dtype=self.dtype, name=f"norm{i + 1}")(x))
    return x


class AudioEncoder(nn.Module):
  """CPC's audio encoder: `WaveEncoder` frames, then g_ar. (B, L) waveforms -> (readout, aux) as
  `PatchGridEncoder`'s, with G = 1 and T the frames."""

  width: int
  context_dim: int
  kernels: Sequence[int] = (10, 8, 4, 4, 4)
  strides: Sequence[int] = (5, 4, 2, 2, 2)
  readout: str = "context"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, wave: jax.Array, *, train: bool) -> tuple[jax.Array, dict]:
    del train  # no batch statistics
    z = WaveEncoder(self.width, self.kernels, self.strides, dtype=self.dtype, name="frames")(wave)[:, None]
    c = Autoregressor(self.context_dim, dtype=self.dtype, name="autoregressor")(z)
    return _readout(z, c, self.readout)


READOUTS = ("z", "context", "z_grid", "context_grid")


def _readout(z: jax.Array, c: jax.Array, readout: str) -> tuple[jax.Array, dict]:
  """The feature the probes read: the mean over every element of z or c, or ('_grid') all of them in order, which
  keeps where in the image (or when in the clip) each one is."""
  if readout not in READOUTS:
    raise ValueError(f"readout must be one of {', '.join(READOUTS)}, got {readout!r}")
  b = z.shape[0]
  features = {
    "z": z.mean(axis=(1, 2)),
    "context": c.mean(axis=(1, 2)),
    "z_grid": z.reshape(b, -1),
    "context_grid": c.reshape(b, -1),
  }[readout].astype(jnp.float32)
  return features, {"z": z, "context": c, "pre_logits": features}


class Predictor(nn.Module):
  """The K maps W_k: (B, G, T, H) contexts -> (B, G, T, K, D) predictions of the next K encodings."""

  steps: int
  dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, c: jax.Array) -> jax.Array:
    w = nn.DenseGeneral((self.steps, self.dim), use_bias=False, dtype=self.dtype, name="w")
    return w(c)
