"""Heads that sit on an encoder's pooled features: projection MLPs and linear classifiers."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class ProjectionHead(nn.Module):
  """SimCLR's projection MLP: (Dense -> BN -> ReLU) x (num_layers - 1) -> Dense [-> BN].

  With `use_bn` and `last_bn` the output passes through a BatchNorm with no scale or bias, as in
  SimCLR v2 (Chen et al. 2020, "Big Self-Supervised Models are Strong Semi-Supervised Learners").
  Dense layers followed by BN have no bias (BN's own bias makes it redundant).

  Returns (z, {'hidden': h}) where h is the input to the last Dense (x itself when num_layers == 1).
  """

  hidden_dim: int = 2048
  out_dim: int = 128
  num_layers: int = 2
  use_bn: bool = True
  last_bn: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    if self.num_layers < 1:
      raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
    # No axis_name: under jit on mesh-sharded global arrays the statistics are global-batch ones.
    norm = lambda name, **kw: nn.BatchNorm(
      use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype, name=name, **kw
    )
    h = x
    for i in range(self.num_layers - 1):
      h = nn.Dense(self.hidden_dim, use_bias=not self.use_bn, dtype=self.dtype, name=f"dense{i + 1}")(h)
      if self.use_bn:
        h = norm(f"bn{i + 1}")(h)
      h = nn.relu(h)
    with_last_bn = self.use_bn and self.last_bn
    z = nn.Dense(self.out_dim, use_bias=not with_last_bn, dtype=self.dtype, name=f"dense{self.num_layers}")(h)
    if with_last_bn:
      z = norm(f"bn{self.num_layers}", use_scale=False, use_bias=False)(z)
    return z, {"hidden": h}


class EncoderWithHead(nn.Module):
  """An encoder and a head on its pooled features (SimCLR's and MoCo's network). Returns (head output, the
  encoder's aux), so probes still read the encoder's named features."""

  encoder: nn.Module
  head: nn.Module

  def __call__(self, x, *, train: bool):
    features, aux = self.encoder(x, train=train)
    z, _ = self.head(features, train=train)
    return z, aux


class LinearClassifier(nn.Module):
  """One Dense layer, for linear probes and fine-tuning heads. Returns (logits, {})."""

  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    del train  # Same signature as every other module.
    return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x), {}
