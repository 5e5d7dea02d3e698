"""BERT (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers"), in Flax linen.

The encoder follows the original: token + segment + learned position embeddings, LayerNorm, then
post-LN Transformer blocks (self-attention and a GELU MLP, each followed by dropout, a residual add
and LayerNorm), and a tanh pooler over the [CLS] position. Parameter names and shapes mirror BERT's
checkpoint layout (separate query/key/value/output (H, H) kernels), so parameter counts equal the
published ones and checkpoints map over one-to-one.

Mixed precision: matmuls run in `dtype` (bfloat16 on accelerators) while parameters stay float32,
and softmax and LayerNorm always compute in float32, where bfloat16's 8-bit mantissa loses too much.

As for every model in ssljax.models, `__call__(..., *, train)` returns `(output, aux)`; the encoder's
aux has 'tokens' (final hidden states), 'pooled' and 'pre_logits' (= pooled), which probes read by
name. `MultiHeadSelfAttention` and `TransformerBlock` are building blocks and return plain arrays.
"""

from __future__ import annotations

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
  # The exact (erf) GELU, as in Hendrycks & Gimpel and HF's BERT; the original TF code used the tanh
  # approximation, which differs by < 1e-3.
  return nn.gelu(x, approximate=False)


class MultiHeadSelfAttention(nn.Module):
  """Multi-head self-attention in which masked (padding) keys get exactly zero weight.

  Takes x (B, T, H) and mask (B, T), true at real tokens; returns (B, T, H) after the output
  projection, before dropout and the residual add.
  """

  hidden: int
  heads: int
  dropout: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, *, train: bool) -> jax.Array:
    if self.hidden % self.heads:
      raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")
    b, t, _ = x.shape
    head_dim = self.hidden // self.heads

    def split(y: jax.Array) -> jax.Array:
      return y.reshape(b, t, self.heads, head_dim)

    q = split(_dense(self.hidden, self.dtype, "query")(x))
    k = split(_dense(self.hidden, self.dtype, "key")(x))
    v = split(_dense(self.hidden, self.dtype, "value")(x))
    # Scale q before the product so bfloat16 scores stay small.
    q = q / jnp.sqrt(head_dim).astype(q.dtype)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32)
    # `where`, not an additive -1e9 bias: masked keys get exp(min - max) = 0 exactly, and a row with
    # every key masked comes out uniform rather than NaN.
    scores = jnp.where(mask[:, None, None, :], scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1)
    weights = nn.Dropout(self.dropout, name="attention_dropout")(weights, deterministic=not train)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(self.dtype), v).reshape(b, t, self.hidden)
    return _dense(self.hidden, self.dtype, "output")(out)


class TransformerBlock(nn.Module):
  """BERT's post-LN block: x = LN(x + drop(attn(x))); x = LN(x + drop(W2 gelu(W1 x)))."""

  hidden: int
  heads: int
  intermediate: int
  dropout: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, *, train: bool) -> jax.Array:
    drop = lambda y: nn.Dropout(self.dropout)(y, deterministic=not train)
    attn = MultiHeadSelfAttention(self.hidden, self.heads, self.dropout, self.dtype, name="attention")(
      x, mask, train=train
    )
    x = _layer_norm("attention_norm")(x + drop(attn)).astype(self.dtype)
    y = _gelu(_dense(self.intermediate, self.dtype, "intermediate")(x))
    y = _dense(self.hidden, self.dtype, "output")(y)
    return _layer_norm("output_norm")(x + drop(y)).astype(self.dtype)


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
      TransformerBlock(self.hidden, self.heads, self.intermediate, self.dropout, self.dtype) for _ in range(self.layers)
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
