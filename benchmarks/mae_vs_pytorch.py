"""One MAE pre-training step on CPU, ours against a PyTorch MAE built from timm's ViT `Block`s, same shapes.

  python benchmarks/mae_vs_pytorch.py [--settings small s16] [--batch 64] [--steps 10] [--warmup 3] [--threads N]

The step is MAE's (He et al. 2021): per-example random masking (argsort of uniform noise), the encoder on the
visible patches only, a decoder over all patches with a learned mask token and fixed sin-cos positions, the
norm-pix MSE on the masked patches, backward, and an AdamW update (betas 0.9/0.95, weight decay 0.05 on
tensors of rank >= 2, as MAE's param groups; lr 1.5e-4 x batch / 256). Both sides mask inside the timed step
and see the same fixed batch of normalized random images, so no input pipeline is measured.

Ours: `ssljax.models.vit.MAE` + `random_masking` keyed by fold_in(rng, step) + `losses.mae_recon`, one jitted
float32 step with params and optimizer state donated. The peer is what a PyTorch user writes: MAE's
`models_mae.py` in compact form on `timm.models.vision_transformer.Block` (qkv bias, LayerNorm eps 1e-6, mlp
ratio 4; timm's fused scaled_dot_product_attention), a stride-p Conv2d patch embedding (ours is the same map
as a Dense on patchified pixels), `torch.optim.AdamW` with the same groups, eager float32 in train mode.
The two compute the same function: ours' parameters copied into the peer (kernels transposed, the patch kernel
reshaped to (hidden, C, p, p)) with the same shuffle gave the same loss to 3e-7 (small setting, 3 channels).

Settings (each field can be overridden by the flag of the same name):
  small  28x28x1, patch 4 (49 patches, 12 visible): ViT 192 wide, 6 deep, 3 heads; decoder 128/2/4; batch 64
  s16    224x224x3, patch 16 (196 patches, 49 visible): ViT-S (384/12/6); MAE's decoder 512/8/16; batch 8

Each side runs in its own fresh process, pinned to the same `--threads` cores (os.sched_setaffinity; XLA
sizes its pool from the affinity mask, torch gets set_num_threads as well), one setting at a time, so neither
competes with the other for cores or caches. Warm-up steps (ours: after compiling) are not timed. Run it on an
otherwise idle machine (the header prints the load average); the median and min beside the mean show noise.
Per setting it prints ms/step and images/s of each side, its parameter count, last loss and peak RSS, and last
the ratio ours/torch in images/s.

The peer needs torch, timm and torchvision, which the tests do not:

  .venv/bin/pip install timm==1.0.31 torchvision==0.28.0    # torch 2.13.0+cpu already installed

On this project's machines the only torchvision 0.28.0 wheel is the CUDA build (0.28.0+cu130): with the
CPU-only torch its C extension cannot load, and `import torchvision` (which timm does at import) then fails on
an unguarded `register_fake("torchvision::nms")`. timm's ViT needs none of torchvision's ops, so before the
import the peer defines the two missing op schemas (nms, qnms) when the extension is absent; see
`_import_timm`. With a CPU build of torchvision that shim does nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETTINGS = {
  "small": dict(
    image_size=28, channels=1, patch=4, hidden=192, depth=6, heads=3, dec_hidden=128, dec_depth=2, dec_heads=4, batch=64
  ),
  "s16": dict(
    image_size=224,
    channels=3,
    patch=16,
    hidden=384,
    depth=12,
    heads=6,
    dec_hidden=512,
    dec_depth=8,
    dec_heads=16,
    batch=8,
  ),
}
MASK_RATIO, BASE_LR, BETAS, WEIGHT_DECAY = 0.75, 1.5e-4, (0.9, 0.95), 0.05


def _images(s: dict):
  """The fixed batch both sides train on: N(0, 1) pixels, as images after mean/std normalization."""
  import numpy as np

  rng = np.random.default_rng(0)
  return rng.standard_normal((s["batch"], s["image_size"], s["image_size"], s["channels"]), dtype=np.float32)


def _peak_rss_mib() -> float:
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))


def _time_steps(step, warmup: int, steps: int) -> dict:
  for _ in range(warmup):
    step()
  times, loss = [], None
  for _ in range(steps):
    t0 = time.perf_counter()
    loss = step()
    times.append(time.perf_counter() - t0)
  return {"times": times, "loss": loss}


# ----------------------------------------------------------------------------------------
# Ours.


def run_ours(s: dict, warmup: int, steps: int) -> dict:
  sys.path.insert(0, ROOT)
  import jax
  import optax

  from ssljax import losses, optim
  from ssljax.models.vit import MAE, ViT, patchify, random_masking

  images = jax.device_put(_images(s))
  n, p = s["batch"], s["patch"]
  num_patches = (s["image_size"] // p) ** 2
  model = MAE(
    ViT(patch_size=p, hidden=s["hidden"], depth=s["depth"], heads=s["heads"]),
    decoder_hidden=s["dec_hidden"],
    decoder_depth=s["dec_depth"],
    decoder_heads=s["dec_heads"],
  )
  tx = optax.adamw(BASE_LR * n / 256, b1=BETAS[0], b2=BETAS[1], weight_decay=WEIGHT_DECAY, mask=optim.decay_mask)
  rng = jax.random.key(0)

  def init(rng):
    keep, _, restore = random_masking(rng, n, num_patches, MASK_RATIO)
    params = model.init(rng, images, keep, restore, train=True)["params"]
    return params, tx.init(params)

  def loss_fn(params, x, rng):
    keep, mask, restore = random_masking(rng, n, num_patches, MASK_RATIO)
    pred, _ = model.apply({"params": params}, x, keep, restore, train=True)
    return losses.mae_recon(pred, patchify(x, p), mask, norm_pix=True)

  def train_step(params, opt_state, x, step):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, jax.random.fold_in(rng, step))
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  params, opt_state = jax.jit(init)(rng)
  num_params = sum(x.size for x in jax.tree.leaves(params))
  t0 = time.perf_counter()
  compiled = jax.jit(train_step, donate_argnums=(0, 1)).lower(params, opt_state, images, 0).compile()
  compile_s = time.perf_counter() - t0
  state = {"params": params, "opt_state": opt_state, "step": 0}

  def step():
    state["params"], state["opt_state"], loss = compiled(state["params"], state["opt_state"], images, state["step"])
    state["step"] += 1
    return float(loss)  # waits for the step

  out = _time_steps(step, warmup, steps)
  return {
    **out,
    "params": num_params,
    "compile_s": compile_s,
    "version": f"jax {jax.__version__} ({jax.devices()[0].platform})",
  }


# ----------------------------------------------------------------------------------------
# The peer: MAE's models_mae.py, compact, on timm's Block.

_TORCHVISION_SHIM = []  # keeps the op-schema library alive


def _import_timm():
  """Imports timm; defines torchvision's nms/qnms schemas first when its C extension cannot load."""
  import importlib.util

  import torch

  spec = importlib.util.find_spec("torchvision")
  if spec is not None and spec.submodule_search_locations:
    try:
      torch.ops.load_library(os.path.join(spec.submodule_search_locations[0], "_C.so"))
    except (OSError, RuntimeError):
      lib = torch.library.Library("torchvision", "FRAGMENT")
      for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
      _TORCHVISION_SHIM.append(lib)
  import timm

  return timm


def _sincos_2d(dim: int, grid: int):
  """MAE's get_2d_sincos_pos_embed (grid x grid, w coordinate first), as a (grid*grid, dim) tensor."""
  import numpy as np
  import torch

  def one_d(d, pos):
    omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)

  g = np.stack(np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64)))
  return torch.from_numpy(np.concatenate([one_d(dim // 2, g[0]), one_d(dim // 2, g[1])], 1)).float()


def _torch_mae(s: dict):
  import functools

  import torch
  from torch import nn

  _import_timm()
  from timm.models.vision_transformer import Block

  p, c = s["patch"], s["channels"]
  grid = s["image_size"] // p
  norm = functools.partial(nn.LayerNorm, eps=1e-6)

  class TorchMAE(nn.Module):
    def __init__(self):
      super().__init__()
      h, d = s["hidden"], s["dec_hidden"]
      self.patch_embed = nn.Conv2d(c, h, p, stride=p)
      self.cls_token = nn.Parameter(torch.zeros(1, 1, h))
      self.register_buffer("pos_embed", _sincos_2d(h, grid)[None], persistent=False)
      self.blocks = nn.ModuleList(
        [Block(h, s["heads"], 4.0, qkv_bias=True, norm_layer=norm) for _ in range(s["depth"])]
      )
      self.norm = norm(h)
      self.decoder_embed = nn.Linear(h, d)
      self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
      self.register_buffer("decoder_pos_embed", _sincos_2d(d, grid)[None], persistent=False)
      self.decoder_blocks = nn.ModuleList(
        [Block(d, s["dec_heads"], 4.0, qkv_bias=True, norm_layer=norm) for _ in range(s["dec_depth"])]
      )
      self.decoder_norm = norm(d)
      self.decoder_pred = nn.Linear(d, p * p * c)
      # MAE's initialize_weights.
      w = self.patch_embed.weight.data
      nn.init.xavier_uniform_(w.view(w.shape[0], -1))
      nn.init.zeros_(self.patch_embed.bias)
      nn.init.normal_(self.cls_token, std=0.02)
      nn.init.normal_(self.mask_token, std=0.02)
      for m in self.modules():
        if isinstance(m, nn.Linear):
          nn.init.xavier_uniform_(m.weight)
          nn.init.zeros_(m.bias)

    def patchify(self, imgs):  # (N, C, H, W) -> (N, L, p*p*C), pixel order (py, px, c)
      n = imgs.shape[0]
      x = imgs.reshape(n, c, grid, p, grid, p)
      return torch.einsum("nchpwq->nhwpqc", x).reshape(n, grid * grid, p * p * c)

    def random_masking(self, x):
      n, length, dim = x.shape
      keep = max(1, int(length * (1 - MASK_RATIO)))
      ids_shuffle = torch.argsort(torch.rand(n, length), dim=1)
      ids_restore = torch.argsort(ids_shuffle, dim=1)
      x = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, dim))
      mask = torch.ones(n, length)
      mask[:, :keep] = 0
      return x, torch.gather(mask, 1, ids_restore), ids_restore

    def forward(self, imgs):
      x = self.patch_embed(imgs).flatten(2).transpose(1, 2) + self.pos_embed
      x, mask, ids_restore = self.random_masking(x)
      x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
      for blk in self.blocks:
        x = blk(x)
      x = self.decoder_embed(self.norm(x))
      n, length = ids_restore.shape
      mask_tokens = self.mask_token.expand(n, length + 1 - x.shape[1], -1)
      x_ = torch.cat([x[:, 1:], mask_tokens], dim=1)
      x_ = torch.gather(x_, 1, ids_restore[..., None].expand(-1, -1, x.shape[2])) + self.decoder_pos_embed
      x = torch.cat([x[:, :1], x_], dim=1)
      for blk in self.decoder_blocks:
        x = blk(x)
      pred = self.decoder_pred(self.decoder_norm(x))[:, 1:]
      # norm-pix loss, as MAE's forward_loss (torch.var is unbiased).
      target = self.patchify(imgs)
      mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
      target = (target - mean) / (var + 1e-6) ** 0.5
      loss = ((pred - target) ** 2).mean(dim=-1)
      return (loss * mask).sum() / mask.sum()

  return TorchMAE()


def run_torch(s: dict, warmup: int, steps: int, threads: int) -> dict:
  import torch

  torch.set_num_threads(threads)
  torch.manual_seed(0)
  model = _torch_mae(s)
  model.train()
  images = torch.from_numpy(_images(s)).permute(0, 3, 1, 2).contiguous()  # NCHW, torch's native layout
  params = [q for q in model.parameters() if q.requires_grad]
  groups = [
    {"params": [q for q in params if q.ndim > 1], "weight_decay": WEIGHT_DECAY},
    {"params": [q for q in params if q.ndim <= 1], "weight_decay": 0.0},
  ]
  opt = torch.optim.AdamW(groups, lr=BASE_LR * s["batch"] / 256, betas=BETAS)

  def step():
    loss = model(images)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())

  out = _time_steps(step, warmup, steps)
  import timm

  return {
    **out,
    "params": sum(q.numel() for q in params),
    "compile_s": 0.0,
    "version": f"torch {torch.__version__} ({torch.get_num_threads()} threads), timm {timm.__version__}",
  }


# ----------------------------------------------------------------------------------------
# Driver.


def _child(args) -> None:
  s = json.loads(args.child_setting)
  cores = sorted(os.sched_getaffinity(0))[: args.threads]
  os.sched_setaffinity(0, cores)
  if args.child == "ours":
    out = run_ours(s, args.warmup, args.steps)
  else:
    out = run_torch(s, args.warmup, args.steps, args.threads)
  out["peak_rss_mib"] = _peak_rss_mib()
  print(json.dumps(out))


def _run_side(side: str, s: dict, args) -> dict:
  cmd = [
    sys.executable,
    os.path.abspath(__file__),
    "--child",
    side,
    "--child-setting",
    json.dumps(s),
    "--warmup",
    str(args.warmup),
    "--steps",
    str(args.steps),
    "--threads",
    str(args.threads),
  ]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
  if proc.returncode:
    raise SystemExit(f"the {side} process failed:\n{proc.stderr[-3000:]}")
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  t = sorted(out["times"])
  mean = sum(t) / len(t)
  return {**out, "ms": 1e3 * mean, "median_ms": 1e3 * t[len(t) // 2], "min_ms": 1e3 * t[0], "img_s": s["batch"] / mean}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--settings", nargs="+", default=["small", "s16"], choices=list(SETTINGS))
  for field in SETTINGS["small"]:
    parser.add_argument(f"--{field.replace('_', '-')}", type=int, help=f"override {field} in every setting")
  parser.add_argument("--steps", type=int, default=10, help="timed steps of each")
  parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each (ours: after compiling)")
  parser.add_argument(
    "--threads",
    type=int,
    default=len(os.sched_getaffinity(0)),
    help="cores (and torch threads) each side gets (default: all this process may use)",
  )
  parser.add_argument("--child", choices=["ours", "torch"], help=argparse.SUPPRESS)
  parser.add_argument("--child-setting", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    return _child(args)
  import importlib.util

  missing = [m for m in ("torch", "timm", "torchvision") if importlib.util.find_spec(m) is None]
  if missing:
    raise SystemExit(f"the peer needs {', '.join(missing)}; install it as this script's docstring says")

  print(
    f"{os.cpu_count()} cores, {args.threads} per side, load average {os.getloadavg()[0]:.1f}; mask ratio "
    f"{MASK_RATIO}, {args.warmup} warm-up + {args.steps} timed steps, each side in a fresh process",
    flush=True,
  )
  results = {}
  for name in args.settings:
    s = dict(SETTINGS[name])
    for field in s:
      if getattr(args, field) is not None:
        s[field] = getattr(args, field)
    length = (s["image_size"] // s["patch"]) ** 2
    print(
      f"{name}: {s['image_size']}x{s['image_size']}x{s['channels']}, patch {s['patch']} ({length} patches, "
      f"{max(1, int(length * (1 - MASK_RATIO)))} visible), ViT {s['hidden']}/{s['depth']}/{s['heads']}, "
      f"decoder {s['dec_hidden']}/{s['dec_depth']}/{s['dec_heads']}, batch {s['batch']}",
      flush=True,
    )
    r = results[name] = {side: _run_side(side, s, args) for side in ("ours", "torch")}
    for side, m in r.items():
      compiled = f", compiled in {m['compile_s']:.1f} s" if side == "ours" else ""
      print(
        f"  {side:5s}: {m['ms']:8.1f} ms/step (median {m['median_ms']:.1f}, min {m['min_ms']:.1f}) | "
        f"{m['img_s']:7.1f} images/s | {m['params'] / 1e6:.2f}M params | last loss {m['loss']:.4f} | "
        f"peak RSS {m['peak_rss_mib']:.0f} MiB | {m['version']}{compiled}",
        flush=True,
      )
  print("ratio ours/torch, images/s:")
  for name, r in results.items():
    print(f"  {name}: {r['ours']['img_s'] / r['torch']['img_s']:.2f}x")


if __name__ == "__main__":
  main()
