"""Neural language models that predict the next token from the previous ones.

`WindowLM` is Bengio et al.'s (2003) fixed-window model; `RecurrentLM` a GRU (Cho et al. 2014). Both read a
stream where [CLS] opens each paragraph and [SEP] closes it, never look across a [CLS] (a paragraph is
predicted from its own tokens only, as the n-gram baseline is), and take a `carry` so that text longer than
one chunk is scored exactly: the window model carries the last `context - 1` tokens, the GRU its hidden state.
Output logits are tied to the input embeddings (Press & Wolf 2017), which also makes the softmax, the
dominant cost, `embed_dim` wide instead of `hidden_dim`.

`__call__(tokens, carry, *, train)` returns `(logits, aux)`: aux['carry'] continues the stream,
aux['features'] are the last hidden layer's (B, T, hidden_dim) activations.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

# 1/sqrt(dim), flax's default: with no normalization layer, BERT's 0.02 keeps the logits near 0 for hundreds
# of steps.
_init = nn.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)


class _TiedOutput(nn.Module):
  """hidden -> embed_dim -> logits against the embedding table, plus a bias per token."""

  embed: nn.Module
  embed_dim: int
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, h):
    z = nn.Dense(self.embed_dim, dtype=self.dtype, name="to_embedding")(h)
    bias = self.param("output_bias", nn.initializers.zeros, (self.embed.num_embeddings,), jnp.float32)
    return self.embed.attend(z).astype(jnp.float32) + bias


class _NextTokenLM(nn.Module):
  """What both language models are configured by: the vocabulary and tied embedding, the hidden width, the ids
  that pad and open a paragraph, dropout, and the compute dtype."""

  vocab_size: int
  embed_dim: int = 128
  hidden_dim: int = 512
  pad_id: int = 0
  cls_id: int = 2
  dropout: float = 0.0
  dtype: jnp.dtype = jnp.float32

  def _embed(self) -> nn.Embed:
    return nn.Embed(self.vocab_size, self.embed_dim, embedding_init=_init, dtype=self.dtype, name="embed")


class WindowLM(_NextTokenLM):
  context: int = 8

  def initial_carry(self, batch: int) -> jax.Array:
    return jnp.full((batch, self.context - 1), self.pad_id, jnp.int32)

  @nn.compact
  def __call__(self, tokens, carry=None, *, train: bool):
    b, t = tokens.shape
    carry = self.initial_carry(b) if carry is None else carry
    c = self.context - 1
    z = jnp.concatenate([carry, tokens], axis=1)  # (B, context - 1 + T)
    # Token j is context for position i if no [CLS] lies in (j, i]: paragraphs are predicted on their own.
    paragraph = jnp.cumsum(z == self.cls_id, axis=1)
    embed = self._embed()
    windows = []
    for k in range(self.context):  # position i reads tokens i, i - 1, ..., i - context + 1
      ids = z[:, c - k : c - k + t]
      same = paragraph[:, c - k : c - k + t] == paragraph[:, c:]
      windows.append(embed(jnp.where(same, ids, self.pad_id)))
    x = jnp.concatenate(windows, axis=-1)  # (B, T, context * E)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    h = jnp.tanh(nn.Dense(self.hidden_dim, dtype=self.dtype, name="hidden")(x))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    logits = _TiedOutput(embed, self.embed_dim, self.dtype, name="output")(h)
    return logits, {"carry": z[:, z.shape[1] - c :], "features": h}


class _GRUScan(nn.Module):
  """The recurrent half of a GRU layer; the input projections of all steps come precomputed (one matmul)."""

  hidden_dim: int
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, h, inputs):
    x_proj, start = inputs  # (B, 3H), (B,)
    h = jnp.where(start[:, None], 0.0, h)
    hh = nn.Dense(
      3 * self.hidden_dim, use_bias=False, dtype=self.dtype, name="recurrent", kernel_init=nn.initializers.orthogonal()
    )(h).astype(jnp.float32)
    xr, xz, xn = jnp.split(x_proj, 3, axis=-1)
    hr, hz, hn = jnp.split(hh, 3, axis=-1)
    r = jax.nn.sigmoid(xr + hr)
    u = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    h = (1.0 - u) * n + u * h
    return h, h


class RecurrentLM(_NextTokenLM):
  layers: int = 1

  def initial_carry(self, batch: int) -> jax.Array:
    return jnp.zeros((self.layers, batch, self.hidden_dim), jnp.float32)

  @nn.compact
  def __call__(self, tokens, carry=None, *, train: bool):
    b, _ = tokens.shape
    carry = self.initial_carry(b) if carry is None else carry
    start = tokens == self.cls_id  # a paragraph starts: forget the previous one
    embed = self._embed()
    x = nn.Dropout(self.dropout, deterministic=not train)(embed(tokens))
    scan = nn.scan(_GRUScan, variable_broadcast="params", split_rngs={"params": False}, in_axes=1, out_axes=1)
    new_carry = []
    for layer in range(self.layers):
      x_proj = nn.Dense(3 * self.hidden_dim, dtype=self.dtype, name=f"input_{layer}")(x).astype(jnp.float32)
      h, x = scan(self.hidden_dim, self.dtype, name=f"gru_{layer}")(carry[layer], (x_proj, start))
      new_carry.append(h)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    logits = _TiedOutput(embed, self.embed_dim, self.dtype, name="output")(x)
    return logits, {"carry": jnp.stack(new_carry), "features": x}
