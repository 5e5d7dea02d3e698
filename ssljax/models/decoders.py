"""Decoders from an encoder's feature map back to pixels, the models that pair them with an encoder, and the
inpainting discriminator.

  ColorDecoder, Colorizer, SplitBrainEncoder  colorization and split-brain autoencoders
                                              (`ssljax.methods.colorization`)
  ContextDecoder, ContextEncoder, Discriminator  Context Encoders' inpainting (`ssljax.methods.inpainting`)

Every combined model keeps its encoder under the attribute `encoder`, so its parameters sit under
`params['encoder']` where the vision evals lift them out. The hidden layers are `ssljax.models.cnn.conv_bn_relu`,
the encoders' own conv-BN-ReLU, so `conv_impl` ('xla' or 'patches') means the same here as in SmallCNN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax.models.cnn import batch_norm, conv, conv_bn_relu


def _hidden_layer(decoder: nn.Module, x: jax.Array, width: int, name: str, train: bool) -> jax.Array:
  # Both decoders name a hidden layer's parts '<name>_conv' and '<name>_bn'.
  return conv_bn_relu(
    x,
    width,
    train=train,
    conv_impl=decoder.conv_impl,
    dtype=decoder.dtype,
    conv_name=f"{name}_conv",
    bn_name=f"{name}_bn",
  )


# ------------------------------------------------------------------------------------------------ colorization


class SplitBrainEncoder(nn.Module):
  """Two encoders side by side: `l` reads channel 0 (L), `ab` reads channels 1-2. Every named feature the two
  share is their concatenation (L half first), so probes and fine-tuning see one encoder; 'feature_map_l' and
  'feature_map_ab' keep the halves apart for the decoders."""

  l: nn.Module
  ab: nn.Module

  def __call__(self, x: jax.Array, *, train: bool):
    _, aux_l = self.l(x[..., :1], train=train)
    _, aux_ab = self.ab(x[..., 1:], train=train)
    aux = {k: jnp.concatenate([aux_l[k], aux_ab[k]], axis=-1) for k in aux_l if k in aux_ab}
    aux["feature_map_l"], aux["feature_map_ab"] = aux_l["feature_map"], aux_ab["feature_map"]
    return aux["pre_logits"], aux


class ColorDecoder(nn.Module):
  """A feature map (N, h, w, C) -> per-pixel outputs (N, h * 2^k, w * 2^k, out_channels), k = len(widths).

  First a 3x3 conv-BN-ReLU per `head_widths` at the feature map's resolution (Zhang et al.'s conv6-8: the
  colour-specific layers above the representation), then per `widths` a 2x bilinear upsampling and a 3x3
  conv-BN-ReLU, last a 1x1 convolution (logits over bins, or regressed values).
  """

  widths: Sequence[int]
  out_channels: int
  head_widths: Sequence[int] = ()
  conv_impl: str = "xla"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = jnp.asarray(x, self.dtype)
    for i, width in enumerate(self.head_widths):
      x = _hidden_layer(self, x, width, f"head{i + 1}", train)
    for i, width in enumerate(self.widths):
      n, h, w, c = x.shape
      x = _hidden_layer(self, jax.image.resize(x, (n, 2 * h, 2 * w, c), method="linear"), width, f"up{i + 1}", train)
    # Zero-initialized: training starts from grey (regression) or a uniform distribution (classification).
    return nn.Dense(self.out_channels, dtype=self.dtype, kernel_init=nn.initializers.zeros, name="out")(x).astype(
      jnp.float32
    )


class Colorizer(nn.Module):
  """Encoder (under 'encoder') and the decoder of ab from L (under 'ab_decoder'); split-brain adds the decoder of
  L from ab (under 'l_decoder'). Returns {'ab': ..., 'l': ...} predictions (logits or values)."""

  encoder: nn.Module
  ab_decoder: ColorDecoder
  l_decoder: ColorDecoder | None = None

  def __call__(self, x: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    _, aux = self.encoder(x, train=train)
    if self.l_decoder is None:
      return {"ab": self.ab_decoder(aux["feature_map"], train=train)}
    return {
      "ab": self.ab_decoder(aux["feature_map_l"], train=train),
      "l": self.l_decoder(aux["feature_map_ab"], train=train),
    }


# -------------------------------------------------------------------------------------------------- inpainting


class ContextDecoder(nn.Module):
  """The encoder's (N, h, w, C) feature map -> (N, S, S, out_channels) pixels.

  First the paper's channel-wise fully-connected layer (every channel's map mixed across all h*w positions, no
  parameters across channels, so a pixel deep inside the hole can draw on context anywhere) and a 1x1 convolution
  across channels; then per width a resize (bilinear, sizes growing geometrically from h to S) and a 3x3
  conv-BN-ReLU; last a 3x3 convolution to the image's channels.
  """

  widths: Sequence[int]
  image_size: int
  out_channels: int
  channel_fc: bool = True
  conv_impl: str = "xla"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = jnp.asarray(x, self.dtype)
    n, h, w, c = x.shape
    if self.channel_fc:
      init = nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=1, out_axis=2, batch_axis=0)
      kernel = self.param("channel_fc", init, (c, h * w, h * w), jnp.float32)
      x = jnp.einsum("npc,cpq->nqc", x.reshape(n, h * w, c), kernel.astype(self.dtype)).reshape(n, h, w, c)
      x = nn.Dense(c, use_bias=False, dtype=self.dtype, name="channel_mix")(x)
      x = nn.relu(batch_norm(train=train, dtype=self.dtype, name="channel_fc_bn")(x))
    for i, width in enumerate(self.widths):
      size = round(h * (self.image_size / h) ** ((i + 1) / len(self.widths)))
      x = jax.image.resize(x, (n, size, size, x.shape[-1]), method="linear")
      x = _hidden_layer(self, x, width, f"up{i + 1}", train)
    if x.shape[1] != self.image_size:  # no widths: straight from the feature map
      x = jax.image.resize(x, (n, self.image_size, self.image_size, x.shape[-1]), method="linear")
    # fan-in scaling: the He fan-out init of the hidden convs would start the pixels at a std of several units.
    return conv(
      self.conv_impl,
      self.out_channels,
      use_bias=True,
      dtype=self.dtype,
      kernel_init=nn.initializers.lecun_normal(),
      name="to_pixels",
    )(x)


class ContextEncoder(nn.Module):
  """Encoder (the config's, kept under 'encoder') and ContextDecoder (under 'decoder')."""

  encoder: nn.Module
  decoder: ContextDecoder

  def __call__(self, x, *, train: bool):
    _, aux = self.encoder(x, train=train)
    return self.decoder(aux["feature_map"], train=train).astype(jnp.float32)


class Discriminator(nn.Module):
  """Real or inpainted? Strided 3x3 conv-LeakyReLU stages, a global average and one logit. No BatchNorm: its
  statistics would mix real and inpainted images."""

  widths: Sequence[int] = (16, 32)
  conv_impl: str = "xla"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = jnp.asarray(x, self.dtype)
    for i, width in enumerate(self.widths):
      x = conv(self.conv_impl, width, strides=2, use_bias=True, dtype=self.dtype, name=f"conv{i + 1}")(x)
      x = nn.leaky_relu(x, 0.2)
    return nn.Dense(1, dtype=self.dtype, name="logit")(x.mean(axis=(1, 2)))[:, 0].astype(jnp.float32)
