"""Defaults shared by the text configs (BERT, the neural LM, word2vec). Not a config itself: each method's file
starts from `base` (word2vec) or `wordpiece_lm` (BERT and NNLM, which read the same WordPiece corpus and train
with AdamW) and says what it changes.

Presets are each file's own (cpu, tiny, and one or two for accelerators); `wordpiece_lm` also sets the part of
`tiny` that BERT and NNLM share: the three small public-domain texts of tests/data/lm, a vocabulary of 600,
batches of 16.
"""

import os

import common
import ml_collections

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def base(
  method: str, preset: str, *, presets: tuple[str, ...], batch_size: int, checkpoint_every: int, log_every: int
) -> ml_collections.ConfigDict:
  """The run (`common.run`): one epoch unless total_steps > 0."""
  if preset not in presets:
    raise ValueError(f"unknown preset '{preset}' (known: {', '.join(presets)})")
  return common.run(method, batch_size=batch_size, epochs=1, checkpoint_every=checkpoint_every, log_every=log_every)


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
