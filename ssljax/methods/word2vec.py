"""word2vec (Mikolov et al., 2013): skip-gram and CBOW, with negative sampling or hierarchical softmax.

A step takes `batch_size` consecutive corpus tokens and, on device and keyed by the step: subsamples frequent
words (dropped words vanish before windowing, as in word2vec), draws a reduced window per centre word, forms
every (centre, context) pair inside a line, draws K negatives per centre word, and applies word2vec's sparse
SGD update to the rows it touched. Negatives are shared by a centre word's contexts (Ji et al., 2016,
arXiv:1604.04661), which turns the work into small dense products; the tables are updated in place
(the state is donated), so a step costs what its rows cost, not what the vocabulary costs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import losses
from ssljax.config import ConfigError
from ssljax.data import text

EXAMPLE_UNIT = "words"


def load_train_data(config) -> text.TokenData:
  w = config.word2vec
  if w.mode not in ("skipgram", "cbow"):
    raise ConfigError(f"word2vec.mode='{w.mode}' is not one of skipgram, cbow")
  if w.loss not in ("ns", "hs"):
    raise ConfigError(f"word2vec.loss='{w.loss}' is not one of ns, hs")
  if w.window < 1 or w.dim < 1 or (w.loss == "ns" and w.negative < 1):
    raise ConfigError(f"word2vec.window={w.window}, dim={w.dim} and negative={w.negative} must be >= 1")
  if config.optim.weight_decay:
    raise ConfigError(f"optim.weight_decay={config.optim.weight_decay}: word2vec's sparse SGD has no "
                      "weight decay; set it to 0")
  data = text.load_token_data(config.data)
  c = data.corpus
  print(f"corpus: {c.raw_tokens} words, {len(c.tokens)} kept at data.min_count={config.data.min_count}, "
        f"vocabulary {len(c.vocab)}"
        + (f"; {c.undecodable_lines} lines had bytes that are not UTF-8 (replaced with U+FFFD)"
           if c.undecodable_lines else ""), flush=True)
  # Negatives need a few distinct words to be drawn from; HS needs a tree.
  needed = w.negative + 1 if w.loss == "ns" else 2
  if len(data.corpus.vocab) < needed:
    raise ConfigError(f"data.min_count={config.data.min_count} leaves {len(data.corpus.vocab)} words, fewer "
                      f"than the {needed} that word2vec.negative={w.negative} needs; lower min_count")
  return data


def init(config, rng, example_batch, *, data: text.TokenData):
  """Input vectors uniform in (-1/D, 1/D) and output vectors zero, as gensim; the sampling tables ride
  in the method state, so a checkpoint holds everything a step needs."""
  del example_batch
  w, counts = config.word2vec, data.corpus.vocab.counts
  v = len(counts)
  params = {"input": jax.random.uniform(rng, (v, w.dim), jnp.float32, -1.0, 1.0) / w.dim,
            "output": jnp.zeros((v if w.loss == "ns" else v - 1, w.dim), jnp.float32)}
  state = {"keep_prob": jnp.asarray(text.keep_probabilities(counts, config.data.sample))}
  if w.loss == "ns":
    state["negative_cdf"] = jnp.asarray(text.negative_cdf(counts, w.ns_exponent))
  else:
    codes, points, lengths = text.huffman_tree(counts)
    state.update(codes=jnp.asarray(codes), points=jnp.asarray(points), code_lengths=jnp.asarray(lengths))
  return params, state


def _scale_gradient(x, scale):
  """x in the forward pass, scale * gradient in the backward one."""
  return x * scale - jax.lax.stop_gradient(x * (scale - 1))


def _shift(x, d: int):
  """y[i] = x[i + d], zero where i + d falls outside. Slices and pads: their transposes are too, where a
  gather's would be a scatter-add (10x slower on CPU)."""
  pad = [(0, 0)] * x.ndim
  if d > 0:
    pad[0] = (0, d)
    return jnp.pad(x[d:], pad)
  pad[0] = (-d, 0)
  return jnp.pad(x[:d], pad)


def _offsets(window: int) -> list[int]:
  return list(range(-window, 0)) + list(range(1, window + 1))


def _subsample_and_windows(tokens, starts, rng, state, window: int):
  """Word ids with the kept words first, and which (centre, context) pairs exist: ctx_mask[i, c] says
  whether token i + offsets[c] is a context of centre i (both kept, same line, within i's reduced window)."""
  t = tokens.shape[0]
  k_keep, k_window = jax.random.split(rng)
  ids = jnp.maximum(tokens, 0)
  keep = (tokens >= 0) & (jax.random.uniform(k_keep, (t,)) < state["keep_prob"][ids])
  line = jnp.cumsum(starts)
  # Kept tokens first, in order: windows then span the words that survived subsampling, as in word2vec.
  order = jnp.argsort(~keep, stable=True)
  ids, line, kept = ids[order], line[order], keep[order]
  reach = jax.random.randint(k_window, (t,), 1, window + 1)  # word2vec's reduced window b in [1, W]
  columns = []
  for d in _offsets(window):
    partner_kept, partner_line = _shift(kept, d), _shift(line, d)
    columns.append(kept & partner_kept & (partner_line == line) & (abs(d) <= reach))
  return ids, kept, jnp.stack(columns, axis=1)


def update(params, state, batch, rng, learning_rate, config):
  """One sparse SGD step on a slice of tokens; returns (params, state, metrics)."""
  w = config.word2vec
  tokens = batch["tokens"]
  t = tokens.shape[0]
  k_sample, k_negative = jax.random.split(rng)
  ids, kept, ctx_mask = _subsample_and_windows(tokens, batch["line_starts"], k_sample, state, w.window)
  offsets = _offsets(w.window)
  vocab_size = state["keep_prob"].shape[0]
  if w.loss == "ns":
    u = jax.random.uniform(k_negative, (t, w.negative))
    negatives = jnp.minimum(jnp.searchsorted(state["negative_cdf"], u, side="right"), vocab_size - 1)
    out_ids = jnp.concatenate([ids[:, None], negatives], axis=1)
    labels = jnp.zeros(out_ids.shape, jnp.float32).at[:, 0].set(1.0)
    out_mask = jnp.concatenate([jnp.ones((t, 1), bool), negatives != ids[:, None]], axis=1)  # as word2vec
  else:
    out_ids = state["points"][ids]
    labels = 1.0 - state["codes"][ids].astype(jnp.float32)
    out_mask = jnp.arange(out_ids.shape[1])[None, :] < state["code_lengths"][ids][:, None]
  centre = ctx_mask.any(axis=1)
  count = ctx_mask.sum(axis=1)

  def total_loss(input_rows, output_rows):
    inputs = jnp.stack([_shift(input_rows, d) for d in offsets], axis=1)  # (T, 2W, D) context vectors
    mask = out_mask & centre[:, None]
    if w.mode == "skipgram":
      return losses.sgns(inputs, output_rows, labels, input_mask=ctx_mask, output_mask=mask).sum()
    # word2vec and gensim (cbow_mean=1) give every context word the full error of the mean, not
    # 1/count of it.
    inputs = _scale_gradient(inputs, jnp.maximum(count, 1).astype(inputs.dtype)[:, None, None])
    return losses.cbow_ns(inputs, output_rows, labels, input_mask=ctx_mask, output_mask=mask).sum()

  loss, (d_input, d_output) = jax.value_and_grad(total_loss, argnums=(0, 1))(params["input"][ids],
                                                                           params["output"][out_ids])
  # Gradients of one step are summed, not averaged, as word2vec's per-pair updates add up: a step of a few
  # hundred tokens keeps that sum close to word2vec's sequential updates (4096 tokens diverged at its rate).
  params = {"input": params["input"].at[ids].add(-learning_rate * d_input),
            "output": params["output"].at[out_ids].add(-learning_rate * d_output)}
  terms = ctx_mask.sum() if w.mode == "skipgram" else centre.sum()
  metrics = {"loss": loss / jnp.maximum(terms, 1),
             "grad_norm": jnp.sqrt(jnp.sum(jnp.square(d_input)) + jnp.sum(jnp.square(d_output))),
             "kept_fraction": kept.sum() / jnp.maximum((tokens >= 0).sum(), 1)}
  return params, state, metrics


def embed(params, state, batch, config):
  """Input vectors of the batch's word ids: the word vectors gensim calls `wv`."""
  del state, config
  return params["input"][batch["tokens"]]


def evaluate(config, *, workdir, params, train_data: text.TokenData, writer=None, step: int = 0, **unused):
  """Word-vector evals, the exported vectors and the PCA picture."""
  from ssljax.evals import word_suite  # lazy: matplotlib, scipy

  del unused
  vectors = np.asarray(jax.device_get(params["input"]), np.float32)
  return word_suite.evaluate(config, workdir=workdir, vectors=vectors, words=train_data.corpus.vocab.words,
                             writer=writer, step=step)
