"""BERT pre-training (Devlin et al. 2019): masked language modelling and next-sentence prediction.

Pairs [CLS] A [SEP] B [SEP] are built once from document-ordered text, filled up to `data.max_len` so that
padding costs little (`ssljax.data.lm.next_segment_examples`); B follows A for half of them. Masking runs on
device inside the step, keyed by the step: 15% of each pair's ordinary tokens (at most `bert.max_predictions`)
are predicted, of which 80% are replaced by [MASK], 10% by a random token and 10% left as they are.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssljax import losses, sharding
from ssljax.config import ConfigError
from ssljax.data import lm, wordpiece
from ssljax.methods.base import Method
from ssljax.models.transformer import BERT_SIZES, BertForPretraining, bert_encoder, random_order

FIRST_ORDINARY_ID = len(wordpiece.SPECIAL_TOKENS)  # ids below are [PAD] [UNK] [CLS] [SEP] [MASK]


def units_per_example(config) -> int:
  return config.data.max_len


def build_encoder(config, vocab_size: int):
  b = config.bert
  return bert_encoder(
    b.size, vocab_size, max_len=config.data.max_len, dropout=b.dropout, dtype=jnp.dtype(config.model.dtype)
  )


def build_model(config, vocab_size: int) -> BertForPretraining:
  return BertForPretraining(build_encoder(config, vocab_size))


def _vocab_size(params) -> int:
  return params["encoder"]["token_embed"]["embedding"].shape[0]


def pairs(corpus: lm.TokenizedCorpus, split: str, config) -> dict:
  docs = corpus.train if split == "train" else corpus.valid
  return lm.next_segment_examples(
    docs,
    max_len=config.data.max_len,
    seed=config.seed + (split != "train"),
    cls_id=wordpiece.CLS_ID,
    sep_id=wordpiece.SEP_ID,
    pad_id=wordpiece.PAD_ID,
  )


def check_config(config) -> None:
  if config.bert.size not in BERT_SIZES:
    raise ConfigError(f"bert.size='{config.bert.size}' is not one of {', '.join(BERT_SIZES)}")
  if not 0.0 < config.bert.mask_prob < 1.0:
    raise ConfigError(f"bert.mask_prob={config.bert.mask_prob} must be in (0, 1)")
  if not 5 <= config.data.max_len <= 512:
    raise ConfigError(
      f"data.max_len={config.data.max_len} must be in [5, 512]: [CLS] A [SEP] B [SEP] within BERT's positions"
    )


def load_train_data(config, *, workdir: str | None = None) -> lm.TextTrainData:
  corpus = lm.load_corpus(config.data, workdir, save_tokenizer=jax.process_index() == 0)
  train = pairs(corpus, "train", config)
  print(
    f"pairs: {len(train['is_next'])} of up to {config.data.max_len} tokens, "
    f"{np.mean(train['tokens'] != wordpiece.PAD_ID):.1%} of positions real, "
    f"{np.mean(train['is_next']):.1%} true next",
    flush=True,
  )
  return lm.TextTrainData(corpus, lm.RowStream(train))


def init(config, rng, example_batch, *, data: lm.TextTrainData | None):
  """`data` None (benchmarks): a vocabulary of `data.vocab_size` tokens."""
  model = build_model(config, data.corpus.tokenizer.vocab_size if data else config.data.vocab_size)
  b = example_batch
  positions = jnp.zeros((b["tokens"].shape[0], config.bert.max_predictions), jnp.int32)
  params = model.init(
    {"params": rng}, b["tokens"], b["segments"], b["tokens"] != wordpiece.PAD_ID, positions, train=False
  )["params"]
  if data is not None:
    # The MLM output biases start at the log unigram frequencies of the tokens it predicts (add-one smoothed):
    # a zero start spends the first few hundred Adam steps learning just that (BERT's early plateau).
    tokens = data.batches.arrays["tokens"]
    counts = np.bincount(tokens[tokens >= FIRST_ORDINARY_ID], minlength=params["mlm_bias"].shape[0]) + 1.0
    counts[:FIRST_ORDINARY_ID] = 1e-3  # never a label
    params["mlm_bias"] = jnp.asarray(np.log(counts / counts.sum()), jnp.float32)
  return params, {}


def mask_tokens(rng, tokens, *, vocab_size: int, max_predictions: int, mask_prob: float = 0.15):
  """BERT's masking of a batch of token rows (on device).

  Each row predicts round(mask_prob * its ordinary tokens) positions (at least 1, at most `max_predictions`),
  chosen uniformly among its ordinary tokens (not special, not padding); 80% of them become [MASK], 10% a
  random ordinary token, 10% stay. Returns (inputs, positions (B, P), labels (B, P), weights (B, P)).
  """
  tokens = jnp.asarray(tokens)
  if max_predictions > tokens.shape[1]:
    raise ValueError(f"max_predictions={max_predictions} exceeds the {tokens.shape[1]} tokens of a row")
  k_pick, k_how, k_random = jax.random.split(rng, 3)
  ordinary = tokens >= FIRST_ORDINARY_ID
  count = jnp.clip(jnp.round(mask_prob * ordinary.sum(1)), 1, max_predictions)
  positions = random_order(k_pick, tokens.shape, exclude=~ordinary)[:, :max_predictions]
  # A row with fewer ordinary tokens than P reaches its special ones at the end of the order: never predicted.
  weights = (jnp.arange(max_predictions)[None, :] < count[:, None]) & jnp.take_along_axis(ordinary, positions, axis=1)
  labels = jnp.take_along_axis(tokens, positions, axis=1)
  how = jax.random.uniform(k_how, positions.shape)
  random_tokens = jax.random.randint(k_random, positions.shape, FIRST_ORDINARY_ID, vocab_size, tokens.dtype)
  new = jnp.where(how < 0.8, wordpiece.MASK_ID, jnp.where(how < 0.9, random_tokens, labels))
  rows = jnp.arange(tokens.shape[0])[:, None]
  inputs = tokens.at[rows, positions].set(jnp.where(weights, new, labels))
  return inputs, positions, labels, weights.astype(jnp.float32)


def _forward(params, batch, rng, config, *, train: bool):
  vocab = _vocab_size(params)
  k_mask, k_drop = jax.random.split(rng)
  tokens = batch["tokens"]
  inputs, positions, labels, weights = mask_tokens(
    k_mask, tokens, vocab_size=vocab, max_predictions=config.bert.max_predictions, mask_prob=config.bert.mask_prob
  )
  (mlm_logits, nsp_logits), _ = build_model(config, vocab).apply(
    {"params": params},
    inputs,
    batch["segments"],
    tokens != wordpiece.PAD_ID,
    positions,
    train=train,
    rngs={"dropout": k_drop},
  )
  mlm_loss, mlm_accuracy = losses.masked_lm(mlm_logits, labels, weights)
  nsp_loss = optax.softmax_cross_entropy_with_integer_labels(nsp_logits, batch["is_next"]).mean()
  nsp_accuracy = jnp.mean(jnp.argmax(nsp_logits, -1) == batch["is_next"])
  return mlm_loss + nsp_loss, {
    "mlm_loss": mlm_loss,
    "mlm_accuracy": mlm_accuracy,
    "nsp_loss": nsp_loss,
    "nsp_accuracy": nsp_accuracy,
    "mlm_weight": weights.sum(),
  }


def loss_fn(params, state, batch, rng, config, step):
  del step
  loss, metrics = _forward(params, batch, rng, config, train=True)
  metrics.pop("mlm_weight")
  return loss, (metrics, state)


def embed(params, state, batch, config):
  """The pooled [CLS] vector of each row (what a classifier head reads)."""
  encoder = build_encoder(config, _vocab_size(params))
  _, aux = encoder.apply(
    {"params": params["encoder"]},
    batch["tokens"],
    batch.get("segments"),
    batch["tokens"] != wordpiece.PAD_ID,
    train=False,
  )
  return aux["pooled"]


def batch_from_inputs(config, workdir: str, texts) -> dict:
  """Strings -> [CLS] text [SEP] rows (cut to `data.max_len`), tokenized with the run's WordPiece."""
  tok = wordpiece.load(os.path.join(workdir, "tokenizer"))
  cut = config.data.max_len - 2
  tokens = wordpiece.pad_rows([[tok.cls_id, *ids[:cut].tolist(), tok.sep_id] for ids in tok.encode_batch(texts)])
  return {"tokens": tokens, "segments": np.zeros_like(tokens)}


def trained_encoder(config, params, state):
  del state
  return build_encoder(config, _vocab_size(params)), {"params": params["encoder"]}


def pretraining_metrics(config, params, examples: dict, mesh, *, seed: int) -> dict:
  """Masked-LM accuracy and perplexity (over all predicted tokens) and NSP accuracy on held-out pairs, with a
  fixed masking key per batch so the figures are comparable between checkpoints."""
  batch_size = config.evals.batch_size - config.evals.batch_size % mesh.size or mesh.size
  repl, rows = sharding.replicated(mesh), sharding.batch_sharded(mesh)

  @functools.partial(jax.jit, in_shardings=(repl, rows, repl), out_shardings=repl)
  def sums(params, batch, rng):
    _, m = _forward(params, batch, rng, config, train=False)
    w = m["mlm_weight"]
    return {
      "mlm_nll": m["mlm_loss"] * w,
      "mlm_correct": m["mlm_accuracy"] * w,
      "mlm_weight": w,
      "nsp_correct": m["nsp_accuracy"] * batch["is_next"].shape[0],
    }

  n = len(examples["is_next"]) - len(examples["is_next"]) % batch_size
  if n == 0:
    raise ConfigError(
      f"the held-out text makes {len(examples['is_next'])} pairs, fewer than evals.batch_size={batch_size}"
    )
  total = {}
  for i, start in enumerate(range(0, n, batch_size)):
    batch = sharding.host_to_global({k: v[start : start + batch_size] for k, v in examples.items()}, mesh)
    # A host copy of the key: replicated as numpy, where a key array would live on one local device.
    out = sharding.to_host(sums(params, batch, np.asarray(jax.random.PRNGKey(seed + i))))
    total = {k: total.get(k, 0.0) + float(v) for k, v in out.items()}
  return {
    "mlm/accuracy": total["mlm_correct"] / total["mlm_weight"],
    "mlm/perplexity": float(np.exp(total["mlm_nll"] / total["mlm_weight"])),
    "nsp/accuracy": total["nsp_correct"] / n,
  }


def evaluate(context) -> dict:
  config, workdir, mesh, params = context.config, context.workdir, context.mesh, context.params
  corpus = context.train_data.corpus
  results = pretraining_metrics(config, params, pairs(corpus, "valid", config), mesh, seed=config.seed + 7)
  print("held-out pairs: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()), flush=True)
  if config.evals.finetune:
    from ssljax.evals import text_finetune  # lazy: sklearn

    results.update(
      text_finetune.evaluate(
        config, workdir=workdir, mesh=mesh, params=params, corpus=corpus, build_encoder=build_encoder
      )
    )
  return results


METHOD = Method(
  name="bert",
  load_train_data=load_train_data,
  init=init,
  loss_fn=loss_fn,
  embed=embed,
  evaluate=evaluate,
  check_config=check_config,
  units_per_example=units_per_example,
  example_unit="tok",
  batch_from_inputs=batch_from_inputs,
  encoder=trained_encoder,
)
