"""Defaults shared by the text configs (BERT, the neural LM, word2vec). Not a config itself: each method's file
starts from `base` (word2vec) or `wordpiece_lm` (BERT and NNLM, which read the same WordPiece corpus and train
with AdamW) and says what it changes.

Presets are each file's own (cpu, tiny, and one or two for accelerators); `wordpiece_lm` also sets the part of
`tiny` that BERT and NNLM share: the three small public-domain texts of tests/data/lm, a vocabulary of 600,
batches of 16.
"""

import os

import ml_collections

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def base(
  method: str, preset: str, *, presets: tuple[str, ...], batch_size: int, checkpoint_every: int, log_every: int
) -> ml_collections.ConfigDict:
  """The run: method, seed, length (one epoch unless total_steps > 0), checkpoints and logging."""
  if preset not in presets:
    raise ValueError(f"unknown preset '{preset}' (known: {', '.join(presets)})")
  c = ml_collections.ConfigDict()
  c.method = method
  c.seed = 0
  c.init_from = ""  # a workdir whose newest checkpoint's encoder this run starts from
  c.batch_size = batch_size
  c.total_steps = 0  # > 0 wins over epochs
  c.epochs = 1
  c.checkpoint_every = checkpoint_every
  c.keep_checkpoints = 2
  c.log_every = log_every
  return c


def adamw(*, learning_rate: float, warmup_epochs: float, weight_decay: float, b2: float) -> ml_collections.ConfigDict:
  """AdamW with a cosine schedule and global-norm clipping at 1.0; the learning rate is not scaled by batch."""
  o = ml_collections.ConfigDict()
  o.name = "adamw"
  o.learning_rate = learning_rate
  o.lr_scaling = "none"
  o.schedule = "cosine"
  o.warmup_epochs = warmup_epochs
  o.weight_decay = weight_decay
  o.momentum = 0.9  # adam's b1
  o.b2 = b2
  o.grad_clip_norm = 1.0
  return o


def wordpiece_lm(
  method: str,
  preset: str,
  *,
  presets: tuple[str, ...],
  batch_size: int,
  checkpoint_every: int,
  log_every: int,
  optim: ml_collections.ConfigDict,
) -> ml_collections.ConfigDict:
  """`base`, the cased WordPiece corpus of `make corpus` (data.*), model.dtype and `optim`; with `tiny` the
  shared part of that preset."""
  c = base(
    method, preset, presets=presets, batch_size=batch_size, checkpoint_every=checkpoint_every, log_every=log_every
  )
  c.data = ml_collections.ConfigDict()
  c.data.path = os.path.join(ROOT, "data", "text", "raw")  # a directory of sources, or files / globs
  c.data.max_paragraphs = 0  # > 0: the first N paragraphs of each source
  c.data.valid_every = 50  # paragraph k of a source is held out when k % valid_every == valid_every - 1
  c.data.vocab_size = 8192  # WordPiece, trained on the training split, saved in workdir/tokenizer
  c.data.lowercase = False

  c.model = ml_collections.ConfigDict()
  c.model.dtype = "float32"  # compute dtype; bfloat16 on accelerators

  c.optim = optim

  if preset == "tiny":
    c.data.path = os.path.join(ROOT, "tests", "data", "lm")
    c.data.vocab_size = 600
    c.data.valid_every = 10
    c.batch_size = 16
    c.log_every = 10
    c.optim.warmup_epochs = 0.0
  return c
