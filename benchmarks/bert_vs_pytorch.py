"""One BERT pre-training step on CPU, ours against Hugging Face `BertForPreTraining` on PyTorch, same shapes.

  python benchmarks/bert_vs_pytorch.py [--sizes mini small] [--batch 32] [--seq 128] [--vocab 8192] [--steps 10]

The step is masked LM + next-sentence prediction, forward, backward and AdamW update, on a batch of
[CLS] A [SEP] B [SEP] pairs that fill the sequence (no padding, as BERT's pre-training pairs). Both run in
this one process on the same cores, so the numbers are comparable to each other, not to another machine.

Ours is the product's step: `train.make_train_step(method, config, tx, schedule)` of the `bert` method with
the `cpu` preset's optimizer (`optim.make_optimizer`: AdamW b2=0.98, weight decay on kernels only, global-norm
clipping at 1.0), jitted as train.py jits it (replicated state donated, batch sharded over a 1-device CPU
mesh), masking on device inside the step. Its params come from `bert.init` itself, without a corpus (the
vocabulary size from the config), so nothing is read from disk.

The peer is what a PyTorch user would write: `BertForPreTraining(BertConfig(...))` in train mode (dropout 0.1
on, as ours), `torch.optim.AdamW` with the same hyperparameters and parameter groups, the same clipping, and the
same masking (15% of ordinary tokens, at most max_predictions per pair, 80/10/10) done in torch inside the
timed step. One structural difference is left as each library has it: HF's MLM head projects every position
onto the vocabulary (B, T, V) and ignores labels of -100, ours only the P masked positions (B, P, V), as the
original BERT code does. Neither runs a learning-rate schedule that costs anything worth counting.

Torch gets `torch.set_num_threads(os.cpu_count())` (`--torch-threads`); XLA its default (all cores). Run it on
an otherwise idle machine (the header prints the load average): torch's OpenMP regions spin at a barrier for
their slowest thread, so when another job takes a core its steps swing by up to 20x (BERT-mini at batch 8 on
2 cores, run under `nice` beside two busy processes: 0.3 to 5.9 s a step with 2 threads, a steady 0.57 s with
one), while XLA's work-stealing pool slows down far less (0.25 to 0.7 s); the median and min beside the mean
show whether that happened.

Warm-up (compiling ours, the first iterations of torch) is not timed. Then the timed steps alternate, one of
ours, one of the peer's, so that noise from other jobs on the machine hits both. Per size it prints ms/step
and tokens/s (batch x sequence per second) of each, and last the ratio ours/peer in tokens/s, one line a size.

The peer is the optional extra `bench` (torch 2.13.0 CPU-only, transformers 5.24.0); the tests do not need it:

  .venv/bin/pip install -e '.[bench]'

CPU-only matters: PyPI's torch 2.13.0 for Linux is the CUDA build, whose dependencies (nvidia-*, triton) add
over 2 GB of wheels that a CPU run never loads. On this project's machines pip's find-links holds the 183 MiB
`torch-2.13.0+cpu` wheel, which `torch==2.13.0` matches and pip prefers, so the line above stays CPU-only.
Elsewhere, take torch from PyTorch's CPU index first, then the extra:

  .venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import config as config_lib
from ssljax import optim, sharding, train
from ssljax.data import wordpiece
from ssljax.methods import bert
from ssljax.models.transformer import BERT_SIZES

INSTALL = ".venv/bin/pip install -e '.[bench]'  (CPU-only torch: see this script's docstring)"


def make_config(size: str, *, batch: int, seq: int):
  """The `cpu` preset at another size and shape; max_predictions scales as the preset's (15% of 128 -> 20)."""
  config = config_lib.get_config(os.path.join(ROOT, "configs", "bert.py") + ":cpu")
  return config_lib.apply_overrides(
    config,
    [
      f"bert.size={size}",
      f"data.max_len={seq}",
      f"batch_size={batch}",
      f"bert.max_predictions={math.ceil(config.bert.mask_prob * seq)}",
    ],
  )


def make_batch(rng: np.random.Generator, *, batch: int, seq: int, vocab: int) -> dict:
  """Full-length pairs [CLS] A [SEP] B [SEP] of random ordinary ids, A of random length; segments 0 then 1."""
  tokens = rng.integers(bert.FIRST_ORDINARY_ID, vocab, (batch, seq), dtype=np.int32)
  segments = np.zeros((batch, seq), np.int32)
  tokens[:, 0] = wordpiece.CLS_ID
  tokens[:, -1] = wordpiece.SEP_ID
  for row, sep in enumerate(rng.integers(2, seq - 2, batch)):  # A and B at least one token each
    tokens[row, sep] = wordpiece.SEP_ID
    segments[row, sep + 1 :] = 1
  return {"tokens": tokens, "segments": segments, "is_next": rng.integers(0, 2, batch, dtype=np.int32)}


class Ours:
  """The product's jitted, donated train step on a 1-device CPU mesh, with its state."""

  def __init__(self, config, batch_np: dict, vocab: int):
    self.mesh = sharding.make_mesh(1)
    repl = sharding.replicated(self.mesh)
    # Schedule lengths only shape the learning-rate curve, not the step's cost.
    self.tx, schedule = optim.make_optimizer(
      config.optim, batch_size=config.batch_size, total_steps=10_000, steps_per_epoch=1_000
    )
    # Without data bert.init takes the vocabulary size from the config (and skips the unigram bias start).
    config.data.vocab_size = vocab
    example = jax.tree.map(jnp.asarray, batch_np)

    def init_state(rng):
      init_rng, train_rng = jax.random.split(rng)
      params, method_state = bert.init(config, init_rng, example, data=None)
      return train.TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=self.tx.init(params),
        method_state=method_state,
        rng=train_rng,
      )

    self.state = jax.jit(init_state, out_shardings=repl)(jax.random.PRNGKey(config.seed))
    self.batch = sharding.global_batch(batch_np, self.mesh)
    step_fn = jax.jit(
      train.make_train_step(bert.METHOD, config, self.tx, schedule),
      donate_argnums=0,
      in_shardings=(repl, sharding.batch_sharded(self.mesh)),
      out_shardings=(repl, repl),
    )
    t0 = time.perf_counter()
    with jax.set_mesh(self.mesh):
      self.compiled = step_fn.lower(self.state, self.batch).compile()
    self.compile_s = time.perf_counter() - t0
    self.num_params = sum(x.size for x in jax.tree.leaves(self.state.params))

  def step(self) -> float:
    """One step, waited for; returns its loss."""
    self.state, metrics = self.compiled(self.state, self.batch)
    jax.block_until_ready((self.state, metrics))
    return float(metrics["loss"])


class Peer:
  """Hugging Face BertForPreTraining + torch.optim.AdamW, the same hyperparameters and masking as ours."""

  def __init__(self, config, batch_np: dict, vocab: int, seed: int = 0):
    import torch
    import transformers

    self.torch = torch
    torch.manual_seed(seed)
    s = BERT_SIZES[config.bert.size]
    hf_config = transformers.BertConfig(
      vocab_size=vocab,
      hidden_size=s["hidden"],
      num_hidden_layers=s["layers"],
      num_attention_heads=s["heads"],
      intermediate_size=s["intermediate"],
      max_position_embeddings=512,
      hidden_dropout_prob=config.bert.dropout,
      attention_probs_dropout_prob=config.bert.dropout,
    )
    self.model = transformers.BertForPreTraining(hf_config)
    self.model.train()
    self.attn_implementation = getattr(self.model.config, "_attn_implementation", "?")
    params = [p for p in self.model.parameters() if p.requires_grad]
    o = config.optim
    # Decay on kernels only, as optim.decay_mask (embeddings are 2-D in both, so both decay them).
    groups = [
      {"params": [p for p in params if p.ndim > 1], "weight_decay": o.weight_decay},
      {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    self.opt = torch.optim.AdamW(groups, lr=o.learning_rate, betas=(o.momentum, o.b2))
    self.clip = o.grad_clip_norm
    self.tokens = torch.from_numpy(batch_np["tokens"]).long()
    self.segments = torch.from_numpy(batch_np["segments"]).long()
    self.attention_mask = torch.ones_like(self.tokens)
    self.nsp_labels = torch.from_numpy(1 - batch_np["is_next"]).long()  # HF: 0 = B follows A
    self.vocab, self.mask_prob, self.max_predictions = vocab, config.bert.mask_prob, config.bert.max_predictions
    self.num_params = sum(p.numel() for p in params)

  def mask(self):
    """bert.mask_tokens in torch: inputs, and MLM labels that are -100 except at the predicted positions."""
    torch, tokens = self.torch, self.tokens
    ordinary = tokens >= bert.FIRST_ORDINARY_ID
    count = torch.clamp(torch.round(self.mask_prob * ordinary.sum(1)), 1, self.max_predictions)
    # transformer.random_order: the argsort of uniform noise, special tokens last.
    noise = torch.where(ordinary, torch.rand(tokens.shape), torch.full(tokens.shape, math.inf))
    positions = torch.argsort(noise, dim=1, stable=True)[:, : self.max_predictions]
    weights = (torch.arange(self.max_predictions)[None, :] < count[:, None]) & torch.gather(ordinary, 1, positions)
    labels = torch.gather(tokens, 1, positions)
    how = torch.rand(positions.shape)
    random_tokens = torch.randint(bert.FIRST_ORDINARY_ID, self.vocab, positions.shape)
    new = torch.where(
      how < 0.8, torch.full_like(labels, wordpiece.MASK_ID), torch.where(how < 0.9, random_tokens, labels)
    )
    inputs = tokens.scatter(1, positions, torch.where(weights, new, labels))
    mlm_labels = torch.full_like(tokens, -100).scatter(
      1, positions, torch.where(weights, labels, torch.full_like(labels, -100))
    )
    return inputs, mlm_labels

  def step(self) -> float:
    inputs, mlm_labels = self.mask()
    out = self.model(
      input_ids=inputs,
      token_type_ids=self.segments,
      attention_mask=self.attention_mask,
      labels=mlm_labels,
      next_sentence_label=self.nsp_labels,
    )
    out.loss.backward()
    if self.clip > 0:
      self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
    self.opt.step()
    self.opt.zero_grad(set_to_none=True)
    return float(out.loss.detach())


def run_size(size: str, args) -> dict:
  config = make_config(size, batch=args.batch, seq=args.seq)
  batch_np = make_batch(np.random.default_rng(0), batch=args.batch, seq=args.seq, vocab=args.vocab)
  ours, peer = Ours(config, batch_np, args.vocab), Peer(config, batch_np, args.vocab)
  for _ in range(args.warmup):
    ours.step()
    peer.step()
  times = {"ours": [], "peer": []}
  losses = {}
  for _ in range(args.steps):
    for name, runner in (("ours", ours), ("peer", peer)):
      t0 = time.perf_counter()
      losses[name] = runner.step()
      times[name].append(time.perf_counter() - t0)
  tokens = args.batch * args.seq
  out = {"compile_s": ours.compile_s, "attn": peer.attn_implementation}
  for name in times:
    step_s = sum(times[name]) / len(times[name])
    out[name] = {
      "ms": 1e3 * step_s,
      "median_ms": 1e3 * float(np.median(times[name])),
      "min_ms": 1e3 * min(times[name]),
      "tok_s": tokens / step_s,
      "loss": losses[name],
      "params": ours.num_params if name == "ours" else peer.num_params,
    }
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sizes", nargs="+", default=["mini", "small"], choices=list(BERT_SIZES))
  parser.add_argument("--batch", type=int, default=32, help="pairs per step")
  parser.add_argument("--seq", type=int, default=128, help="tokens per pair")
  parser.add_argument("--vocab", type=int, default=8192, help="the cpu preset's WordPiece vocabulary")
  parser.add_argument("--steps", type=int, default=10, help="timed steps of each")
  parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each, after compiling ours")
  parser.add_argument(
    "--torch-threads",
    type=int,
    default=os.cpu_count(),
    help="torch's intra-op threads (default: all cores, as XLA uses)",
  )
  args = parser.parse_args()
  if args.seq > 512:
    parser.error("--seq exceeds BERT's 512 positions")
  try:
    import torch
    import transformers
  except ImportError as e:
    raise SystemExit(f"the peer needs torch and transformers ({e}); install them with:\n  {INSTALL}") from None
  torch.set_num_threads(args.torch_threads)
  print(
    f"jax {jax.__version__} ({jax.devices()[0].platform}, XLA default threads) | torch {torch.__version__} "
    f"({torch.get_num_threads()} threads) | transformers {transformers.__version__} | {os.cpu_count()} cores, "
    f"load average {os.getloadavg()[0]:.1f}"
  )
  print(
    f"batch {args.batch} x seq {args.seq} = {args.batch * args.seq} tokens/step, vocab {args.vocab}, "
    f"{args.warmup} warm-up + {args.steps} timed steps each, alternating",
    flush=True,
  )
  results = {}
  for size in args.sizes:
    s = BERT_SIZES[size]
    r = results[size] = run_size(size, args)
    print(
      f"BERT-{size} (L={s['layers']}, H={s['hidden']}), ours compiled in {r['compile_s']:.1f} s, "
      f"HF attention '{r['attn']}':"
    )
    for name in ("ours", "peer"):
      m = r[name]
      print(
        f"  {name}: {m['ms']:8.1f} ms/step (median {m['median_ms']:.1f}, min {m['min_ms']:.1f}) | "
        f"{m['tok_s']:8.0f} tokens/s | "
        f"{m['params'] / 1e6:.2f}M params | last loss {m['loss']:.3f}",
        flush=True,
      )
  print("ratio ours/peer, tokens/s:")
  for size, r in results.items():
    print(f"  BERT-{size}: {r['ours']['tok_s'] / r['peer']['tok_s']:.2f}x")


if __name__ == "__main__":
  main()
