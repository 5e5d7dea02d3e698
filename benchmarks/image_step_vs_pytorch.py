"""The train step of every image method's `cpu` preset, and of ResNet-18 on CIFAR-sized images, ours against a
PyTorch model of the same shapes started from the same weights, on CPU, in one run; the ratios come last.

  python benchmarks/image_step_vs_pytorch.py [--settings simclr resnet18 ...] [--steps 20] [--warmup 3]
      [--threads 2] [--batch N] [--lr 0.01]

Settings (the config each one builds; `--batch` overrides every batch size, for quick checks only):
  simclr             configs/simclr.py:cpu: SmallCNN (16, 32, 64) + projection head 256-64 on 2 x 256 views of
                     28x28x1, NT-Xent at the preset's temperature
  resnet18           configs/simclr.py:cifar10 at batch 128: ResNet-18 (CIFAR stem) + head 2048-128 on 2 x 128
                     views of 32x32x3, NT-Xent
  rotation           configs/rotation.py:cpu: 128 images at all 4 rotations, Dense(4), cross-entropy
  jigsaw             configs/jigsaw.py:cpu: 128 puzzles of nine 7x7 tiles, 100 permutations
  relative_position  configs/relative_position.py:cpu: 128 x 9 tiles, all 8 (centre, neighbour) pairs
  inpainting         configs/inpainting.py:cpu: SmallCNN + channel-wise FC decoder, masked L2 on region holes
  colorization       configs/colorization.py:cpu: L -> ab regression (28x28x3 inputs), decoder at 14x14
Not covered here: MAE, MoCo and CLIP have their own side-by-sides (benchmarks/mae_vs_pytorch.py,
moco_vs_pytorch.py, clip_vs_open_clip.py); CPC has no common PyTorch implementation to stand beside.

What is timed, on both sides: forward in training mode (BatchNorm on batch statistics, its running statistics
updated), the loss, backward and an SGD update with momentum 0.9 (optax.sgd vs torch.optim.SGD, no weight decay),
float32. Augmentation is not: our process makes one augmented batch once, with the method's own functions
(SimCLR's `train_views`, rotation's `rotate_all`, jigsaw's `puzzles`, ...), from fixed random images, and both
sides train on that same batch every step.

Ours is the method itself: `method.init(config, ...)` and `method.loss_fn`, with the augmentation functions the
loss calls swapped, while the step is traced, for ones that hand back the fixed batch; so the step follows any
change to ssljax's models and losses, and a loss that stops calling a swapped function is an error rather than a
silently timed augmentation. One jitted step, params, BatchNorm state and optimizer state donated.

The peer is what a PyTorch user writes for the same network (Conv2d, BatchNorm momentum 0.1 = flax's 0.9, eps
1e-5, F.cross_entropy, ...), eager, its modules named after ssljax's parameter tree. Our initial parameters and
BatchNorm statistics reach it through an .npz file (conv kernels HWIO -> OIHW, Dense (in, out) -> (out, in),
BatchNorm scale -> weight), every tensor accounted for both ways, with the fixed batch (NHWC -> NCHW, once,
outside the step). It runs twice: in torch's default contiguous layout and in channels_last.

The check: the step-0 loss of each side (same weights, same batch) must agree within 1e-5, absolute for losses up
to 1 and relative above (the line says which); otherwise the script ends non-zero with one line. The step-1
loss, after one update, is printed as well, for the gradients and the optimizer; it matters for colorization,
whose output layer starts at zero, so that its step-0 loss does not depend on the network. It agrees less
tightly, and that is not a mismatch: a ReLU input within rounding of zero can land on either side of it in the
two frameworks, and the gradient of everything below it moves with it (at batch 8: SimCLR 1.5e-5, the others
under 1e-6; ResNet-18 at batch 4: 6e-4; in SimCLR and ResNet-18 the gradients were equal above one flipped
activation). The running variance differs too: torch updates it with the unbiased batch variance, flax with the
biased one; the training-mode loss never reads it.

Each side runs in its own fresh process, one after the other, pinned to the same `--threads` cores (2 by default;
os.sched_setaffinity, from which XLA sizes its thread pool; torch.set_num_threads as well), so XLA's and torch's
pools never compete. After compiling (ours) and `--warmup` untimed steps, the median over `--steps` timed steps
is reported. Run it on an otherwise idle machine (the header prints the load average): with other work on the
same cores torch's OpenMP barriers wait for descheduled threads (SimCLR at batch 8, on 2 cores busy with other
work: 1.1 s a step on 2 torch threads, 18 ms on 1). Per setting: the shapes, then ms/step of ours, torch and torch
channels_last, and the step-0 and step-1 losses; last the ratios torch ms / ours ms (> 1: ours is faster).

Needs torch 2.13.0, the CPU wheel, and nothing else of the `bench` extra:
`.venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu`.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side

ROOT = side_by_side.ROOT

SETTINGS = {
  "simclr": dict(config="configs/simclr.py:cpu", channels=1),
  "resnet18": dict(config="configs/simclr.py:cifar10", channels=3, batch=128),
  "rotation": dict(config="configs/rotation.py:cpu", channels=1),
  "jigsaw": dict(config="configs/jigsaw.py:cpu", channels=1),
  "relative_position": dict(config="configs/relative_position.py:cpu", channels=1),
  "inpainting": dict(config="configs/inpainting.py:cpu", channels=1),
  "colorization": dict(config="configs/colorization.py:cpu", channels=3),
}


# ----------------------------------------------------------------------------------------
# Ours: the method's init and loss_fn, its augmentation swapped for the fixed batch.
#
# Per method: (method module, config, raw images, key) -> (the augmented batch, made once by the method's own
# functions; a function of that batch giving {name in the method's module: replacement}). The replacements keep
# the signatures of what they replace.


def _fixed_simclr(m, config, images, key):
  v1, v2 = m.train_views(images, key, config)
  return {"v1": v1, "v2": v2}, lambda a: {"train_views": lambda images, rng, config: (a["v1"], a["v2"])}


def _fixed_rotation(m, config, images, key):
  x, labels = m.rotate_all(m.train_view(images, key, config))
  return {"x": x, "labels": labels}, lambda a: {
    "train_view": lambda images, rng, config: images,
    "rotate_all": lambda images: (a["x"], a["labels"]),
  }


def _fixed_jigsaw(m, config, images, key):
  tiles, labels = m.puzzles(images, key, config)
  return {"tiles": tiles, "labels": labels}, lambda a: {
    "puzzles": lambda images, rng, config: (a["tiles"], a["labels"])
  }


def _fixed_relative_position(m, config, images, key):
  import numpy as np

  # The pairing the model makes, for the peer to make the same way.
  pairing = {"centre": np.int32(m.CENTRE), "neighbours": np.asarray(m.NEIGHBOURS, np.int32)}
  return (
    {"tiles": m.tile_grid(images, key, config), **pairing},
    lambda a: {"tile_grid": lambda images, rng, config: a["tiles"]},
  )


def _fixed_inpainting(m, config, images, key):
  import jax

  k_view, k_mask = jax.random.split(key)
  x = m.train_view(images, k_view, config)
  return (
    {"images": x, "masks": m.masks_for(config, k_mask, x.shape[0])},
    lambda a: {"train_view": lambda images, rng, config: a["images"], "masks_for": lambda config, key, num: a["masks"]},
  )


def _fixed_colorization(m, config, images, key):
  import jax

  k_view, k_jitter = jax.random.split(key)
  lab = m.train_view(images, k_view, config)
  jittered = m.jitter_inputs(lab, k_jitter, config.colorization.input_jitter)
  return (
    {"lab": lab, "jittered": jittered},
    lambda a: {
      "train_view": lambda images, rng, config: a["lab"],
      "jitter_inputs": lambda lab, key, strength: a["jittered"],
    },
  )


FIXED = {
  "simclr": _fixed_simclr,
  "rotation": _fixed_rotation,
  "jigsaw": _fixed_jigsaw,
  "relative_position": _fixed_relative_position,
  "inpainting": _fixed_inpainting,
  "colorization": _fixed_colorization,
}


def run_ours(s: dict, args, npz: str) -> dict:
  sys.path.insert(0, ROOT)
  import importlib

  import jax
  import numpy as np
  import optax
  from flax import traverse_util

  from ssljax import methods

  config = side_by_side.load_config(s)
  m = importlib.import_module(methods.METHODS[config.method])  # the module, whose functions the swaps replace
  images = jax.device_put(side_by_side.random_images(s, config))
  inputs, replacements = FIXED[config.method](m, config, images, jax.random.PRNGKey(1))
  params, state = m.init(config, jax.random.PRNGKey(config.seed), {"image": images})
  if set(state) - {"batch_stats"}:
    raise SystemExit(
      f"{config.method}'s state holds {sorted(set(state) - {'batch_stats'})}: the peer knows only BatchNorm statistics"
    )
  arrays = {f"params/{k}": v for k, v in traverse_util.flatten_dict(params, sep="/").items()}
  arrays.update({f"state/{k}": v for k, v in traverse_util.flatten_dict(state, sep="/").items()})
  arrays.update({f"input/{k}": v for k, v in inputs.items()})
  np.savez(npz, **jax.device_get(arrays))

  out = side_by_side.time_ours(
    args, m, replacements, config, optax.sgd(args.lr, momentum=0.9), params, state, {"image": images}, inputs
  )
  return {**out, "inputs": {k: list(v.shape) for k, v in inputs.items() if v.ndim}}


# ----------------------------------------------------------------------------------------
# The peer: the same networks in PyTorch, modules named after ssljax's parameter tree.


def _torch_models(config, in_channels: int):
  """(encoder, encoder output width), the peer of config.model.encoder; encoder(x) returns (pooled, feature_map)."""
  import torch.nn.functional as F
  from torch import nn

  bn = lambda c: nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)
  kwargs = config.model.encoder_kwargs.to_dict()

  class SmallCNN(nn.Module):
    """ssljax's SmallCNN: per stage (3x3 conv-BN-ReLU) x 2, 2x2 max-pool between stages (floor, as flax VALID)."""

    def __init__(self, widths=(32, 64, 128), pool="avg", conv_impl=None):
      super().__init__()
      del conv_impl  # ours picks between equal convolutions; torch has one
      self.widths, self.pool = tuple(widths), pool
      c = in_channels
      for i, width in enumerate(self.widths):
        for j in (1, 2):
          setattr(self, f"stage{i + 1}_conv{j}", nn.Conv2d(c, width, 3, padding=1, bias=False))
          setattr(self, f"stage{i + 1}_bn{j}", bn(width))
          c = width

    def forward(self, x):
      for i in range(len(self.widths)):
        for j in (1, 2):
          x = F.relu(getattr(self, f"stage{i + 1}_bn{j}")(getattr(self, f"stage{i + 1}_conv{j}")(x)))
        if i < len(self.widths) - 1:
          x = F.max_pool2d(x, 2)
      return (x.mean((2, 3)) if self.pool == "avg" else x.amax((2, 3))), x

  class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), bn(cout)
      self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), bn(cout)
      self.project = stride != 1 or cin != cout
      if self.project:
        self.proj_conv, self.proj_bn = nn.Conv2d(cin, cout, 1, stride, bias=False), bn(cout)

    def forward(self, x):
      y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
      return F.relu(y + (self.proj_bn(self.proj_conv(x)) if self.project else x))

  class ResNet(nn.Module):
    """torchvision's BasicBlock ResNet, as ssljax's (symmetric k//2 padding); 'cifar' stem: 3x3/1, no pool."""

    def __init__(self, stage_sizes, width=64, stem="imagenet", zero_init_residual=False):
      super().__init__()
      del zero_init_residual  # an initialization; the weights are ours
      self.stem = stem
      if stem == "imagenet":
        self.stem_conv = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
      else:
        self.stem_conv = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
      self.stem_bn = bn(width)
      self.block_names, c = [], width
      for i, size in enumerate(stage_sizes):
        for j in range(size):
          name = f"stage{i + 1}_block{j + 1}"
          setattr(self, name, BasicBlock(c, width * 2**i, 2 if i > 0 and j == 0 else 1))
          self.block_names.append(name)
          c = width * 2**i

    def forward(self, x):
      x = F.relu(self.stem_bn(self.stem_conv(x)))
      if self.stem == "imagenet":
        x = F.max_pool2d(x, 3, 2, 1)
      for name in self.block_names:
        x = getattr(self, name)(x)
      return x.mean((2, 3)), x

  name = config.model.encoder
  if name == "small_cnn":
    encoder = SmallCNN(**kwargs)
    return encoder, encoder.widths[-1]
  if name in ("resnet18", "resnet34"):
    encoder = ResNet((2, 2, 2, 2) if name == "resnet18" else (3, 4, 6, 3), **kwargs)
    return encoder, encoder.stem_bn.num_features * 8
  raise SystemExit(f"the peer has no model.encoder='{name}' (small_cnn, resnet18 and resnet34 only)")


def _nchw(a, channels_last: bool):
  """(N, H, W, C) numpy -> (N, C, H, W) torch, in the layout the run measures."""
  import torch

  x = torch.from_numpy(a).permute(0, 3, 1, 2)
  return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _peer_simclr(config, a, channels_last):
  import torch
  import torch.nn.functional as F
  from torch import nn

  c = config.model
  v1, v2 = _nchw(a["input/v1"], channels_last), _nchw(a["input/v2"], channels_last)
  n, temperature = v1.shape[0], config.simclr.temperature

  class ProjectionHead(nn.Module):
    """(Linear-BN-ReLU) x (layers - 1), Linear, BN without scale or bias: ssljax's ProjectionHead defaults."""

    def __init__(self, cin):
      super().__init__()
      self.layers = c.proj_layers
      for i in range(self.layers - 1):
        setattr(self, f"dense{i + 1}", nn.Linear(cin, c.proj_hidden_dim, bias=False))
        setattr(self, f"bn{i + 1}", nn.BatchNorm1d(c.proj_hidden_dim, eps=1e-5, momentum=0.1))
        cin = c.proj_hidden_dim
      setattr(self, f"dense{self.layers}", nn.Linear(cin, c.proj_out_dim, bias=False))
      setattr(self, f"bn{self.layers}", nn.BatchNorm1d(c.proj_out_dim, eps=1e-5, momentum=0.1, affine=False))

    def forward(self, h):
      for i in range(1, self.layers):
        h = F.relu(getattr(self, f"bn{i}")(getattr(self, f"dense{i}")(h)))
      return getattr(self, f"bn{self.layers}")(getattr(self, f"dense{self.layers}")(h))

  class SimCLR(nn.Module):
    def __init__(self):
      super().__init__()
      self.encoder, width = _torch_models(config, v1.shape[1])
      self.head = ProjectionHead(width)

    def forward(self, x):
      return self.head(self.encoder(x)[0])

  # NT-Xent as ssljax computes it: cosine similarities of all 2N views, self masked with the finite float32 min.
  self_mask = torch.eye(2 * n, dtype=torch.bool)
  positives = (torch.arange(2 * n) + n) % (2 * n)
  mask_value = torch.finfo(torch.float32).min

  def loss(model):
    z = F.normalize(model(torch.cat([v1, v2])), dim=1, eps=1e-6)
    logits = (z @ z.T / temperature).masked_fill(self_mask, mask_value)
    return F.cross_entropy(logits, positives)

  return SimCLR(), loss


def _peer_rotation(config, a, channels_last):
  import torch
  import torch.nn.functional as F
  from torch import nn

  x, labels = _nchw(a["input/x"], channels_last), torch.from_numpy(a["input/labels"]).long()

  class Rotation(nn.Module):
    def __init__(self):
      super().__init__()
      self.encoder, width = _torch_models(config, x.shape[1])
      self.head = nn.Linear(width, 4)

    def forward(self, x):
      return self.head(self.encoder(x)[0])

  return Rotation(), lambda model: F.cross_entropy(model(x), labels)


def _tiles(a, channels_last):
  """(N, T, t, t, C) tiles -> (N * T, C, t, t), tile-major within each image, as the flax model reshapes."""
  tiles = a["input/tiles"]
  return _nchw(tiles.reshape(-1, *tiles.shape[2:]), channels_last), tiles.shape[0]


def _peer_jigsaw(config, a, channels_last):
  import torch
  import torch.nn.functional as F
  from torch import nn

  tiles, n = _tiles(a, channels_last)
  labels = torch.from_numpy(a["input/labels"]).long()
  j = config.jigsaw

  class Jigsaw(nn.Module):
    def __init__(self):
      super().__init__()
      self.encoder, width = _torch_models(config, tiles.shape[1])
      self.fc = nn.Linear(width * tiles.shape[0] // n, j.hidden)
      self.head = nn.Linear(j.hidden, j.num_permutations)

    def forward(self, tiles):
      return self.head(F.relu(self.fc(self.encoder(tiles)[0].reshape(n, -1))))

  return Jigsaw(), lambda model: F.cross_entropy(model(tiles), labels)


def _peer_relative_position(config, a, channels_last):
  import torch
  import torch.nn.functional as F
  from torch import nn

  tiles, n = _tiles(a, channels_last)
  centre, neighbours = int(a["input/centre"]), torch.from_numpy(a["input/neighbours"]).long()
  k = len(neighbours)
  labels = torch.arange(k).repeat(n)  # pair p of every image sits at position p

  class Pairs(nn.Module):
    def __init__(self):
      super().__init__()
      self.encoder, width = _torch_models(config, tiles.shape[1])
      self.fc = nn.Linear(2 * width, config.relative_position.hidden)
      self.head = nn.Linear(config.relative_position.hidden, k)

    def forward(self, tiles):
      features = self.encoder(tiles)[0].reshape(n, tiles.shape[0] // n, -1)
      pairs = torch.cat([features[:, centre : centre + 1].expand(-1, k, -1), features[:, neighbours]], dim=-1)
      return self.head(F.relu(self.fc(pairs)))

  return Pairs(), lambda model: F.cross_entropy(model(tiles).reshape(n * k, k), labels)


def _upsample(x, size: int):
  import torch.nn.functional as F

  # jax.image.resize 'linear' when growing: half-pixel centres, edge samples clamped, as align_corners=False.
  return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def _peer_inpainting(config, a, channels_last):
  import torch
  import torch.nn.functional as F
  from torch import nn

  c = config.inpainting
  if c.adversarial_weight > 0:
    raise SystemExit("the inpainting peer has no discriminator (inpainting.adversarial_weight > 0)")
  images = _nchw(a["input/images"], channels_last)
  masks = torch.from_numpy(a["input/masks"])[:, None]
  size = images.shape[-1]

  class ContextDecoder(nn.Module):
    """ssljax's: channel-wise FC over positions, 1x1 channel mix, then (upsample, 3x3 conv-BN-ReLU) per width."""

    def __init__(self, channels, grid):
      super().__init__()
      self.grid = grid
      if c.channel_fc:
        self.channel_fc = nn.Parameter(torch.empty(channels, grid * grid, grid * grid))
        self.channel_mix = nn.Conv2d(channels, channels, 1, bias=False)
        self.channel_fc_bn = nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)
      for i, width in enumerate(c.decoder_widths):
        setattr(self, f"up{i + 1}_conv", nn.Conv2d(channels, width, 3, padding=1, bias=False))
        setattr(self, f"up{i + 1}_bn", nn.BatchNorm2d(width, eps=1e-5, momentum=0.1))
        channels = width
      self.to_pixels = nn.Conv2d(channels, images.shape[1], 3, padding=1)

    def forward(self, x):
      n, ch, h, w = x.shape
      if c.channel_fc:
        x = torch.einsum("ncp,cpq->ncq", x.reshape(n, ch, h * w), self.channel_fc).reshape(n, ch, h, w)
        x = F.relu(self.channel_fc_bn(self.channel_mix(x)))
      for i in range(len(c.decoder_widths)):
        x = _upsample(x, round(h * (size / h) ** ((i + 1) / len(c.decoder_widths))))
        x = F.relu(getattr(self, f"up{i + 1}_bn")(getattr(self, f"up{i + 1}_conv")(x)))
      if x.shape[-1] != size:
        x = _upsample(x, size)
      return self.to_pixels(x)

  class ContextEncoder(nn.Module):
    def __init__(self):
      super().__init__()
      self.encoder, width = _torch_models(config, images.shape[1])
      with torch.no_grad():
        grid = self.encoder(torch.zeros(2, *images.shape[1:]))[1].shape[-1]
      self.decoder = ContextDecoder(width, grid)

    def forward(self, x):
      return self.decoder(self.encoder(x)[1])

  def loss(model):
    # The hole filled with 0 (inpainting.FILL_VALUE), then Context Encoders' L2 over the hole only.
    predictions = model(images * (1.0 - masks))
    squared = (predictions - images).square().sum(1, keepdim=True)
    return (masks * squared).sum() / (masks.sum().clamp(min=1.0) * images.shape[1])

  return ContextEncoder(), loss


def _peer_colorization(config, a, channels_last):
  import torch.nn.functional as F
  from torch import nn

  c = config.colorization
  if c.mode != "colorize" or c.loss != "regression":
    raise SystemExit("the colorization peer covers mode=colorize with loss=regression (the cpu preset) only")
  lab, jittered = _nchw(a["input/lab"], channels_last), _nchw(a["input/jittered"], channels_last)
  bn = lambda ch: nn.BatchNorm2d(ch, eps=1e-5, momentum=0.1)

  class ColorDecoder(nn.Module):
    """ssljax's: 3x3 conv-BN-ReLU per head width, then per width a 2x upsampling and one more, a 1x1 to ab."""

    def __init__(self, channels):
      super().__init__()
      self.names = [f"head{i + 1}" for i in range(len(c.head_widths))]
      self.names += [f"up{i + 1}" for i in range(len(c.decoder_widths))]
      for name, width in zip(self.names, (*c.head_widths, *c.decoder_widths)):
        setattr(self, f"{name}_conv", nn.Conv2d(channels, width, 3, padding=1, bias=False))
        setattr(self, f"{name}_bn", bn(width))
        channels = width
      self.out = nn.Conv2d(channels, 2, 1)

    def forward(self, x):
      for name in self.names:
        if name.startswith("up"):
          x = _upsample(x, 2 * x.shape[-1])
        x = F.relu(getattr(self, f"{name}_bn")(getattr(self, f"{name}_conv")(x)))
      return self.out(x)

  class Colorizer(nn.Module):
    def __init__(self):
      super().__init__()
      self.encoder, width = _torch_models(config, 1)
      self.ab_decoder = ColorDecoder(width)

    def forward(self, x):
      return self.ab_decoder(self.encoder(x)[1])

  def loss(model):
    lightness = jittered[:, :1]
    if c.standardize_l:  # colorization.standardize: per image, eps 0.1 on the deviation
      mean = lightness.mean((1, 2, 3), keepdim=True)
      lightness = (lightness - mean) / ((lightness - mean).square().mean((1, 2, 3), keepdim=True).sqrt() + 0.1)
    prediction = model(lightness)
    # The target at the prediction's resolution, shrunk with an antialiased bilinear filter as ssljax's resize.
    target = lab[:, 1:]
    if target.shape[-1] != prediction.shape[-1]:
      target = F.interpolate(target, size=prediction.shape[-2:], mode="bilinear", align_corners=False, antialias=True)
    return (prediction - target).square().mean()

  return Colorizer(), loss


PEERS = {
  "simclr": _peer_simclr,
  "rotation": _peer_rotation,
  "jigsaw": _peer_jigsaw,
  "relative_position": _peer_relative_position,
  "inpainting": _peer_inpainting,
  "colorization": _peer_colorization,
}


def _load_ours(model, arrays) -> None:
  """Copies our params and BatchNorm statistics into `model`; every tensor on either side must find its match."""
  import numpy as np
  import torch

  targets = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
  given = set()
  for key in arrays.files:
    kind, _, path = key.partition("/")
    if kind not in ("params", "state"):
      continue
    if kind == "state":
      collection, _, path = path.partition("/")
      assert collection == "batch_stats", key
    *modules, leaf = path.split("/")
    value = arrays[key]
    if kind == "params" and leaf == "kernel":
      value, leaf = (value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T), "weight"
    elif kind == "params" and leaf == "scale":
      leaf = "weight"
    elif kind == "state":
      leaf = {"mean": "running_mean", "var": "running_var"}[leaf]
    name = ".".join([*modules, leaf])
    if name not in targets:
      raise SystemExit(f"ssljax's {key} {value.shape} has no counterpart '{name}' in the torch peer")
    target = targets[name]
    if value.ndim == 2 and target.dim() == 4:  # a Dense over channels is a 1x1 convolution
      value = value.reshape(*value.shape, 1, 1)
    if tuple(value.shape) != tuple(target.shape):
      raise SystemExit(f"ssljax's {key} is {value.shape} but the torch peer's '{name}' is {tuple(target.shape)}")
    with torch.no_grad():
      target.copy_(torch.from_numpy(np.ascontiguousarray(value)))
    given.add(name)
  if set(targets) - given:
    raise SystemExit(f"torch peer tensors with no ssljax counterpart: {', '.join(sorted(set(targets) - given))}")


def run_torch(s: dict, args, npz: str, channels_last: bool) -> dict:
  import numpy as np
  import torch

  torch.set_num_threads(args.threads)
  config = side_by_side.load_config(s)
  arrays = np.load(npz)
  model, loss = PEERS[config.method](config, arrays, channels_last)
  _load_ours(model, arrays)
  model.train()
  if channels_last:
    model = model.to(memory_format=torch.channels_last)
  opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)

  def step():
    opt.zero_grad(set_to_none=True)
    value = loss(model)
    value.backward()
    opt.step()
    return value.item()

  out = side_by_side.time_steps(step, args.warmup, args.steps)
  return {**out, "version": f"torch {torch.__version__} ({torch.get_num_threads()} threads)"}


# ----------------------------------------------------------------------------------------
# Driver.


def main():
  p = side_by_side.parser(__doc__, ("ours", "torch", "torch_cl"))
  p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
  p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (momentum 0.9)")
  args = p.parse_args()
  if args.child:
    peer = lambda channels_last: lambda s, args, npz: run_torch(s, args, npz, channels_last)
    return side_by_side.run_child(args, {"ours": run_ours, "torch": peer(False), "torch_cl": peer(True)})
  install = ".venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
  side_by_side.start(args, "torch", install, f"float32, SGD momentum 0.9 lr {args.lr}")
  side_by_side.against_torch_layouts(__file__, args, SETTINGS, "--lr", str(args.lr))


if __name__ == "__main__":
  main()
