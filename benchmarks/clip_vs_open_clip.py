"""One CLIP training step, ours against open_clip's `CLIP` model and `ClipLoss` with the same tower shapes, started
from the same weights, on CPU, in one run; the ratio comes last.

  python benchmarks/clip_vs_open_clip.py [--steps 10] [--warmup 3] [--threads 2] [--batch N]

The setting: `configs/clip.py:cpu` with the ViT image tower (our SmallCNN has no open_clip counterpart): ViT 192
wide, 6 deep, 3 heads, patch 4 on 32x32x3 images (64 patches and [CLS]); the causal text tower 128 wide, 2 deep, 4
heads over a context of 24 tokens and a vocabulary of 2000; both projected to 128; batch 256. In our config:
--config.model.encoder=vit and model.encoder_kwargs {size: Ti, patch_size: 4, hidden: 192, depth: 6, heads: 3}.

What is timed, on both sides: both towers forward, the symmetric InfoNCE at the learnable temperature, backward and
an AdamW update (lr 1e-3, betas 0.9/0.98, eps 1e-8, weight decay 0.1: the preset's, at its peak rate, no schedule),
float32. The view and the captions are not: our process makes one augmented view of fixed random images with CLIP's
own `train_view`, and one caption per image ([CLS], random ids, [SEP], then [PAD], of random lengths up to the
context), and both sides train on that batch every step. Ours is the method itself: `clip.init` and `clip.loss_fn`,
with `train_view` and `pick_captions` swapped while the step is traced for ones that hand back the fixed batch, one
jitted step, params and optimizer state donated.

The peer is what an open_clip user runs: `open_clip.model.CLIP` built from `CLIPVisionCfg` / `CLIPTextCfg`, its
forward (L2-normalized features and exp(logit_scale)), `open_clip.loss.ClipLoss`, `torch.optim.AdamW` with open_clip's
training split of the parameters (no weight decay on gains, biases, rank-1 tensors and logit_scale), and the clamp of
logit_scale to [0, log 100] after each step, as open_clip's training loop does; eager, train mode. Its towers are
configured to compute our function: no LayerNorm before the vision blocks (`no_ln_pre`), fixed 2-D sin-cos
positions (`pos_embed_type='sin_cos_2d'`, MAE's, as ours), [CLS] pooling, LayerNorm eps 1e-6, exact GELU, and the
text feature read at [SEP] (`pool_type='eos'`, `eos_id=3`; open_clip's causal mask leaves the [PAD] after it unread,
where ours also masks [PAD] keys). Our initial parameters reach it through an .npz file, every tensor accounted for
both ways: qkv kernels -> in_proj_weight, the patch Dense's kernel -> the stride-4 convolution's, Dense (in, out) ->
Linear (out, in), projections as they are. One tensor of ours has no counterpart: the patch embedding's bias, which
open_clip's convolution lacks; it starts at zero (checked), so the two functions are equal at step 0. Our fixed
sin-cos table is checked against open_clip's (it replaces it).

The check: the step-0 losses must agree within 1e-5 (both near log 256 = 5.545 at init), or the script ends
non-zero with one line. The step-1 loss is printed beside it but agrees less: our patch bias learns, and open_clip's
parameter split leaves out of weight decay the [CLS] embedding that ours decays (a rank-3 tensor in ours).

Each side runs in its own fresh process, one after the other, pinned to the same `--threads` cores
(os.sched_setaffinity; torch.set_num_threads as well), as benchmarks/moco_vs_pytorch.py. After compiling (ours) and
`--warmup` untimed steps, the median over `--steps` timed steps is reported: ms/step and images/s, last the ratio
open_clip ms / ours ms (> 1: ours is faster). Only torch's default layout: the one convolution is the patch
embedding, so channels_last has nothing to speed up.

Needs the `bench` extra (open_clip_torch 3.3.0, torch 2.13.0, timm, torchvision 0.28.0): `.venv/bin/pip install -e
'.[bench]'`. `import open_clip` imports torchvision, whose only
0.28.0 wheel here is a CUDA build: the peer loads it through benchmarks/mae_vs_pytorch.py's shim (`_import_timm`).
"""

from __future__ import annotations

import math
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import image_step_vs_pytorch as image_step  # its NHWC -> NCHW loader of the fixed batch
import side_by_side

SETTING = dict(
  config="configs/clip.py:cpu",
  channels=3,
  batch=256,
  image_size=32,
  vit=dict(size="Ti", patch_size=4, hidden=192, depth=6, heads=3),
  text=dict(text_width=128, text_depth=2, text_heads=4, embed_dim=128, causal=True),
  vocab_size=2000,
  context=24,
)


def _config(s: dict):
  import ml_collections

  config = side_by_side.load_config(s)
  config.data.image_size = s["image_size"]
  config.data.vocab_size = s["vocab_size"]
  config.data.max_caption_tokens = s["context"]
  config.model.encoder = "vit"
  config.model.encoder_kwargs = ml_collections.ConfigDict(s["vit"])
  for key, value in s["text"].items():
    config.clip[key] = value
  # The optimizer at its peak rate on both sides: the schedule is one scalar a step, and warm-up starts at 0.
  config.optim.schedule = "constant"
  config.optim.warmup_epochs = 0.0
  return config


def _captions(config, n: int, seed: int = 0):
  """(n, context) int32: [CLS] random ids [SEP] [PAD]..., lengths uniform from 4 to the whole context."""
  import numpy as np

  from ssljax.data import wordpiece

  rng, t = np.random.default_rng(seed), config.data.max_caption_tokens
  tokens = rng.integers(len(wordpiece.SPECIAL_TOKENS), config.data.vocab_size, (n, t)).astype(np.int32)
  lengths = rng.integers(4, t + 1, n)
  tokens[np.arange(t)[None, :] >= lengths[:, None]] = wordpiece.PAD_ID
  tokens[:, 0], tokens[np.arange(n), lengths - 1] = wordpiece.CLS_ID, wordpiece.SEP_ID
  return tokens


# ----------------------------------------------------------------------------------------
# Ours: clip.init and clip.loss_fn, the view and the captions swapped for the fixed batch.


def run_ours(s: dict, args, npz: str) -> dict:

  import jax
  import jax.numpy as jnp
  import numpy as np
  from flax import traverse_util

  from ssljax import optim
  from ssljax.methods import clip
  from ssljax.models.vit import sincos_pos_embed_2d

  config = _config(s)
  images = jax.device_put(side_by_side.random_images(s, config))
  tokens = _captions(config, config.batch_size)
  batch = {"image": images, "tokens": tokens[:, None], "num_captions": np.ones(len(tokens), np.int32)}
  inputs = {"view": clip.train_view(images, jax.random.PRNGKey(1), config), "tokens": jnp.asarray(tokens)}
  params, state = clip.init(config, jax.random.PRNGKey(config.seed), batch)
  tx, _ = optim.make_optimizer(config.optim, batch_size=config.batch_size, total_steps=10_000, steps_per_epoch=1)

  grid = config.data.image_size // config.model.encoder_kwargs.patch_size
  positions = sincos_pos_embed_2d(config.model.encoder_kwargs.hidden, grid, grid)
  arrays = {f"params/{k}": v for k, v in traverse_util.flatten_dict(params, sep="/").items()}
  arrays.update({f"input/{k}": v for k, v in inputs.items()})
  arrays.update(
    {
      "fixed/vision_positions": np.concatenate([np.zeros((1, positions.shape[1]), np.float32), positions]),
      "optim/learning_rate": np.float64(optim.peak_learning_rate(config.optim, config.batch_size)),
    }
  )
  np.savez(npz, **jax.device_get(arrays))

  swaps = lambda a: {
    "train_view": lambda images, rng, config: a["view"],
    "pick_captions": lambda tokens, num_captions, rng: a["tokens"],
  }
  batch = jax.tree.map(jnp.asarray, batch)
  out = side_by_side.time_ours(args, clip, swaps, config, tx, params, state, batch, inputs)
  return {**out, "inputs": {k: list(v.shape) for k, v in inputs.items()}}


# ----------------------------------------------------------------------------------------
# The peer: open_clip.


def _open_clip_model(config):
  import numpy as np
  from open_clip.model import CLIP

  v, c = config.model.encoder_kwargs, config.clip
  eps = {"eps": 1e-6}  # timm's and ours; torch's LayerNorm default is 1e-5
  return CLIP(
    embed_dim=c.embed_dim,
    vision_cfg=dict(
      layers=v.depth,
      width=v.hidden,
      head_width=v.hidden // v.heads,
      mlp_ratio=4.0,
      patch_size=v.patch_size,
      image_size=config.data.image_size,
      no_ln_pre=True,
      pos_embed_type="sin_cos_2d",
      pool_type="tok",
      norm_kwargs=eps,
    ),
    text_cfg=dict(
      context_length=config.data.max_caption_tokens,
      vocab_size=config.data.vocab_size,
      width=c.text_width,
      heads=c.text_heads,
      layers=c.text_depth,
      mlp_ratio=4.0,
      pad_id=0,
      eos_id=3,  # ssljax's [SEP]
      pool_type="eos",
      no_causal_mask=not c.causal,
      norm_kwargs=eps,
    ),
    quick_gelu=False,
    init_logit_scale=np.log(1 / c.init_temperature),
  )


def _block_names(ours: str, theirs: str, count: int, prefix: str) -> dict:
  """Our pre-LN block i's parameters -> open_clip's ResidualAttentionBlock i's, with (transpose?) flags."""
  out = {}
  for i in range(count):
    o, t = f"{ours}{i}", f"{theirs}.{i}"
    for ln_ours, ln_theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
      out[f"{prefix}{o}/{ln_ours}/scale"] = (f"{t}.{ln_theirs}.weight", False)
      out[f"{prefix}{o}/{ln_ours}/bias"] = (f"{t}.{ln_theirs}.bias", False)
    for dense_ours, dense_theirs in (
      ("attn/qkv", "attn.in_proj_"),
      ("attn/proj", "attn.out_proj."),
      ("mlp/fc1", "mlp.c_fc."),
      ("mlp/fc2", "mlp.c_proj."),
    ):
      out[f"{prefix}{o}/{dense_ours}/kernel"] = (f"{t}.{dense_theirs}weight", True)
      out[f"{prefix}{o}/{dense_ours}/bias"] = (f"{t}.{dense_theirs}bias", False)
  return out


def _load_ours(model, config, a) -> None:
  """Copies our params into open_clip's CLIP; every tensor on either side must find its match."""
  import numpy as np
  import torch

  v, c = config.model.encoder_kwargs, config.clip
  p = v.patch_size
  table = {
    "params/encoder/cls_token": ("visual.class_embedding", False),
    "params/encoder/norm/scale": ("visual.ln_post.weight", False),
    "params/encoder/norm/bias": ("visual.ln_post.bias", False),
    "params/image_projection/kernel": ("visual.proj", False),
    "params/text/token_embed/embedding": ("token_embedding.weight", False),
    "params/text/position_embed": ("positional_embedding", False),
    "params/text/norm/scale": ("ln_final.weight", False),
    "params/text/norm/bias": ("ln_final.bias", False),
    "params/text_projection/kernel": ("text_projection", False),
    "params/logit_scale": ("logit_scale", False),
    **_block_names("blocks_", "visual.transformer.resblocks", v.depth, "params/encoder/"),
    **_block_names("block", "transformer.resblocks", c.text_depth, "params/text/"),
  }
  targets = dict(model.state_dict())
  given = set()
  for key in a.files:
    if not key.startswith("params/"):
      continue
    value = a[key]
    if key == "params/encoder/patch_embed/bias":
      if np.any(value != 0):
        raise SystemExit("our patch embedding's bias is not zero: open_clip's patch convolution has none")
      continue
    if key == "params/encoder/patch_embed/kernel":  # (p * p * C, W) over (py, px, c) -> Conv2d (W, C, p, p)
      name, value = "visual.conv1.weight", value.reshape(p, p, -1, value.shape[-1]).transpose(3, 2, 0, 1)
    elif key in table:
      name, transpose = table[key]
      value = value.T if transpose else value
    else:
      raise SystemExit(f"ssljax's {key} {value.shape} has no counterpart in open_clip's CLIP")
    target = targets[name]
    value = value.reshape(target.shape) if value.size == target.numel() and value.ndim != target.dim() else value
    if tuple(value.shape) != tuple(target.shape):
      raise SystemExit(f"ssljax's {key} is {value.shape} but open_clip's '{name}' is {tuple(target.shape)}")
    with torch.no_grad():
      target.copy_(torch.tensor(value))  # not np.ascontiguousarray, which makes logit_scale's () a (1,)
    given.add(name)
  # open_clip's fixed sin-cos table (not a trained parameter) must be ours, [CLS] row zero.
  positions = torch.from_numpy(a["fixed/vision_positions"])
  differs = (targets["visual.positional_embedding"] - positions).abs().max().item()
  if differs > 1e-6:
    raise SystemExit(f"open_clip's sin-cos position table differs from ours by {differs:.1e}")
  given.add("visual.positional_embedding")
  if set(targets) - given:
    raise SystemExit(f"open_clip tensors with no ssljax counterpart: {', '.join(sorted(set(targets) - given))}")


def _import_open_clip():
  """open_clip imports torchvision, whose CUDA-only 0.28.0 wheel needs mae_vs_pytorch.py's shim beside a CPU torch."""
  import mae_vs_pytorch

  mae_vs_pytorch._import_timm()
  import open_clip

  return open_clip


def run_open_clip(s: dict, args, npz: str) -> dict:
  import numpy as np
  import torch

  torch.set_num_threads(args.threads)
  open_clip = _import_open_clip()
  from open_clip.loss import ClipLoss

  config = _config(s)
  a = np.load(npz)
  model = _open_clip_model(config)
  _load_ours(model, config, a)
  model.train()
  images = image_step._nchw(a["input/view"], channels_last=False)
  tokens = torch.from_numpy(a["input/tokens"]).long()
  # open_clip's training/main.py: no weight decay on rank < 2 tensors, gains, biases and logit_scale.
  exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n
  named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
  o = config.optim
  opt = torch.optim.AdamW(
    [
      {"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
      {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": o.weight_decay},
    ],
    lr=float(a["optim/learning_rate"]),
    betas=(o.momentum, o.b2),
    eps=1e-8,
  )
  loss_fn = ClipLoss()

  def step():
    opt.zero_grad(set_to_none=True)
    image_features, text_features, logit_scale = model(images, tokens)
    loss = loss_fn(image_features, text_features, logit_scale)
    loss.backward()
    opt.step()
    with torch.no_grad():  # open_clip's training loop clamps the temperature after every step
      model.logit_scale.clamp_(0, math.log(100))
    return loss.item()

  out = side_by_side.time_steps(step, args.warmup, args.steps)
  version = f"open_clip {open_clip.__version__} on torch {torch.__version__} ({torch.get_num_threads()} threads)"
  return {**out, "version": version, "params": sum(p.numel() for _, p in named)}


def main():
  args = side_by_side.parser(__doc__, ("ours", "open_clip"), steps=10).parse_args()
  if args.child:
    return side_by_side.run_child(args, {"ours": run_ours, "open_clip": run_open_clip})
  install = ".venv/bin/pip install -e '.[bench]'"
  side_by_side.start(args, "open_clip", install, "float32, AdamW")
  s = dict(SETTING, **({"batch": args.batch} if args.batch else {}))
  with tempfile.TemporaryDirectory() as tmp:
    npz = os.path.join(tmp, "ours.npz")
    r = {side: side_by_side.run_side(__file__, side, s, npz, args) for side in ("ours", "open_clip")}
  o, t = r["ours"], r["open_clip"]
  shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in o["inputs"].items())
  print(
    f"clip: {s['config']} with ViT {s['vit']}, text {s['text']}, batch {o['batch']}: {shapes}; "
    f"{o['params']:,} params ours, {t['params']:,} open_clip (trained); compiled in {o['compile_s']:.1f} s",
    flush=True,
  )
  diff, bound, kind = side_by_side.agreement(o["losses"][0], t["losses"][0])
  diff1, _, _ = side_by_side.agreement(o["losses"][1], t["losses"][1])
  rate = lambda side: f"{r[side]['median_ms']:8.1f} ms ({1e3 * o['batch'] / r[side]['median_ms']:6.1f} images/s)"
  print(
    f"  ours {rate('ours')} | open_clip {rate('open_clip')}\n  step-0 loss ours {o['losses'][0]:.6f}, open_clip "
    f"{t['losses'][0]:.6f} |diff| {diff:.1e} ({kind}) (log {o['batch']} = {math.log(o['batch']):.6f}); step 1 "
    f"ours {o['losses'][1]:.6f}, open_clip {t['losses'][1]:.6f}",
    flush=True,
  )
  print(f"{o['version']} against {t['version']}")
  print(f"ratio open_clip ms / ours ms (> 1: ours faster): {t['median_ms'] / o['median_ms']:.2f}x")
  if diff > bound:
    raise SystemExit(f"step-0 losses disagree beyond {side_by_side.TOLERANCE:g}: |diff| {diff:.1e} > {bound:.1e}")


if __name__ == "__main__":
  main()
