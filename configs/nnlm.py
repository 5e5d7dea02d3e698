"""Neural language model: Bengio et al.'s fixed-window model or a GRU, on WordPiece ids, scored by perplexity
against an interpolated modified Kneser-Ney n-gram model estimated on the same training tokens.

Presets (`--config configs/nnlm.py:PRESET`):
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

import ml_collections

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
  c = ml_collections.ConfigDict()
  c.method = "nnlm"
  c.seed = 0
  c.init_from = ""  # a workdir whose newest checkpoint's encoder this run starts from
  c.batch_size = 64  # chunks of data.seq_len tokens
  c.total_steps = 0  # > 0 wins over epochs
  c.epochs = 1
  c.checkpoint_every = 1000
  c.keep_checkpoints = 2
  c.log_every = 100

  c.data = ml_collections.ConfigDict()
  c.data.path = os.path.join(ROOT, "data", "text", "raw")  # a directory of sources, or files / globs
  c.data.max_paragraphs = 0  # > 0: the first N paragraphs of each source
  c.data.valid_every = 50  # paragraph k of a source is held out when k % valid_every == valid_every - 1
  c.data.vocab_size = 8192  # WordPiece, trained on the training split, saved in workdir/tokenizer
  c.data.lowercase = False
  c.data.seq_len = 64  # tokens per training chunk; also the evaluation's chunk

  c.model = ml_collections.ConfigDict()
  c.model.dtype = "float32"  # compute dtype; bfloat16 on accelerators

  c.nnlm = ml_collections.ConfigDict()
  c.nnlm.arch = "gru"  # gru | window (Bengio et al. 2003)
  c.nnlm.context = 8  # window: previous tokens seen
  c.nnlm.embed_dim = 128  # tied input and output embeddings
  c.nnlm.hidden_dim = 512
  c.nnlm.layers = 1  # gru
  c.nnlm.dropout = 0.0

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "adamw"
  c.optim.learning_rate = 2e-3
  c.optim.lr_scaling = "none"
  c.optim.schedule = "cosine"
  c.optim.warmup_epochs = 0.02
  c.optim.weight_decay = 0.0
  c.optim.momentum = 0.9  # adam's b1
  c.optim.b2 = 0.99
  c.optim.grad_clip_norm = 1.0

  c.evals = ml_collections.ConfigDict()
  c.evals.ngram_order = 5
  c.evals.lanes = 64  # held-out text is scored as this many rows, each carried across chunks
  c.evals.prompts = ("The ship", "In the beginning", "Mr. Knightley said")
  c.evals.plots = True

  if preset == "cpu":
    # The seven prose sources (literature, scripture, encyclopedia, news, quotations), 2000 paragraphs each:
    # 0.86M tokens, 4 epochs. Technical manuals and dictionaries repeat boilerplate that n-gram counts
    # memorize in one pass and a network only after many epochs (all 20 sources, 1 epoch: GRU 181, KN 103).
    c.data.path = ",".join(os.path.join(ROOT, "data", "text", "raw", f"{name}.txt.xz") for name in PROSE)
    c.data.max_paragraphs = 2000
    c.epochs = 4
    c.batch_size = 32
    c.nnlm.dropout = 0.1
    c.optim.learning_rate = 3e-3
    c.log_every = 200
  elif preset == "tiny":
    c.data.path = os.path.join(ROOT, "tests", "data", "lm")
    c.data.vocab_size = 600
    c.data.valid_every = 10
    c.data.seq_len = 16
    c.batch_size = 16
    c.total_steps = 100
    c.checkpoint_every = 50
    c.optim.learning_rate = 1e-2
    c.log_every = 10
    c.nnlm.embed_dim = 32
    c.nnlm.hidden_dim = 64
    c.optim.warmup_epochs = 0.0
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
  else:
    raise ValueError(f"unknown preset '{preset}' (known: cpu, tiny, large)")
  return c
