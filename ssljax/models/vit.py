"""Vision Transformer (Dosovitskiy et al. 2021) and the masked autoencoder (He et al. 2021), in Flax linen.

The encoder is the pre-LN ViT that MAE trains (timm's `VisionTransformer` as MAE's code builds it): patch
embedding, a [CLS] token, fixed 2-D sin-cos position embeddings, blocks x = x + attn(LN(x)),
x = x + mlp(LN(x)) with LayerNorm eps 1e-6, a fused qkv projection with bias and a GELU MLP, then a
final LayerNorm. The blocks are transformer.py's `TransformerBlock` (the one BERT uses post-LN), here pre-LN,
unmasked, without dropout and with MAE's xavier init.

Parameter names follow timm/MAE (patch_embed, cls_token, blocks_i/{norm1, attn/{qkv, proj}, norm2,
mlp/{fc1, fc2}}, norm; decoder_embed, mask_token, decoder_blocks_i, decoder_norm, decoder_pred), so an
MAE checkpoint maps over by name; the position embeddings are not parameters (they are recomputed from
the grid), so the count is timm's less its pos_embed.

Masking happens outside the model: `random_masking(rng, ...)` draws keep/restore indices (keyed by the
caller, inside its jitted step), and `ViT(..., keep_idx=...)` / `MAE(images, keep_idx, restore_idx)`
take them. The model stays deterministic given its inputs, which keeps tests and resumption exact.

Mixed precision as in transformer.py: matmuls in `dtype`, parameters float32, softmax and LayerNorm in
float32. No dropout or drop-path: MAE pre-trains without them; fine-tuning recipes that use drop-path
need it added here.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssljax.models.transformer import TransformerBlock, random_order

# MAE's `initialize_weights`: xavier_uniform for every Linear (the patch projection too, as a Linear
# over the flattened patch), zero biases, normal(0.02) for the cls and mask tokens.
dense_init = nn.initializers.xavier_uniform()
token_init = nn.initializers.normal(stddev=0.02)

# The published ViT family (Dosovitskiy et al. 2021, Table 1; Ti and S from Touvron et al. 2021, DeiT;
# H/14 as MAE's): hidden width, depth, heads. The MLP is 4x wide throughout.
VIT_SIZES: dict[str, dict[str, int]] = {
  name: dict(hidden=hidden, depth=depth, heads=heads, mlp_dim=4 * hidden)
  for name, (hidden, depth, heads) in {
    "Ti": (192, 12, 3),
    "S": (384, 12, 6),
    "B": (768, 12, 12),
    "L": (1024, 24, 16),
    "H": (1280, 32, 16),
  }.items()
}

_LN_EPS = 1e-6  # timm's ViT (and so MAE's) LayerNorm epsilon.


def _layer_norm(name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=_LN_EPS, dtype=jnp.float32, name=name)


def _dense(features: int, dtype: Any, name: str) -> nn.Dense:
  return nn.Dense(features, dtype=dtype, kernel_init=dense_init, bias_init=nn.initializers.zeros, name=name)


def _block(hidden: int, heads: int, mlp_dim: int, dtype: Any, name: str) -> TransformerBlock:
  # timm's pre-LN Block without dropout, initialized as MAE does.
  return TransformerBlock(hidden, heads, mlp_dim, ln_epsilon=_LN_EPS, kernel_init=dense_init, dtype=dtype, name=name)


def patchify(images: jax.Array, patch: int) -> jax.Array:
  """(N, H, W, C) images -> (N, L, patch*patch*C) patches, L = (H/patch)(W/patch).

  Patches in row-major order over the grid; within a patch pixels in (py, px, c) order, as MAE's
  `patchify`, so `norm_pix` targets and reconstructions line up with its code.
  """
  if images.ndim != 4:
    raise ValueError(f"images must be (N, H, W, C), got shape {images.shape}")
  n, h, w, c = images.shape
  if h % patch or w % patch:
    raise ValueError(f"image size {h}x{w} is not divisible by the patch size {patch}")
  gh, gw = h // patch, w // patch
  x = images.reshape(n, gh, patch, gw, patch, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, gh * gw, patch * patch * c)


def unpatchify(patches: jax.Array, patch: int, channels: int, grid_hw: tuple[int, int]) -> jax.Array:
  """The inverse of `patchify`: (N, gh*gw, patch*patch*channels) -> (N, gh*patch, gw*patch, channels)."""
  gh, gw = grid_hw
  n, length, dim = patches.shape
  if length != gh * gw or dim != patch * patch * channels:
    raise ValueError(
      f"patches of shape {patches.shape} do not fit a {gh}x{gw} grid of {patch}x{patch}x{channels} patches"
    )
  x = patches.reshape(n, gh, gw, patch, patch, channels).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, gh * patch, gw * patch, channels)


def _sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
  omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2))
  out = np.outer(pos.reshape(-1), omega)
  return np.concatenate([np.sin(out), np.cos(out)], axis=1)


@functools.lru_cache(maxsize=32)
def sincos_pos_embed_2d(dim: int, grid_h: int, grid_w: int) -> np.ndarray:
  """MAE's fixed 2-D sin-cos position embedding, (grid_h*grid_w, dim) float32, row-major positions.

  The first dim/2 channels encode the column (w) coordinate, the rest the row, each as
  [sin(pos * omega), cos(pos * omega)] with omega = 10000^(-k / (dim/4)), exactly as MAE's
  `get_2d_sincos_pos_embed` (whose meshgrid puts w first). Computed in float64 NumPy at trace time and
  cached; it enters the jitted program as a constant. Returned read-only, since it is shared.
  """
  if dim % 4:
    raise ValueError(f"sin-cos position embedding needs dim divisible by 4, got {dim}")
  rows, cols = np.meshgrid(np.arange(grid_h, dtype=np.float64), np.arange(grid_w, dtype=np.float64), indexing="ij")
  emb = np.concatenate([_sincos_1d(dim // 2, cols), _sincos_1d(dim // 2, rows)], axis=1)
  emb = emb.astype(np.float32)
  emb.flags.writeable = False
  return emb


def random_masking(
  rng: jax.Array, batch: int, num_patches: int, mask_ratio: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """MAE's per-example random masking: keep a random L_keep of the L patches of each example.

  Each row's patches are shuffled by the argsort of uniform noise (`transformer.random_order`); the first
  L_keep of the shuffle are kept, L_keep = max(1, int(L * (1 - mask_ratio))) (a static shape). Jittable;
  `mask_ratio`, `batch` and `num_patches` must be Python numbers since they fix the shapes.

  Returns:
    keep_idx: (batch, L_keep) int32 indices of the kept patches, in shuffled (not sorted) order, as MAE.
    mask: (batch, L) float32, 1 at masked (removed) patches, 0 at kept ones.
    restore_idx: (batch, L) int32, the inverse shuffle: concat(kept, masked)[restore_idx] puts every
      patch back at its grid position.
  """
  if not 0.0 < mask_ratio < 1.0:
    raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
  keep = max(1, int(num_patches * (1 - mask_ratio)))
  shuffle = random_order(rng, (batch, num_patches))
  restore_idx = jnp.argsort(shuffle, axis=1).astype(jnp.int32)
  # Position j of the shuffle is masked iff j >= keep; restore_idx maps that back to grid order.
  mask = (restore_idx >= keep).astype(jnp.float32)
  return shuffle[:, :keep], mask, restore_idx


def _gather_tokens(x: jax.Array, idx: jax.Array) -> jax.Array:
  """x[b, idx[b]] for (N, L, D) x and (N, K) idx."""
  return jnp.take_along_axis(x, idx.astype(jnp.int32)[..., None], axis=1)


class ViT(nn.Module):
  """The ViT encoder. Build published sizes with `vit('B', 16)`.

  `__call__(images, *, train, keep_idx=None)`: float images (N, H, W, C), already normalized; H and W
  multiples of patch_size (any such size: position embeddings are computed for the grid). With
  keep_idx (N, L_keep) int, only those patches, gathered after their position embeddings are added,
  go through the blocks, as MAE's encoder.

  Returns (pooled (N, hidden), aux) with aux 'pre_logits' (= pooled) and 'tokens' (N, 1 + L or
  1 + L_keep, hidden), the final-LayerNorm output with [CLS] first. pool='cls' reads the [CLS] token;
  'mean' averages the patch tokens after the final LayerNorm (big_vision's 'gap'; MAE's fine-tuning
  global pool normalizes after the mean instead, with its own fc_norm).

  The patch embedding is a Dense on patchified pixels: the same function and parameter count as the
  stride-p convolution (kernel.reshape(p, p, C, hidden) is the conv kernel), and a plain matmul, which
  XLA runs much faster than a convolution on CPU.

  Attributes:
    patch_size: side of the square patches.
    hidden, depth, heads: width, number of blocks, attention heads.
    mlp_dim: MLP width; None means 4 * hidden.
    dtype: computation dtype; parameters stay float32.
    pool: 'cls' or 'mean'.
  """

  patch_size: int
  hidden: int
  depth: int
  heads: int
  mlp_dim: int | None = None
  dtype: Any = jnp.float32
  pool: str = "cls"

  @nn.compact
  def __call__(
    self, images: jax.Array, *, train: bool, keep_idx: jax.Array | None = None
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    if self.pool not in ("cls", "mean"):
      raise ValueError(f"pool must be 'cls' or 'mean', got {self.pool!r}")
    n, h, w, _ = images.shape
    p = self.patch_size
    x = _dense(self.hidden, self.dtype, "patch_embed")(patchify(jnp.asarray(images, self.dtype), p))
    x = x + jnp.asarray(sincos_pos_embed_2d(self.hidden, h // p, w // p), self.dtype)[None]
    if keep_idx is not None:
      if keep_idx.ndim != 2 or keep_idx.shape[0] != n:
        raise ValueError(f"keep_idx must be (batch={n}, L_keep), got shape {keep_idx.shape}")
      x = _gather_tokens(x, keep_idx)
    # The [CLS] token's position embedding is zero in MAE, so it gets none.
    cls = self.param("cls_token", token_init, (1, 1, self.hidden), jnp.float32)
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (n, 1, self.hidden)), x], axis=1)
    mlp_dim = self.mlp_dim or 4 * self.hidden
    for i in range(self.depth):
      x = _block(self.hidden, self.heads, mlp_dim, self.dtype, f"blocks_{i}")(x, train=train)
    x = _layer_norm("norm")(x).astype(self.dtype)
    pooled = x[:, 0] if self.pool == "cls" else x[:, 1:].mean(axis=1)
    return pooled, {"pre_logits": pooled, "tokens": x}


def vit(size: str, patch_size: int, **overrides: Any) -> ViT:
  """A ViT of a published size ('Ti', 'S', 'B', 'L', 'H') with square patches of `patch_size`.

  `overrides` replace any ViT field, e.g. dtype=jnp.bfloat16 or pool='mean'.
  """
  if size not in VIT_SIZES:
    raise ValueError(f"Unknown ViT size {size!r}; known sizes: {', '.join(VIT_SIZES)}")
  return ViT(patch_size=patch_size, **{**VIT_SIZES[size], **overrides})


class MAE(nn.Module):
  """Masked autoencoder: the ViT encoder on the visible patches, a light decoder over all of them.

  `__call__(images, keep_idx, restore_idx, *, train)` with keep_idx (N, L_keep) and restore_idx (N, L)
  from `random_masking` (the caller keys it; its mask is the loss weight for `losses.mae_recon`).

  The decoder embeds the encoder's tokens to decoder_hidden, appends one learned mask token per removed
  patch, unshuffles with restore_idx, adds fixed sin-cos position embeddings, runs pre-LN blocks and a
  LayerNorm, and predicts each patch's pixels with a Dense; the [CLS] position is dropped.

  Returns (pred (N, L, p*p*C) float32 in `patchify` order, aux): the encoder's aux ('pre_logits',
  'tokens' over the visible patches) plus 'decoder_tokens' (N, 1 + L, decoder_hidden).

  MAE's ViT-B/L/H decoder is the default: 512 wide, 8 deep, 16 heads, MLP 4x.
  """

  encoder: ViT
  decoder_hidden: int = 512
  decoder_depth: int = 8
  decoder_heads: int = 16
  decoder_mlp_dim: int | None = None

  @nn.compact
  def __call__(
    self, images: jax.Array, keep_idx: jax.Array, restore_idx: jax.Array, *, train: bool
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    enc = self.encoder
    n, h, w, c = images.shape
    p = enc.patch_size
    gh, gw = h // p, w // p
    if restore_idx.shape != (n, gh * gw):
      raise ValueError(
        f"restore_idx must be (batch, L) = {(n, gh * gw)} for images {images.shape} "
        f"and patch {p}, got shape {restore_idx.shape}"
      )
    _, aux = enc(images, train=train, keep_idx=keep_idx)
    d = self.decoder_hidden
    x = _dense(d, enc.dtype, "decoder_embed")(aux["tokens"])
    mask_token = self.param("mask_token", token_init, (1, 1, d), jnp.float32)
    removed = gh * gw - keep_idx.shape[1]
    patches = jnp.concatenate([x[:, 1:], jnp.broadcast_to(mask_token.astype(x.dtype), (n, removed, d))], axis=1)
    patches = _gather_tokens(patches, restore_idx)
    patches = patches + jnp.asarray(sincos_pos_embed_2d(d, gh, gw), x.dtype)[None]
    x = jnp.concatenate([x[:, :1], patches], axis=1)
    mlp_dim = self.decoder_mlp_dim or 4 * d
    for i in range(self.decoder_depth):
      x = _block(d, self.decoder_heads, mlp_dim, enc.dtype, f"decoder_blocks_{i}")(x, train=train)
    x = _layer_norm("decoder_norm")(x).astype(enc.dtype)
    pred = _dense(p * p * c, enc.dtype, "decoder_pred")(x[:, 1:]).astype(jnp.float32)
    return pred, {**aux, "decoder_tokens": x}
