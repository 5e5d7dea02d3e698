"""BERT pre-training (masked LM + next-sentence prediction) on cased WordPiece text, then fine-tuning on which
source a paragraph comes from, at 100%, 10% and 1% of the labels, against the same model trained from scratch
and a bag-of-words logistic regression.

Presets (`--config configs/bert.py:PRESET`; shared text defaults in configs/text_base.py):
  cpu     BERT-mini (4 layers, 256 wide) on the 20 cased sources of `make corpus` (data/text/raw;
          recipe in data/recipe/), 5000 paragraphs each, WordPiece vocabulary 8192, 1000 steps of 32 pairs of up
          to 64 tokens.
          python launch/run.py --config configs/bert.py:cpu --workdir workdirs/bert_cpu
          2-core CPU: 18.5 min end to end (9.4 min to the last step, 3.8k tokens/s; then fine-tuning).
          Held-out pairs: MLM accuracy 0.137 (perplexity 471), NSP 0.731. Source of a paragraph (20 classes),
          fine-tuned / from scratch / bag of words, all reading the same first 62 tokens: 100% labels 0.559 /
          0.528 / 0.739; 10% 0.393 / 0.276 / 0.501; 1% 0.266 / 0.126 / 0.178. Pre-training this short beats
          scratch at every fraction but bag-of-words only at 1%: not yet what issue 4 asks.
  tiny    a few steps of BERT-tiny (2 layers, 128 wide) on three small public-domain texts, for tests.
  base    BERT-base, vocabulary 30522, pairs of 128 tokens, batch 256, bfloat16: one accelerator.

Overrides: --config.bert.size=small --config.data.max_len=256 --config.total_steps=20000 ...
Then: python -m ssljax.demo fill --workdir workdirs/bert_cpu "I love to eat peanut [MASK] and jam."
"""

import common
import ml_collections
import text_base

PRESETS = ("cpu", "tiny", "base")


def get_config(arg=None) -> ml_collections.ConfigDict:
  preset = arg or "cpu"
  c = text_base.wordpiece_lm(
    "bert",
    preset,
    presets=PRESETS,
    batch_size=64,  # sentence pairs
    checkpoint_every=500,
    log_every=50,
    optim=common.adamw(learning_rate=1e-3, warmup_epochs=0.05, weight_decay=0.01, b2=0.98),
  )
  c.data.max_len = 128  # tokens per pair, [CLS] A [SEP] B [SEP]

  c.bert = ml_collections.ConfigDict()
  c.bert.size = "mini"  # tiny | mini | small | medium | base (Turc et al. 2019)
  c.bert.dropout = 0.1
  c.bert.mask_prob = 0.15
  c.bert.max_predictions = 20  # per pair: 15% of 128, rounded up

  c.evals = ml_collections.ConfigDict()
  c.evals.batch_size = 64
  c.evals.finetune = True
  c.evals.label_fractions = (1.0, 0.1, 0.01)
  c.evals.finetune_per_class = 100  # training paragraphs per source (100% of the labels)
  c.evals.finetune_test_per_class = 50
  c.evals.finetune_min_tokens = 8
  c.evals.finetune_max_len = 128
  c.evals.finetune_batch_size = 32
  c.evals.finetune_epochs = 3.0
  c.evals.finetune_min_steps = 60
  c.evals.finetune_max_steps = 0  # no cap: the epochs decide
  c.evals.finetune_validation_fraction = 0.1  # of the labelled paragraphs, to choose the stopping step
  c.evals.finetune_evaluations = 10
  c.evals.finetune_learning_rate = 1e-4

  if preset == "cpu":
    # ~10 minutes of pre-training at ~3.4k tokens/s here. Many small steps beat few large ones at this budget:
    # 300 steps of 64 x 128 tokens left the MLM on its unigram plateau (accuracy 0.04, NSP at chance).
    c.data.max_paragraphs = 5000
    c.data.max_len = 64
    c.batch_size = 32
    c.bert.max_predictions = 10
    c.total_steps = 1000
    c.checkpoint_every = 250
    c.log_every = 100
    # Small BERTs fine-tune well at a higher rate than BERT-base's 2e-5..1e-4 (at 1e-4 and 60-125 steps even
    # the from-scratch model stayed near chance: 0.02-0.08).
    c.evals.finetune_learning_rate = 5e-4
    c.evals.finetune_epochs = 4.0
    c.evals.finetune_min_steps = 150
  elif preset == "tiny":
    c.data.max_len = 32
    c.total_steps = 40
    c.checkpoint_every = 20
    c.bert.size = "tiny"
    c.bert.max_predictions = 5
    c.evals.batch_size = 16
    c.evals.finetune_per_class = 16
    c.evals.finetune_test_per_class = 8
    c.evals.label_fractions = (1.0, 0.25)
    c.evals.finetune_max_len = 32
    c.evals.finetune_batch_size = 16
    c.evals.finetune_min_steps = 4
    c.evals.finetune_epochs = 1.0
  elif preset == "base":
    c.bert.size = "base"
    c.data.vocab_size = 30522
    c.batch_size = 256
    c.epochs = 10
    c.optim.learning_rate = 1e-4
    c.optim.warmup_epochs = 0.1
    c.model.dtype = "bfloat16"
    c.checkpoint_every = 5000
    c.evals.finetune_per_class = 2000
    c.evals.finetune_test_per_class = 500
  return c
