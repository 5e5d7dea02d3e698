"""Flax linen models. Every module's `__call__(x, *, train)` returns `(output, aux)`, where aux names
intermediate features ('pre_logits', 'feature_map', ...) that probes and losses read by name."""

from collections.abc import Callable

import flax.linen as nn

from ssljax.models.cnn import PatchConv, SmallCNN, grid_average_pool
from ssljax.models.heads import EncoderWithHead, LinearClassifier, ProjectionHead
from ssljax.models.resnet import ResNet, ResNet18, ResNet34, ResNet50
from ssljax.models.vit import vit as build_vit  # aliased: binding `vit` here would shadow the ssljax.models.vit module

ENCODERS: dict[str, Callable[..., nn.Module]] = {
  "resnet18": ResNet18,
  "resnet34": ResNet34,
  "resnet50": ResNet50,
  "small_cnn": SmallCNN,
  "vit": build_vit,  # vit(size='B', patch_size=32, ...): CLIP's image tower
}


def get_encoder(name: str, **kwargs) -> nn.Module:
  """Builds the encoder registered under `name`, e.g. get_encoder('resnet18', stem='cifar')."""
  if name not in ENCODERS:
    raise ValueError(f"Unknown encoder {name!r}; known encoders: {', '.join(sorted(ENCODERS))}")
  return ENCODERS[name](**kwargs)


__all__ = [
  "ENCODERS",
  "EncoderWithHead",
  "LinearClassifier",
  "PatchConv",
  "ProjectionHead",
  "ResNet",
  "ResNet18",
  "ResNet34",
  "ResNet50",
  "SmallCNN",
  "get_encoder",
  "grid_average_pool",
]
