"""One MoCo v2 training step, ours against a PyTorch implementation of the paper's Algorithm 1 with the same shapes,
started from the same weights, on CPU, in one run; the ratios come last.

  python benchmarks/moco_vs_pytorch.py [--settings cpu resnet18] [--steps 20] [--warmup 3] [--threads 2]
      [--batch N]

Settings (the config each one builds; `--batch` overrides every batch size, for quick checks only):
  cpu       configs/moco.py:cpu: SmallCNN (16, 32, 64) + MLP head 256-64 (no BatchNorm), 256 images of 28x28x1,
            queue 4096, T 0.2, key momentum 0.99, AdamW (lr 2e-3, betas 0.9/0.999, weight decay 1e-4 on kernels)
  resnet18  configs/moco.py:cifar10 at batch 128: ResNet-18 (CIFAR stem) + MLP head 2048-128, 128 images of
            32x32x3, queue 4096, T 0.2, key momentum 0.99 -> 1 (cosine), SGD momentum 0.9 (lr 0.06 x 128/256,
            weight decay 5e-4 on kernels)

What is timed, on both sides, is one step of Algorithm 1 in the order of MoCo's reference code: the key encoder moves
toward the query encoder (theta_k <- m theta_k + (1 - m) theta_q), the query encoder and head run forward on view 1
(training mode: BatchNorm on batch statistics), the key encoder on view 2 without gradient (its own BatchNorm
statistics), logits [l_pos, l_neg against the queue] / T, cross-entropy against column 0, backward, the optimizer
step, and the keys replace the queue's oldest rows; float32. Each optimizer is the config's own at its peak
learning rate (schedule constant, no warm-up: a schedule is one scalar a step); the key momentum of each step is
ours (`moco.key_momentum`), written down for the peer. Augmentation is not timed: our process makes one pair of
views once with MoCo's own `two_views` from fixed random images, and both sides train on that pair every step.

Ours is the method itself: `moco.init` and `moco.loss_fn`, with `two_views` swapped while the step is traced for one
that hands back the fixed pair (a `loss_fn` that stops calling it is an error, not a silently timed augmentation),
the step count an argument of the jitted step (MoCo's key encoder starts from the query encoder at step 0), params,
method state (BatchNorm statistics, key encoder, queue) and optimizer state donated.

The peer is what a PyTorch user writes from the paper's Algorithm 1 (and its reference code): the query network is
benchmarks/image_step_vs_pytorch.py's encoder (same module names as ssljax's parameter tree) and an fc-ReLU-fc
head; the key network is a deep copy of it whose parameters take no gradient, moved by `torch._foreach_mul_` /
`_foreach_add_` under no_grad; the queue a (K, dim) tensor with a pointer. Our initial parameters, BatchNorm
statistics and queue reach it through an .npz file (loaded and checked, every tensor both ways, by
image_step_vs_pytorch.py's loader), with the fixed views (NHWC -> NCHW, once, outside the step). It runs twice:
in torch's default contiguous layout and in channels_last.

The check: the step-0 losses of the two sides (same weights, same views, same queue) must agree within 1e-5
(absolute up to a loss of 1, relative above; the line says which), or the script ends non-zero with one line. The
step-1 loss, after one update, a momentum move of the key encoder and one enqueue, is printed beside it: it agrees
less tightly for the reasons image_step_vs_pytorch.py gives (a ReLU input within rounding of zero; torch's
unbiased running variance, which no training-mode loss reads).

Each side runs in its own fresh process, one after the other, pinned to the same `--threads` cores (2 by default;
os.sched_setaffinity, from which XLA sizes its thread pool; torch.set_num_threads as well). After compiling (ours)
and `--warmup` untimed steps, the median over `--steps` timed steps is reported. Run it on an otherwise idle machine
(the header prints the load average). Per setting: the shapes, then ms/step and images/s of ours, torch and torch
channels_last, and the step-0 and step-1 losses; last the ratios torch ms / ours ms (> 1: ours is faster).

Needs torch 2.13.0 (the CPU wheel), as benchmarks/image_step_vs_pytorch.py: `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import image_step_vs_pytorch as image_step  # the torch encoders and the loader of our weights into them
import side_by_side

SETTINGS = {
  "cpu": dict(config="configs/moco.py:cpu", channels=1),
  "resnet18": dict(config="configs/moco.py:cifar10", channels=3, batch=128),
}
# MoCo's init reads the run's length (the end of the key momentum's cosine schedule); no dataset here to count it.
TOTAL_STEPS = 10_000


def _config(s: dict):
  config = side_by_side.load_config(s)
  config.total_steps = TOTAL_STEPS
  # The optimizer at its peak rate on both sides: the schedule is one scalar a step, and warm-up starts at 0.
  config.optim.schedule = "constant"
  config.optim.warmup_epochs = 0.0
  return config


# ----------------------------------------------------------------------------------------
# Ours: moco.init and moco.loss_fn, two_views swapped for the fixed pair.


def run_ours(s: dict, args, npz: str) -> dict:

  import jax
  import jax.numpy as jnp
  import numpy as np
  from flax import traverse_util

  from ssljax import optim
  from ssljax.methods import moco

  config = _config(s)
  images = jax.device_put(side_by_side.random_images(s, config))
  v1, v2 = moco.two_views(images, jax.random.PRNGKey(1), config)
  inputs = {"v1": v1, "v2": v2}
  params, state = moco.init(config, jax.random.PRNGKey(config.seed), {"image": images}, data=None)
  tx, _ = optim.make_optimizer(config.optim, batch_size=config.batch_size, total_steps=TOTAL_STEPS, steps_per_epoch=1)

  steps = args.warmup + args.steps
  momenta = [float(moco.key_momentum(config, jnp.int32(i), state["total_steps"])) for i in range(steps)]
  arrays = {f"params/{k}": v for k, v in traverse_util.flatten_dict(params, sep="/").items()}
  stats = {"batch_stats": state["batch_stats"]}  # the query network's; the key network starts as its copy
  arrays.update({f"state/{k}": v for k, v in traverse_util.flatten_dict(stats, sep="/").items()})
  arrays.update({f"input/{k}": v for k, v in inputs.items()})
  arrays.update(
    {
      "moco/queue": state["queue"],
      "moco/momentum": np.asarray(momenta, np.float64),
      "moco/temperature": np.float64(config.moco.temperature),
      "optim/learning_rate": np.float64(optim.peak_learning_rate(config.optim, config.batch_size)),
    }
  )
  np.savez(npz, **jax.device_get(arrays))

  swaps = lambda a: {"two_views": lambda images, rng, config: (a["v1"], a["v2"])}
  out = side_by_side.time_ours(args, moco, swaps, config, tx, params, state, {"image": images}, inputs)
  shapes = {k: list(v.shape) for k, v in {**inputs, "queue": state["queue"]}.items()}
  return {**out, "inputs": shapes, "optimizer": config.optim.name}


# ----------------------------------------------------------------------------------------
# The peer: Algorithm 1 in PyTorch.


def _query_network(config, in_channels: int):
  """Encoder + MoCo v2's head, modules named after ssljax's parameter tree."""
  import torch.nn.functional as F
  from torch import nn

  c = config.model
  if c.proj_bn:
    raise SystemExit("the MoCo peer's head has no BatchNorm (model.proj_bn=True)")

  class Head(nn.Module):
    """(Linear-ReLU) x (layers - 1), Linear, with biases: ssljax's ProjectionHead with use_bn=False."""

    def __init__(self, cin):
      super().__init__()
      self.layers = c.proj_layers
      for i in range(1, self.layers + 1):
        width = c.proj_hidden_dim if i < self.layers else c.proj_out_dim
        setattr(self, f"dense{i}", nn.Linear(cin, width))
        cin = width

    def forward(self, h):
      for i in range(1, self.layers):
        h = F.relu(getattr(self, f"dense{i}")(h))
      return getattr(self, f"dense{self.layers}")(h)

  class Network(nn.Module):
    def __init__(self):
      super().__init__()
      self.encoder, width = image_step._torch_models(config, in_channels)
      self.head = Head(width)

    def forward(self, x):
      return self.head(self.encoder(x)[0])

  return Network()


def _torch_optimizer(config, model, lr: float):
  """The config's optimizer in torch: weight decay on tensors of rank >= 2 only, as `optim.decay_mask`."""
  import torch

  o = config.optim
  if o.grad_clip_norm > 0:
    raise SystemExit(f"the peer does not clip gradients (optim.grad_clip_norm={o.grad_clip_norm})")
  decay = [p for p in model.parameters() if p.dim() > 1]
  rest = [p for p in model.parameters() if p.dim() <= 1]
  groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": rest, "weight_decay": 0.0}]
  if o.name == "adamw":
    return torch.optim.AdamW(groups, lr=lr, betas=(o.momentum, o.b2), eps=1e-8)
  if o.name == "sgd":
    return torch.optim.SGD(groups, lr=lr, momentum=o.momentum)
  raise SystemExit(f"the peer has no optim.name='{o.name}' (adamw and sgd only)")


def run_torch(s: dict, args, npz: str, channels_last: bool) -> dict:
  import copy

  import numpy as np
  import torch
  import torch.nn.functional as F

  torch.set_num_threads(args.threads)
  config = _config(s)
  a = np.load(npz)
  v1, v2 = image_step._nchw(a["input/v1"], channels_last), image_step._nchw(a["input/v2"], channels_last)
  query = _query_network(config, v1.shape[1])
  image_step._load_ours(query, a)
  key = copy.deepcopy(query)  # f_k.params = f_q.params, BatchNorm statistics included
  for p in key.parameters():
    p.requires_grad = False  # no gradient to keys
  if channels_last:
    query, key = query.to(memory_format=torch.channels_last), key.to(memory_format=torch.channels_last)
  query.train()
  key.train()
  opt = _torch_optimizer(config, query, float(a["optim/learning_rate"]))
  queue = torch.from_numpy(a["moco/queue"]).clone()
  momenta, temperature = a["moco/momentum"], float(a["moco/temperature"])
  params_q, params_k = list(query.parameters()), list(key.parameters())
  n = v1.shape[0]
  labels = torch.zeros(n, dtype=torch.long)  # positives are the 0-th
  live = {"step": 0, "pointer": 0}

  def step():
    m = float(momenta[live["step"]])
    with torch.no_grad():  # momentum update: f_k.params = m * f_k.params + (1 - m) * f_q.params
      torch._foreach_mul_(params_k, m)
      torch._foreach_add_(params_k, params_q, alpha=1.0 - m)
    opt.zero_grad(set_to_none=True)
    q = F.normalize(query(v1), dim=1, eps=1e-6)
    with torch.no_grad():
      k = F.normalize(key(v2), dim=1, eps=1e-6)
    l_pos = (q * k).sum(dim=1, keepdim=True)
    l_neg = q @ queue.T
    loss = F.cross_entropy(torch.cat([l_pos, l_neg], dim=1) / temperature, labels)
    loss.backward()
    opt.step()
    with torch.no_grad():  # enqueue(queue, k); dequeue(queue): the oldest rows are replaced
      queue[live["pointer"] : live["pointer"] + n] = k
    live["pointer"] = (live["pointer"] + n) % queue.shape[0]
    live["step"] += 1
    return loss.item()

  out = side_by_side.time_steps(step, args.warmup, args.steps)
  return {**out, "version": f"torch {torch.__version__} ({torch.get_num_threads()} threads)"}


def main():
  p = side_by_side.parser(__doc__, ("ours", "torch", "torch_cl"))
  p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
  args = p.parse_args()
  if args.child:
    peer = lambda channels_last: lambda s, args, npz: run_torch(s, args, npz, channels_last)
    return side_by_side.run_child(args, {"ours": run_ours, "torch": peer(False), "torch_cl": peer(True)})
  side_by_side.start(args, "torch", ".venv/bin/pip install -e '.[bench]'", "float32")
  side_by_side.against_torch_layouts(__file__, args, SETTINGS)


if __name__ == "__main__":
  main()
