"""word2vec (Mikolov et al. 2013): skip-gram or CBOW, negative sampling or hierarchical softmax.

Presets (`--config configs/word2vec.py:PRESET`; shared text defaults in configs/text_base.py):
  cpu    skip-gram, negative 5, window 5, dim 100, min_count 5, sample 1e-3, 1 epoch, on the 17.6M-token
         text8-like corpus (`make corpus` builds it with data/recipe/), gensim's defaults otherwise.
         python launch/run.py --config configs/word2vec.py:cpu --workdir workdirs/w2v_cpu
         python launch/run.py --config configs/word2vec.py:cpu --workdir workdirs/cbow --config.word2vec.mode=cbow
         2-core CPU, skip-gram, 1 epoch: 54 s end to end without plots (48 s to the last step), 393k
         effective words/s (1.12x gensim workers=2 in the same run); analogy 0.149, WS353 0.469, SimLex
         0.211, POS probe 0.731 (majority 0.614). CBOW: 38 s to the last step, 562k words/s, analogy 0.095.
  tiny   a few steps on a small corpus, for tests.
  text8  text8 itself (http://mattmahoney.net/dc/text8.zip, unzipped; pass its path), 5 epochs.
  large  a billion-word-scale corpus (tfds lm1b): dim 300, window 10, negative 10, min_count 10, 3 epochs.

Overrides: --config.data.path=FILE[,FILE...] --config.epochs=5 --config.word2vec.mode=cbow
  --config.word2vec.loss=hs ...
"""

import os

import ml_collections
import text_base

PRESETS = ("cpu", "tiny", "text8", "large")
EVAL_DATA = os.path.join(text_base.ROOT, "ssljax", "evals", "data")  # small public eval sets shipped with ssljax


def get_config(arg=None) -> ml_collections.ConfigDict:
  preset = arg or "cpu"
  # Tokens per engine step, before subsampling: `lanes` contiguous lanes, read by a sequence of SGD updates
  # that each take `word2vec.update_tokens` of every lane (so 2 x 128 = 256 tokens per update here).
  c = text_base.base("word2vec", preset, presets=PRESETS, batch_size=8192, checkpoint_every=20000, log_every=2000)
  # On a host without an accelerator, XLA sees the CPU as this many devices, so the lanes run on both cores.
  c.cpu_devices = 2

  c.data = ml_collections.ConfigDict()
  c.data.name = ""  # a tfds text dataset, read when path is empty
  # plain text file(s): comma-separated or a glob; .xz/.gz/.bz2 ok
  c.data.path = os.path.join(text_base.ROOT, "data", "text", "corpus.txt.xz")
  c.data.train_split = "train"
  c.data.text_feature = "text"
  c.data.min_count = 5
  c.data.max_vocab = 0  # > 0: keep only the most frequent words
  c.data.lowercase = False
  c.data.sample = 1e-3  # frequent-word subsampling threshold; 0 keeps every word

  c.word2vec = ml_collections.ConfigDict()
  c.word2vec.mode = "skipgram"  # skipgram | cbow
  c.word2vec.loss = "ns"  # ns (negative sampling) | hs (hierarchical softmax)
  c.word2vec.dim = 100
  c.word2vec.window = 5
  c.word2vec.negative = 5
  c.word2vec.ns_exponent = 0.75
  # Updates are summed as word2vec's are, so large updates overshoot on frequent words: 4096 tokens per
  # update diverged at alpha 0.025; 256 is stable. Lanes are split over the devices.
  c.word2vec.lanes = 2
  c.word2vec.update_tokens = 128

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "sgd"  # word2vec's sparse SGD; the only choice here
  c.optim.learning_rate = 0.025  # gensim's alpha
  c.optim.final_learning_rate = 0.0001  # gensim's min_alpha: linear decay to it over the run
  c.optim.schedule = "linear"
  c.optim.lr_scaling = "none"
  c.optim.warmup_epochs = 0.0
  c.optim.weight_decay = 0.0
  c.optim.momentum = 0.0
  c.optim.grad_clip_norm = 0.0

  c.evals = ml_collections.ConfigDict()
  c.evals.analogies = f"{EVAL_DATA}/questions-words.txt"
  c.evals.restrict_vocab = 30000
  c.evals.wordsim353 = f"{EVAL_DATA}/wordsim353.tsv"
  c.evals.simlex999 = f"{EVAL_DATA}/simlex999.txt"
  c.evals.pos = f"{EVAL_DATA}/wordnet_pos.tsv"
  c.evals.neighbors = ("king", "france", "computer", "happy", "run")
  c.evals.plots = True

  if preset == "cpu":
    pass
  elif preset == "tiny":
    c.data.path = os.path.join(text_base.ROOT, "tests", "data", "tiny_corpus.txt")
    c.data.min_count = 2
    c.batch_size = 256
    c.cpu_devices = 0
    c.word2vec.lanes = 8  # the tests fake 8 CPU devices
    c.word2vec.update_tokens = 32
    c.epochs = 2
    c.checkpoint_every = 100
    c.log_every = 20
    c.word2vec.dim = 16
    c.evals.restrict_vocab = 1000
    c.evals.plots = False
  elif preset == "text8":
    c.data.path = "text8"
    c.epochs = 5
  elif preset == "large":
    c.data.path = ""
    c.data.name = "lm1b"
    c.data.min_count = 10
    c.word2vec.dim = 300
    c.word2vec.window = 10
    c.word2vec.negative = 10
    c.epochs = 3
    c.checkpoint_every = 200000
  return c
