"""Neural language model: Bengio et al.'s fixed-window model or a GRU, on WordPiece ids, scored by perplexity
against an interpolated modified Kneser-Ney n-gram model estimated on the same training tokens.

Presets (`--config configs/nnlm.py:PRESET`; shared text defaults in configs/text_base.py):
  cpu     GRU (1 layer, 512 units, 128-d tied embeddings) on the seven cased prose sources of `make corpus`
          (data/text/raw; recipe in data/recipe/), 2000 paragraphs each, WordPiece vocabulary 8192, every 50th
          paragraph held out; 4 epochs of 0.86M tokens.
          python launch/run.py --config configs/nnlm.py:cpu --workdir workdirs/nnlm_cpu
          2-core CPU: 12.6 min; validation perplexity 113.8 against interpolated Kneser-Ney 131.7 (4-gram;
          5-gram 131.1), lower on every source. After 1 epoch on all 20 sources (640k tokens): 181 vs 103.
          --config.nnlm.arch=window: Bengio's model (8 tokens, 512 tanh units); 1 epoch on all 20: 221.
  tiny    a few steps on three small public-domain texts (tests/data/lm), for tests.
  large   a 2-layer GRU of 1024 units, vocabulary 32k, for an accelerator.

Overrides: --config.data.path=DIR --config.nnlm.arch=window --config.evals.ngram_order=5 ...
"""

import os

import common
import ml_collections
import text_base

PRESETS = ("cpu", "tiny", "large")
PROSE = (
  "austen_novels",
  "moby_dick",
  "kjv_bible",
  "wikipedia_gensim_shard",
  "lee_news",
  "devils_dictionary",
  "fortunes",
)


def get_config(arg=None) -> ml_collections.ConfigDict:
  preset = arg or "cpu"
  c = text_base.wordpiece_lm(
    "nnlm",
    preset,
    presets=PRESETS,
    batch_size=64,  # chunks of data.seq_len tokens
    checkpoint_every=1000,
    log_every=100,
    optim=common.adamw(learning_rate=2e-3, warmup_epochs=0.02, weight_decay=0.0, b2=0.99),
  )
  c.data.seq_len = 64  # tokens per training chunk; also the evaluation's chunk

  c.nnlm = ml_collections.ConfigDict()
  c.nnlm.arch = "gru"  # gru | window (Bengio et al. 2003)
  c.nnlm.context = 8  # window: previous tokens seen
  c.nnlm.embed_dim = 128  # tied input and output embeddings
  c.nnlm.hidden_dim = 512
  c.nnlm.layers = 1  # gru
  c.nnlm.dropout = 0.0

  c.evals = ml_collections.ConfigDict()
  c.evals.ngram_order = 5
  c.evals.lanes = 64  # held-out text is scored as this many rows, each carried across chunks
  c.evals.prompts = ("The ship", "In the beginning", "Mr. Knightley said")
  c.evals.plots = True

  if preset == "cpu":
    # The seven prose sources (literature, scripture, encyclopedia, news, quotations), 2000 paragraphs each:
    # 0.86M tokens, 4 epochs. Technical manuals and dictionaries repeat boilerplate that n-gram counts
    # memorize in one pass and a network only after many epochs (all 20 sources, 1 epoch: GRU 181, KN 103).
    c.data.path = ",".join(os.path.join(text_base.ROOT, "data", "text", "raw", f"{name}.txt.xz") for name in PROSE)
    c.data.max_paragraphs = 2000
    c.epochs = 4
    c.batch_size = 32
    c.nnlm.dropout = 0.1
    c.optim.learning_rate = 3e-3
    c.log_every = 200
  elif preset == "tiny":
    c.data.seq_len = 16
    c.total_steps = 100
    c.checkpoint_every = 50
    c.optim.learning_rate = 1e-2
    c.nnlm.embed_dim = 32
    c.nnlm.hidden_dim = 64
    c.evals.ngram_order = 3
    c.evals.lanes = 8
    c.evals.plots = False
  elif preset == "large":
    c.data.vocab_size = 32768
    c.data.seq_len = 128
    c.batch_size = 256
    c.epochs = 5
    c.nnlm.embed_dim = 512
    c.nnlm.hidden_dim = 1024
    c.nnlm.layers = 2
    c.nnlm.dropout = 0.1
    c.model.dtype = "bfloat16"
  return c
