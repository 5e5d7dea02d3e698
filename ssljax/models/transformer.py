"""The Transformer block shared by every model in ssljax, and BERT (Devlin et al. 2019) built on it, in Flax linen.

`TransformerBlock` is one module for all of them: fused-qkv self-attention and a GELU MLP, pre-LN (ViT/MAE in
vit.py) or post-LN (BERT), with its LayerNorm epsilon, kernel init and dropout rate as options, an optional
key-padding mask and a `causal` flag (a left-to-right text tower). Parameter names follow timm/MAE
(norm1, attn/{qkv, proj}, norm2, mlp/{fc1, fc2}) whatever the options, so an MAE checkpoint maps over by name.
`random_order` draws the random subsets of positions that MAE (patches to keep) and BERT's MLM (tokens to
predict) take.

The BERT encoder follows the original: token + segment + learned position embeddings, LayerNorm, then post-LN
blocks (self-attention and a GELU MLP, each followed by dropout, a residual add and LayerNorm; LayerNorm eps
1e-12, every kernel from a truncated normal of std 0.02), and a tanh pooler over the [CLS] position. Shapes
and parameter counts equal BERT's; a BERT checkpoint maps over with its query/key/value kernels (and biases)
concatenated into qkv, attention/output -> attn/proj, attention LayerNorm -> norm1,
intermediate/output -> mlp/fc1, fc2 and output LayerNorm -> norm2.

Mixed precision: matmuls run in `dtype` (bfloat16 on accelerators) while parameters stay float32,
and softmax and LayerNorm always compute in float32, where bfloat16's 8-bit mantissa loses too much.

As for every model in ssljax.models, `__call__(..., *, train)` returns `(output, aux)`; the encoder's
aux has 'tokens' (final hidden states), 'pooled' and 'pre_logits' (= pooled), which probes read by
name. `SelfAttention`, `MLP` and `TransformerBlock` are building blocks and return plain arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# BERT initialises every weight matrix and embedding from a normal with std 0.02, truncated at 2 std
# (TF's truncated_normal_initializer; JAX's does not rescale the std either).
bert_init = nn.initializers.truncated_normal(stddev=0.02)

# The published BERT family (Turc et al. 2019, "Well-Read Students Learn Better"; the
# google-research/bert README): layers L and hidden width H. Heads are H / 64, the MLP width is 4H.
BERT_SIZES: dict[str, dict[str, int]] = {
  name: dict(layers=layers, hidden=hidden, heads=hidden // 64, intermediate=4 * hidden)
  for name, (layers, hidden) in {
    "tiny": (2, 128),
    "mini": (4, 256),
    "small": (4, 512),
    "medium": (8, 512),
    "base": (12, 768),
  }.items()
}

_LN_EPS = 1e-12  # BERT's LayerNorm epsilon.


def _layer_norm(name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=_LN_EPS, dtype=jnp.float32, name=name)


def _dense(features: int, dtype: Any, name: str) -> nn.Dense:
  return nn.Dense(features, dtype=dtype, kernel_init=bert_init, name=name)


def _gelu(x: jax.Array) -> jax.Array:
  # The exact (erf) GELU, as in Hendrycks & Gimpel, HF's BERT and timm; the original TF BERT code used the
  # tanh approximation, which differs by < 1e-3.
  return nn.gelu(x, approximate=False)


def random_order(rng: jax.Array, shape: tuple[int, int], *, exclude: jax.Array | None = None) -> jax.Array:
  """Each row's positions in a uniformly random order, the `exclude`d ones last: the argsort of uniform noise.

  The first k entries of a row are then a uniformly random k-subset of its positions that are not excluded
  (all of them, followed by excluded ones, when it has fewer than k). MAE keeps the first L_keep patches of the
  order (and undoes it with its argsort); BERT's MLM predicts the first P ordinary tokens. Jittable; `shape`
  (batch, length) must be static.

  Args:
    rng: the PRNG key; one uniform draw of `shape` is all that is taken from it.
    shape: (batch, length).
    exclude: optional bool (batch, length), true at positions that must come last.

  Returns:
    (batch, length) int32, a permutation of 0..length-1 per row.
  """
  noise = jax.random.uniform(rng, shape)
  if exclude is not None:
    # The draws lie in [0, 1), so +inf sorts after all of them; the stable sort keeps excluded ones in order.
    noise = jnp.where(exclude, jnp.inf, noise)
  return jnp.argsort(noise, axis=-1).astype(jnp.int32)


def _allowed_keys(mask: jax.Array | None, length: int, causal: bool) -> jax.Array | None:
  """Which keys each query may attend to, broadcastable to scores (B, heads, T, T); None when all."""
  allowed = None
  if mask is not None:
    allowed = jnp.asarray(mask).astype(bool)[:, None, None, :]
  if causal:
    earlier = jnp.tril(jnp.ones((length, length), bool))[None, None]  # query i sees keys 0..i
    allowed = earlier if allowed is None else allowed & earlier
  return allowed


class SelfAttention(nn.Module):
  """Multi-head self-attention with a fused qkv projection (with bias), as timm's `Attention`.

  `__call__(x, mask=None, *, train)`: x (B, T, hidden); mask (B, T), true at real tokens, None for all real.
  Keys that the mask hides, and with `causal` the keys after each query, get exactly zero weight. Returns
  (B, T, hidden) after the output projection, before any residual dropout.

  Fused, not separate q/k/v: xavier_uniform's bound depends on the kernel's fan-out, and MAE draws the
  (H, 3H) qkv kernel as one matrix (BERT's truncated normal does not depend on the shape, so BERT's separate
  query/key/value kernels are its column blocks: kernel = concat([query, key, value], axis=1)).
  """

  hidden: int
  heads: int
  dropout: float = 0.0  # on the attention probabilities
  causal: bool = False
  kernel_init: Callable = nn.initializers.xavier_uniform()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None, *, train: bool) -> jax.Array:
    if self.hidden % self.heads:
      raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")
    b, t, _ = x.shape
    if mask is not None and mask.shape != (b, t):
      raise ValueError(f"mask must be (batch, length) = {(b, t)}, got shape {mask.shape}")
    head_dim = self.hidden // self.heads
    dense = lambda features, name: nn.Dense(features, dtype=self.dtype, kernel_init=self.kernel_init, name=name)
    qkv = dense(3 * self.hidden, "qkv")(x).reshape(b, t, 3, self.heads, head_dim)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    # Scale q before the product so bfloat16 scores stay small.
    q = q / jnp.sqrt(head_dim).astype(q.dtype)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32)
    allowed = _allowed_keys(mask, t, self.causal)
    if allowed is not None:
      # `where`, not an additive -1e9 bias: hidden keys get exp(min - max) = 0 exactly, and a row with
      # every key hidden comes out uniform rather than NaN.
      scores = jnp.where(allowed, scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1)
    weights = nn.Dropout(self.dropout, name="attn_drop")(weights, deterministic=not train)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(self.dtype), v).reshape(b, t, self.hidden)
    return dense(self.hidden, "proj")(out)


class MLP(nn.Module):
  """fc2(gelu(fc1(x))), timm's `Mlp` (BERT's intermediate and output dense layers)."""

  hidden: int
  mlp_dim: int
  kernel_init: Callable = nn.initializers.xavier_uniform()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dense = lambda features, name: nn.Dense(features, dtype=self.dtype, kernel_init=self.kernel_init, name=name)
    return dense(self.hidden, "fc2")(_gelu(dense(self.mlp_dim, "fc1")(x)))


class TransformerBlock(nn.Module):
  """The Transformer block of ViT/MAE, BERT and (causal) text towers: self-attention and a GELU MLP.

  pre_norm=True (ViT, MAE, GPT-2, CLIP): x = x + drop(attn(LN(x))); x = x + drop(mlp(LN(x))).
  pre_norm=False (BERT's post-LN): x = LN(x + drop(attn(x))); x = LN(x + drop(mlp(x))).
  `dropout` is applied to the attention probabilities and to each residual branch (BERT's
  attention_probs_dropout_prob and hidden_dropout_prob, which BERT sets equal).

  `__call__(x, mask=None, *, train)`: x (B, T, hidden) in `dtype`; mask (B, T), true at real tokens.
  Parameter names follow timm/MAE: norm1, attn/{qkv, proj}, norm2, mlp/{fc1, fc2}, whichever the norm
  position (post-LN's norm1 is BERT's attention LayerNorm, norm2 its output LayerNorm).

  Attributes:
    hidden, heads, mlp_dim: width, attention heads, MLP width.
    dropout: rate of the attention-probability and residual dropout (active when train is true).
    pre_norm: LayerNorm before each branch (True) or after each residual add (False).
    causal: each position attends only to itself and earlier ones (a left-to-right language model).
    ln_epsilon: the LayerNorms' epsilon (timm 1e-6, BERT 1e-12, PyTorch's default 1e-5).
    kernel_init: of every Dense kernel; biases start at zero.
    dtype: computation dtype; parameters, softmax and LayerNorm stay float32.
  """

  hidden: int
  heads: int
  mlp_dim: int
  dropout: float = 0.0
  pre_norm: bool = True
  causal: bool = False
  ln_epsilon: float = 1e-6
  kernel_init: Callable = nn.initializers.xavier_uniform()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None, *, train: bool) -> jax.Array:
    attn = SelfAttention(self.hidden, self.heads, self.dropout, self.causal, self.kernel_init, self.dtype, name="attn")
    mlp = MLP(self.hidden, self.mlp_dim, self.kernel_init, self.dtype, name="mlp")
    norm1, norm2 = (nn.LayerNorm(epsilon=self.ln_epsilon, dtype=jnp.float32, name=n) for n in ("norm1", "norm2"))
    drop1, drop2 = (nn.Dropout(self.dropout, deterministic=not train, name=n) for n in ("drop1", "drop2"))
    if self.pre_norm:
      x = x + drop1(attn(norm1(x).astype(self.dtype), mask, train=train))
      return x + drop2(mlp(norm2(x).astype(self.dtype)))
    x = norm1(x + drop1(attn(x, mask, train=train))).astype(self.dtype)
    return norm2(x + drop2(mlp(x))).astype(self.dtype)


class BertEncoder(nn.Module):
  """The BERT encoder and pooler. Build published sizes with `bert_encoder('base', vocab_size)`.

  `__call__(tokens, segments, mask, *, train)`: int tokens (B, T); segments (B, T) in
  [0, type_vocab), zeros when None; mask (B, T), nonzero at real tokens, all real when None.
  Padding must come after the real tokens for real positions to keep their position embeddings.

  Returns (hidden_states (B, T, H), aux) with aux 'tokens' (the same hidden states), 'pooled'
  (tanh(dense(h[:, 0])), BERT's pooler over [CLS]) and 'pre_logits' (= pooled).

  Written with `setup` so that `attend` can reuse the token embedding for the tied MLM output layer.
  """

  vocab_size: int
  hidden: int
  layers: int
  heads: int
  intermediate: int
  max_len: int = 512
  type_vocab: int = 2
  dropout: float = 0.1
  dtype: Any = jnp.float32

  def setup(self) -> None:
    embed = lambda num, name: nn.Embed(num, self.hidden, dtype=self.dtype, embedding_init=bert_init, name=name)
    self.token_embed = embed(self.vocab_size, "token_embed")
    self.segment_embed = embed(self.type_vocab, "segment_embed")
    self.position_embed = embed(self.max_len, "position_embed")
    self.embed_norm = _layer_norm("embed_norm")
    self.embed_dropout = nn.Dropout(self.dropout)
    self.blocks = [
      TransformerBlock(
        self.hidden,
        self.heads,
        self.intermediate,
        self.dropout,
        pre_norm=False,
        ln_epsilon=_LN_EPS,
        kernel_init=bert_init,
        dtype=self.dtype,
      )
      for _ in range(self.layers)
    ]
    self.pooler = _dense(self.hidden, self.dtype, "pooler")

  def __call__(
    self, tokens: jax.Array, segments: jax.Array | None = None, mask: jax.Array | None = None, *, train: bool
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    if tokens.ndim != 2:
      raise ValueError(f"tokens must be (batch, length), got shape {tokens.shape}")
    t = tokens.shape[1]
    if t > self.max_len:
      raise ValueError(f"sequence length {t} exceeds the model's max_len {self.max_len}")
    segments = jnp.zeros_like(tokens) if segments is None else segments
    mask = jnp.ones(tokens.shape, bool) if mask is None else jnp.asarray(mask).astype(bool)

    x = self.token_embed(tokens) + self.segment_embed(segments) + self.position_embed(jnp.arange(t))[None]
    x = self.embed_norm(x).astype(self.dtype)
    x = self.embed_dropout(x, deterministic=not train)
    for block in self.blocks:
      x = block(x, mask, train=train)
    pooled = jnp.tanh(self.pooler(x[:, 0]))
    return x, {"tokens": x, "pooled": pooled, "pre_logits": pooled}

  def attend(self, x: jax.Array) -> jax.Array:
    """x @ E^T with E the token-embedding table: the tied MLM output projection."""
    return self.token_embed.attend(x)


def bert_encoder(size: str, vocab_size: int, **overrides: Any) -> BertEncoder:
  """A BertEncoder of a published size ('tiny', 'mini', 'small', 'medium', 'base').

  `overrides` replace any BertEncoder field, e.g. dtype=jnp.bfloat16 or max_len=128.
  """
  if size not in BERT_SIZES:
    raise ValueError(f"Unknown BERT size {size!r}; known sizes: {', '.join(BERT_SIZES)}")
  return BertEncoder(vocab_size=vocab_size, **{**BERT_SIZES[size], **overrides})


class BertForPretraining(nn.Module):
  """BERT with its pre-training heads: masked-LM and next-sentence prediction.

  `__call__(tokens, segments, mask, masked_positions, *, train)`, masked_positions (B, P) int
  indices into T, returns ((mlm_logits (B, P, V), nsp_logits (B, 2)), aux) with the encoder's aux.
  The MLM head (dense + GELU + LayerNorm, then x @ E^T + b with E the token embedding) runs only at
  the P masked positions, so its vocabulary projection costs P, not T, rows per sequence. Logits
  are float32 whatever the compute dtype, ready for a softmax cross-entropy.
  """

  encoder: BertEncoder

  @nn.compact
  def __call__(
    self,
    tokens: jax.Array,
    segments: jax.Array | None,
    mask: jax.Array | None,
    masked_positions: jax.Array,
    *,
    train: bool,
  ) -> tuple[tuple[jax.Array, jax.Array], dict[str, jax.Array]]:
    if masked_positions.ndim != 2:
      raise ValueError(f"masked_positions must be (batch, P), got shape {masked_positions.shape}")
    enc = self.encoder
    h, aux = enc(tokens, segments, mask, train=train)
    h = jnp.take_along_axis(h, masked_positions[..., None].astype(jnp.int32), axis=1)
    h = _gelu(_dense(enc.hidden, enc.dtype, "mlm_transform")(h))
    h = _layer_norm("mlm_norm")(h).astype(enc.dtype)
    bias = self.param("mlm_bias", nn.initializers.zeros, (enc.vocab_size,), jnp.float32)
    mlm_logits = enc.attend(h).astype(jnp.float32) + bias
    nsp_logits = _dense(2, enc.dtype, "nsp")(aux["pooled"]).astype(jnp.float32)
    return (mlm_logits, nsp_logits), aux


class BertClassifier(nn.Module):
  """Fine-tuning classifier: encoder, dropout on the pooled [CLS] vector, then one Dense layer.

  `__call__(tokens, segments, mask, *, train)` returns (logits (B, num_classes), aux), aux the
  encoder's.
  """

  num_classes: int
  encoder: BertEncoder
  dropout: float = 0.1

  @nn.compact
  def __call__(
    self, tokens: jax.Array, segments: jax.Array | None = None, mask: jax.Array | None = None, *, train: bool
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    _, aux = self.encoder(tokens, segments, mask, train=train)
    x = nn.Dropout(self.dropout)(aux["pooled"], deterministic=not train)
    return _dense(self.num_classes, self.encoder.dtype, "head")(x), aux
