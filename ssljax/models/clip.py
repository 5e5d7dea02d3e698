"""CLIP's two towers (Radford et al. 2021): any image encoder of `ssljax.models` and a Transformer text encoder,
each projected into one shared space, and the learnable temperature."""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax.models.transformer import TransformerBlock

PAD_ID = 0  # ssljax.data.wordpiece's [PAD]


class TextTower(nn.Module):
  """Token and learned position embeddings, pre-LN Transformer blocks (the block ViT and BERT use), a final
  LayerNorm. The text's feature is the state of its last real token ([SEP]) when `causal`, as CLIP's end-of-text
  token, or of its first ([CLS]) when bidirectional.

  `__call__(tokens, *, train)`: (B, T) int ids, [PAD] (0) after the text. Returns (feature (B, width), aux with
  'tokens' (B, T, width) and 'pre_logits')."""

  vocab_size: int
  max_len: int
  width: int
  depth: int
  heads: int
  causal: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens: jax.Array, *, train: bool) -> tuple[jax.Array, dict]:
    b, t = tokens.shape
    if t > self.max_len:
      raise ValueError(f"captions of {t} tokens exceed the text tower's max_len {self.max_len}")
    mask = tokens != PAD_ID
    x = nn.Embed(self.vocab_size, self.width, embedding_init=nn.initializers.normal(0.02), name="token_embed")(tokens)
    positions = self.param("position_embed", nn.initializers.normal(0.01), (self.max_len, self.width))
    x = (x + positions[None, :t]).astype(self.dtype)
    for i in range(self.depth):
      x = TransformerBlock(
        self.width, self.heads, 4 * self.width, causal=self.causal, dtype=self.dtype, name=f"block{i}"
      )(x, mask, train=train)
    x = nn.LayerNorm(dtype=jnp.float32, name="norm")(x)
    last = jnp.maximum(mask.sum(axis=1) - 1, 0) if self.causal else jnp.zeros((b,), jnp.int32)
    feature = x[jnp.arange(b), last]
    return feature, {"tokens": x, "pre_logits": feature}


class CLIPModel(nn.Module):
  """The image encoder (its params at 'encoder', so the image evals and `init_from` find it), the text tower, their
  linear projections into the `embed_dim` shared space, and `logit_scale`, the log inverse temperature.

  `__call__(images, tokens, *, train)` -> (image embeddings, text embeddings, logit scale clipped at log 100 as in
  the paper, image encoder aux); the embeddings are not normalized (the loss does it)."""

  encoder: nn.Module
  text: TextTower
  embed_dim: int
  init_temperature: float = 0.07
  max_logit_scale: float = 100.0

  def setup(self):
    self.image_projection = nn.Dense(self.embed_dim, use_bias=False, name="image_projection")
    self.text_projection = nn.Dense(self.embed_dim, use_bias=False, name="text_projection")
    self.logit_scale = self.param("logit_scale", nn.initializers.constant(math.log(1 / self.init_temperature)), ())

  def scale(self) -> jax.Array:
    # A clip in the forward pass: beyond log 100 the gradient is zero, so the scale stops there.
    return jnp.minimum(self.logit_scale, math.log(self.max_logit_scale))

  def encode_image(self, images: jax.Array, *, train: bool) -> tuple[jax.Array, dict]:
    features, aux = self.encoder(images, train=train)
    return self.image_projection(features.astype(jnp.float32)), aux

  def encode_text(self, tokens: jax.Array, *, train: bool) -> jax.Array:
    feature, _ = self.text(tokens, train=train)
    return self.text_projection(feature)

  def __call__(self, images: jax.Array, tokens: jax.Array, *, train: bool):
    image_embeddings, aux = self.encode_image(images, train=train)
    return image_embeddings, self.encode_text(tokens, train=train), self.scale(), aux
