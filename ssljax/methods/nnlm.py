"""Neural language model (Bengio et al. 2003; a GRU as the recurrent variant), scored by perplexity.

Training reads WordPiece ids of the cased corpus as one stream, [CLS] paragraph [SEP] ..., in chunks of
`data.seq_len + 1` tokens, and minimizes the next-token cross-entropy on every target but [CLS] (a paragraph's
first token is given, not predicted; its closing [SEP] is). Evaluation scores the held-out paragraphs the same
way with the context carried over chunks, so the perplexity is exact, and sets it beside an interpolated
modified Kneser-Ney n-gram model estimated on the same training tokens and scored on the same targets.
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import sharding
from ssljax.config import ConfigError
from ssljax.data import lm, wordpiece
from ssljax.methods.base import Method
from ssljax.models.nnlm import RecurrentLM, WindowLM


def units_per_example(config) -> int:
  """Tokens predicted per batch row (throughput is reported in tokens/s)."""
  return config.data.seq_len


def build_model(config, vocab_size: int):
  m, dtype = config.nnlm, jnp.dtype(config.model.dtype)
  common = dict(
    vocab_size=vocab_size,
    embed_dim=m.embed_dim,
    hidden_dim=m.hidden_dim,
    dropout=m.dropout,
    pad_id=wordpiece.PAD_ID,
    cls_id=wordpiece.CLS_ID,
    dtype=dtype,
  )
  if m.arch == "window":
    return WindowLM(context=m.context, **common)
  if m.arch == "gru":
    return RecurrentLM(layers=m.layers, **common)
  raise ConfigError(f"nnlm.arch='{m.arch}' is not one of window, gru")


def _vocab_size(params) -> int:
  return params["embed"]["embedding"].shape[0]


def check_config(config) -> None:
  build_model(config, 8)  # a bad architecture
  if config.data.seq_len < 1:
    raise ConfigError(f"data.seq_len={config.data.seq_len} must be >= 1")


def load_train_data(config, *, workdir: str | None = None) -> lm.TextTrainData:
  corpus = lm.load_corpus(config.data, workdir, save_tokenizer=jax.process_index() == 0)
  tok = corpus.tokenizer
  stream = lm.stream_with_boundaries(corpus.train, cls_id=tok.cls_id, sep_id=tok.sep_id)
  return lm.TextTrainData(corpus, lm.ChunkStream(stream, config.data.seq_len))


def init(config, rng, example_batch, *, data: lm.TextTrainData):
  vocab = data.corpus.tokenizer.vocab_size
  model = build_model(config, vocab)
  params = model.init({"params": rng}, example_batch["tokens"][:, :-1], train=False)["params"]
  # Output biases start at the training text's log unigram frequencies (add-one smoothed): Adam moves a
  # parameter by about the learning rate per step, so biases starting at 0 would need thousands of steps
  # just to reach the ~10 nats that separate frequent from rare tokens.
  counts = np.bincount(data.batches.tokens, minlength=vocab).astype(np.float64) + 1.0
  params["output"]["output_bias"] = jnp.asarray(np.log(counts / counts.sum()), jnp.float32)
  return params, {}


def token_losses(logits, targets):
  """Per-token negative log-likelihood (float32) and the mask of positions that count: not [CLS], not [PAD]."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
  counted = (targets != wordpiece.CLS_ID) & (targets != wordpiece.PAD_ID)
  return nll, counted


def loss_fn(params, state, batch, rng, config, step):
  del step
  tokens = batch["tokens"]
  inputs, targets = tokens[:, :-1], tokens[:, 1:]
  logits, _ = build_model(config, _vocab_size(params)).apply(
    {"params": params}, inputs, train=True, rngs={"dropout": rng}
  )
  nll, counted = token_losses(logits, targets)
  n = jnp.maximum(counted.sum(), 1)
  loss = jnp.sum(nll * counted) / n
  correct = (jnp.argmax(logits, -1) == targets) & counted
  return loss, ({"accuracy": correct.sum() / n, "perplexity": jnp.exp(loss)}, state)


def embed(params, state, batch, config):
  """Mean of the last hidden layer over each row's tokens (a paragraph feature for probes)."""
  _, aux = build_model(config, _vocab_size(params)).apply({"params": params}, batch["tokens"], train=False)
  mask = (batch["tokens"] != wordpiece.PAD_ID)[..., None]
  return jnp.sum(aux["features"] * mask, 1) / jnp.maximum(mask.sum(1), 1)


def batch_from_inputs(config, workdir: str, texts) -> dict:
  """Strings -> [CLS] text rows tokenized with the run's WordPiece, padded with [PAD]."""
  del config
  tok = wordpiece.load(os.path.join(workdir, "tokenizer"))
  return {"tokens": wordpiece.pad_rows([[tok.cls_id, *ids.tolist()] for ids in tok.encode_batch(texts)])}


def trained_encoder(config, params, state):
  """The whole language model: its `aux['features']` are what `embed` averages."""
  del state
  return build_model(config, _vocab_size(params)), {"params": params}


def lanes(docs: lm.TokenizedDocs, num_lanes: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
  """The split's stream cut at paragraph starts into `num_lanes` rows of similar length, padded with [PAD] to
  a multiple of `chunk` plus one. Returns (rows (num_lanes, n * chunk + 1), source of each row position)."""
  stream = lm.stream_with_boundaries(docs, cls_id=wordpiece.CLS_ID, sep_id=wordpiece.SEP_ID)
  lengths = np.diff(docs.offsets) + 2
  starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
  source = np.repeat(docs.source, lengths)
  cuts = np.searchsorted(starts, np.arange(1, num_lanes) * len(stream) / num_lanes)
  bounds = np.concatenate([[0], starts[np.unique(cuts[(cuts > 0) & (cuts < len(starts))])], [len(stream)]])
  width = max(int(np.max(np.diff(bounds))), 2)
  width = -(-(width - 1) // chunk) * chunk + 1
  rows = np.full((num_lanes, width), wordpiece.PAD_ID, np.int32)
  row_source = np.full((num_lanes, width), -1, np.int32)
  for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
    rows[i, : b - a], row_source[i, : b - a] = stream[a:b], source[a:b]
  return rows, row_source


def stream_log_likelihood(model, params, rows: np.ndarray, chunk: int, mesh) -> np.ndarray:
  """Per-target negative log-likelihood of every row, the context carried across chunks; 0 where a target
  does not count. Rows are split over the mesh's devices."""
  repl, rows_sharding = sharding.replicated(mesh), sharding.batch_sharded(mesh)

  def step(params, carry, inputs, targets):
    logits, aux = model.apply({"params": params}, inputs, carry, train=False)
    nll, counted = token_losses(logits, targets)
    return aux["carry"], jnp.where(counted, nll, 0.0)

  # The carry is small: replicated, whatever axis holds its rows.
  step = jax.jit(step, in_shardings=(repl, repl, rows_sharding, rows_sharding), out_shardings=(repl, rows_sharding))
  carry = jax.jit(lambda: model.initial_carry(rows.shape[0]), out_shardings=repl)()
  params = sharding.host_to_global(sharding.to_host(params), mesh, jax.sharding.PartitionSpec())
  out = []
  for c in range(0, rows.shape[1] - 1, chunk):
    inputs, targets = sharding.host_to_global((rows[:, c : c + chunk], rows[:, c + 1 : c + chunk + 1]), mesh)
    carry, nll = step(params, carry, inputs, targets)
    out.append(np.asarray(sharding.to_host(nll), np.float64))
  return np.concatenate(out, axis=1)


def perplexity(config, params, docs: lm.TokenizedDocs, mesh) -> dict:
  """Perplexity over every held-out paragraph token and each paragraph's closing [SEP]; per source too."""
  e = config.evals
  num_lanes = e.lanes - e.lanes % mesh.size or mesh.size
  rows, row_source = lanes(docs, num_lanes, config.data.seq_len)
  model = build_model(config, _vocab_size(params))
  nll = stream_log_likelihood(model, params, rows, config.data.seq_len, mesh)
  targets = rows[:, 1:]
  counted = (targets != wordpiece.CLS_ID) & (targets != wordpiece.PAD_ID)
  expected = len(docs.ids) + docs.num_paragraphs
  if counted.sum() != expected:  # the n-gram baseline scores exactly these targets
    raise AssertionError(f"scored {counted.sum()} targets, expected {expected}")
  src = row_source[:, 1:]
  by_source = {
    name: float(math.exp(nll[counted & (src == i)].sum() / max((counted & (src == i)).sum(), 1)))
    for i, name in enumerate(docs.sources)
  }
  return {"perplexity": float(math.exp(nll.sum() / expected)), "targets": int(expected), "by_source": by_source}


def ngram_baseline(config, corpus: lm.TokenizedCorpus) -> dict:
  from ssljax.evals import ngram

  order = config.evals.ngram_order
  model = ngram.fit_kneser_ney(corpus.train.paragraphs(), order=order, vocab_size=corpus.tokenizer.vocab_size)
  valid = corpus.valid.paragraphs()
  by_source = {}
  for i, name in enumerate(corpus.valid.sources):
    seqs = [p for p, s in zip(valid, corpus.valid.source) if s == i]
    if seqs:
      by_source[name] = float(ngram.perplexity(model, seqs))
  total, count = ngram.log_prob(model, valid)
  return {"perplexity": float(math.exp(-total / count)), "targets": int(count), "by_source": by_source}


def sample(
  config,
  params,
  tokenizer: wordpiece.WordPiece,
  prompt: str,
  *,
  length: int,
  seed: int,
  temperature: float = 0.8,
  top_k: int = 40,
) -> str:
  """A continuation of `prompt` drawn token by token (top-k, temperature), stopping at [SEP]."""
  model = build_model(config, _vocab_size(params))
  params = sharding.to_host(params)  # one token at a time: on this process's default device, not the mesh
  ids = [wordpiece.CLS_ID] + [int(i) for i in tokenizer.encode(prompt)]

  @jax.jit
  def next_logits(carry, tokens):
    logits, aux = model.apply({"params": params}, tokens, carry, train=False)
    return aux["carry"], logits[:, -1]

  carry, logits = next_logits(model.initial_carry(1), jnp.asarray([ids], jnp.int32))
  rng, out = jax.random.PRNGKey(seed), []
  for _ in range(length):
    rng, key = jax.random.split(rng)
    top, idx = jax.lax.top_k(logits[0] / temperature, top_k)
    token = int(idx[jax.random.categorical(key, top)])
    if token == wordpiece.SEP_ID:
      break
    out.append(token)
    carry, logits = next_logits(carry, jnp.asarray([[token]], jnp.int32))
  return tokenizer.decode(ids[1:] + out)


def evaluate(context) -> dict:
  config, workdir, mesh, params = context.config, context.workdir, context.mesh, context.params
  writer, step = context.writer, context.step
  corpus = context.train_data.corpus
  ours = perplexity(config, params, corpus.valid, mesh)
  base = ngram_baseline(config, corpus)
  if base["targets"] != ours["targets"]:
    raise AssertionError(f"n-gram scored {base['targets']} targets, the model {ours['targets']}")
  print(
    f"validation: {ours['targets']} targets; perplexity {ours['perplexity']:.2f}, interpolated Kneser-Ney "
    f"{config.evals.ngram_order}-gram {base['perplexity']:.2f}",
    flush=True,
  )
  for name in corpus.valid.sources:
    print(
      f"  {name:28s} {ours['by_source'].get(name, float('nan')):9.2f} {base['by_source'].get(name, float('nan')):9.2f}",
      flush=True,
    )
  for i, prompt in enumerate(config.evals.prompts):
    print(f"  sample: {sample(config, params, corpus.tokenizer, prompt, length=40, seed=config.seed + i)}", flush=True)
  if config.evals.plots and jax.process_index() == 0:
    from ssljax.evals import plots

    _, image = plots.perplexity_by_source(
      {"ours": ours["by_source"], f"Kneser-Ney {config.evals.ngram_order}-gram": base["by_source"]},
      os.path.join(workdir, "perplexity_by_source.png"),
      title=f"{config.nnlm.arch} LM: validation perplexity",
    )
    if writer is not None:
      writer.write_image(step, "perplexity_by_source", image)
  return {"perplexity/valid": ours["perplexity"], "baseline/ngram/perplexity/valid": base["perplexity"]}


METHOD = Method(
  name="nnlm",
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
