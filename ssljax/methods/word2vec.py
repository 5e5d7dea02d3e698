"""word2vec (Mikolov et al., 2013): skip-gram and CBOW, with negative sampling or hierarchical softmax.

An update takes a few hundred consecutive corpus tokens and, on device and keyed by the step: subsamples
frequent words (dropped words vanish before windowing, as in word2vec), draws a reduced window per centre
word, forms every (centre, context) pair inside a line, draws K negatives per centre word from an alias table,
and applies word2vec's sparse SGD update to the rows it touched. Negatives are shared by a centre word's
contexts (Ji et al., 2016, arXiv:1604.04661), which turns the work into small dense products; the tables are
updated in place (the state is donated), so an update costs what its rows cost, not what the vocabulary costs.

An engine step runs many updates in a `lax.while_loop` over `lanes` contiguous stretches of the corpus. Lanes are
split over the devices (on a CPU host, `config.cpu_devices` makes each core a device): each device computes
its lanes' gradients, one all-gather per update shares the touched rows, and every device applies all of them.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from ssljax import sharding, storage
from ssljax.config import ConfigError
from ssljax.data import text
from ssljax.methods.base import Method
from ssljax.sharding import DATA_AXIS

VOCAB_FILE = "vocab.txt"  # in the workdir: one word a line, line i is word id i


def check_config(config) -> None:
  w = config.word2vec
  if w.mode not in ("skipgram", "cbow"):
    raise ConfigError(f"word2vec.mode='{w.mode}' is not one of skipgram, cbow")
  if w.loss not in ("ns", "hs"):
    raise ConfigError(f"word2vec.loss='{w.loss}' is not one of ns, hs")
  if w.window < 1 or w.dim < 1 or (w.loss == "ns" and w.negative < 1):
    raise ConfigError(f"word2vec.window={w.window}, dim={w.dim} and negative={w.negative} must be >= 1")
  if config.optim.weight_decay:
    raise ConfigError(
      f"optim.weight_decay={config.optim.weight_decay}: word2vec's sparse SGD has no weight decay; set it to 0"
    )
  if w.lanes < 1 or w.update_tokens < 1 or config.batch_size % (w.lanes * w.update_tokens):
    raise ConfigError(
      f"batch_size={config.batch_size} is not a multiple of word2vec.lanes * "
      f"word2vec.update_tokens = {w.lanes} * {w.update_tokens}"
    )
  if w.lanes % jax.device_count():
    raise ConfigError(f"word2vec.lanes={w.lanes} is not a multiple of the {jax.device_count()} devices")


def load_train_data(config, *, workdir: str | None = None) -> text.TokenData:
  """The corpus as word ids; the vocabulary (rebuilt from the corpus on resume, deterministically) is also kept
  in `workdir/vocab.txt` for `ssljax.load(workdir).embed`."""
  w = config.word2vec
  data = text.load_token_data(config.data)
  c = data.corpus
  print(
    f"corpus: {c.raw_tokens} words, {len(c.tokens)} kept at data.min_count={config.data.min_count}, "
    f"vocabulary {len(c.vocab)}"
    + (
      f"; {c.undecodable_lines} lines had bytes that are not UTF-8 (replaced with U+FFFD)"
      if c.undecodable_lines
      else ""
    ),
    flush=True,
  )
  # Negatives need a few distinct words to be drawn from; HS needs a tree.
  needed = w.negative + 1 if w.loss == "ns" else 2
  if len(data.corpus.vocab) < needed:
    raise ConfigError(
      f"data.min_count={config.data.min_count} leaves {len(data.corpus.vocab)} words, fewer "
      f"than the {needed} that word2vec.negative={w.negative} needs; lower min_count"
    )
  if workdir:  # a run (the engine gives its workdir) ends with the word evals: fail now, not after training
    from ssljax.evals import word_suite  # lazy: matplotlib, scipy

    word_suite.check(config, c.vocab.words)
  if workdir and jax.process_index() == 0:
    directory = storage.path(workdir)
    directory.mkdir(parents=True, exist_ok=True)
    with storage.open_atomic(directory / VOCAB_FILE, "w") as f:
      f.write("".join(word + "\n" for word in c.vocab.words))
  return data


def init(config, rng, example_batch, *, data: text.TokenData):
  """Input vectors uniform in (-1/D, 1/D) and output vectors zero, as gensim; the sampling tables ride
  in the method state, so a checkpoint holds everything a step needs."""
  del example_batch
  w, counts = config.word2vec, data.corpus.vocab.counts
  v = len(counts)
  params = {
    "input": jax.random.uniform(rng, (v, w.dim), jnp.float32, -1.0, 1.0) / w.dim,
    "output": jnp.zeros((v if w.loss == "ns" else v - 1, w.dim), jnp.float32),
  }
  state = {"keep_prob": jnp.asarray(text.keep_probabilities(counts, config.data.sample))}
  if w.loss == "ns":
    accept, alias = text.negative_alias_table(counts, w.ns_exponent)
    state.update(negative_accept=jnp.asarray(accept), negative_alias=jnp.asarray(alias))
  else:
    codes, points, lengths = text.huffman_tree(counts)
    state.update(codes=jnp.asarray(codes), points=jnp.asarray(points), code_lengths=jnp.asarray(lengths))
  return params, state


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


def draw_negatives(rng, state, shape):
  """Words drawn from unigram^0.75 with the alias table in `state`."""
  k_column, k_accept = jax.random.split(rng)
  column = jax.random.randint(k_column, shape, 0, state["negative_accept"].shape[0])
  return jnp.where(
    jax.random.uniform(k_accept, shape) < state["negative_accept"][column], column, state["negative_alias"][column]
  )


def word2vec_gradients(input_rows, output_rows, labels, ctx_mask, out_mask, *, mode: str, window: int):
  """The summed loss of `losses.sgns` (skip-gram) or `losses.cbow_ns` (CBOW), and its gradients with respect to
  the input rows (T, D) and the output rows (T, M, D), written out by hand. The latter comes as factors,
  `outer_sum(*factors)`: for CBOW they are 16x smaller than the product, which is what devices exchange.

  Row i + offsets[c] is context c of centre i (where ctx_mask[i, c]); the centre's outputs are output_rows[i].
  CBOW gives every context word the full error of the mean, not 1/count of it, as word2vec and gensim do.
  By hand, because autodiff's version of the same products, and softplus, cost 1.5x on a CPU; the tests
  check these against `jax.grad` of the losses.
  """
  offsets = _offsets(window)
  ctx_mask = ctx_mask.astype(input_rows.dtype)
  out_mask = out_mask.astype(input_rows.dtype)
  sign = 2.0 * labels - 1.0  # +1 for the true word (or a 0 code), -1 for a negative
  if mode == "skipgram":
    contexts = jnp.stack([_shift(input_rows, d) for d in offsets], axis=1)  # (T, 2W, D)
    logits = jnp.einsum("tcd,tmd->tcm", contexts, output_rows)
    weight = ctx_mask[:, :, None] * out_mask[:, None, :]
    fit = jax.nn.sigmoid(sign[:, None, :] * logits)  # the probability of the right answer
    loss = -jnp.sum(weight * jnp.log(jnp.maximum(fit, 1e-30)))
    g = -sign[:, None, :] * (1.0 - fit) * weight  # d loss / d logit
    d_contexts = jnp.einsum("tcm,tmd->tcd", g, output_rows)
    d_output = (jnp.swapaxes(g, 1, 2), contexts)
    d_input = sum(_shift(d_contexts[:, c], -d) for c, d in enumerate(offsets))
  else:  # sums of shifted rows, never the (T, 2W, D) stack
    count = ctx_mask.sum(axis=1)
    hidden = sum(ctx_mask[:, c, None] * _shift(input_rows, d) for c, d in enumerate(offsets))
    hidden = hidden / jnp.maximum(count, 1.0)[:, None]
    logits = jnp.einsum("td,tmd->tm", hidden, output_rows)
    weight = out_mask * (count > 0)[:, None]
    fit = jax.nn.sigmoid(sign * logits)
    loss = -jnp.sum(weight * jnp.log(jnp.maximum(fit, 1e-30)))
    g = -sign * (1.0 - fit) * weight
    d_output = (g[:, :, None], hidden[:, None, :])
    d_hidden = jnp.einsum("tm,tmd->td", g, output_rows)
    d_input = sum(_shift(ctx_mask[:, c, None] * d_hidden, -d) for c, d in enumerate(offsets))
  return loss, d_input, d_output


def outer_sum(coefficients, vectors):
  """(T, M, K) x (T, K, D) -> (T, M, D): sum_k coefficients[t, m, k] * vectors[t, k, :].

  Unrolled over the few k: XLA fuses it into one loop, 4x faster on a CPU than the batched (M x K) @ (K x D)
  products an einsum becomes.
  """
  return sum(coefficients[:, :, k, None] * vectors[:, k, None, :] for k in range(vectors.shape[1]))


def _squared_norm(coefficients, vectors):
  """|outer_sum(coefficients, vectors)|^2; for one vector per row (CBOW) without forming the product."""
  if vectors.shape[1] == 1:
    return jnp.sum(jnp.sum(jnp.square(coefficients[:, :, 0]), axis=1) * jnp.sum(jnp.square(vectors[:, 0]), axis=1))
  return jnp.sum(jnp.square(outer_sum(coefficients, vectors)))


def _gradients(params, state, ids, ctx_mask, keys, w):
  """Loss and gradients of one SGD update on a chunk of each of a few lanes, all read from the same params.

  ids: (lanes, n) kept words; ctx_mask: (lanes, n, 2W) pairs inside the chunk; keys: one per lane, so a lane's
  negatives do not depend on which device holds it. Returns the rows touched, their gradients (the output
  ones as factors) and sums for the metrics.
  """
  lanes, n = ids.shape
  # Lanes side by side: a lane's edges are padding to _shift, and ctx_mask has no pair across them.
  t = lanes * n
  ids, ctx_mask = ids.reshape(t), ctx_mask.reshape(t, -1)
  if w.loss == "ns":
    negatives = jax.vmap(lambda k: draw_negatives(k, state, (n, w.negative)))(keys).reshape(t, w.negative)
    out_ids = jnp.concatenate([ids[:, None], negatives], axis=1)
    labels = jnp.zeros(out_ids.shape, jnp.float32).at[:, 0].set(1.0)
    out_mask = jnp.concatenate([jnp.ones((t, 1), bool), negatives != ids[:, None]], axis=1)  # as word2vec
  else:
    out_ids = state["points"][ids]
    labels = 1.0 - state["codes"][ids].astype(jnp.float32)
    out_mask = jnp.arange(out_ids.shape[1])[None, :] < state["code_lengths"][ids][:, None]
  centre = ctx_mask.any(axis=1)
  loss, d_input, d_output = word2vec_gradients(
    params["input"][ids],
    params["output"][out_ids],
    labels,
    ctx_mask,
    out_mask & centre[:, None],
    mode=w.mode,
    window=w.window,
  )
  sums = {
    "loss": loss,
    "terms": ctx_mask.sum() if w.mode == "skipgram" else centre.sum(),
    "grad_sq": jnp.sum(jnp.square(d_input)) + _squared_norm(*d_output),
  }
  return ids, d_input, out_ids, d_output, sums


def _exchange(ints, floats, gather):
  """All devices' (T, ...) arrays, concatenated over T, in one all-gather of one float32 buffer: one
  collective costs what four do. Integers travel as their bits."""
  if gather is None:
    return ints, floats
  t = ints[0].shape[0]
  parts = [jax.lax.bitcast_convert_type(x.astype(jnp.int32), jnp.float32) for x in ints] + list(floats)
  packed = gather(jnp.concatenate([x.reshape(t, -1) for x in parts], axis=1))
  out, start = [], 0
  for x in parts:
    width = x.size // t
    out.append(packed[:, start : start + width].reshape(-1, *x.shape[1:]))
    start += width
  ints = [jax.lax.bitcast_convert_type(x, jnp.int32) for x in out[: len(ints)]]
  return ints, out[len(ints) :]


def update(params, state, batch, rng, learning_rate, config, step):
  """One engine step of sparse SGD; returns (params, state, metrics).

  The step's `batch_size` tokens form `lanes` contiguous lanes; a sequence of updates each takes the next
  `update_tokens` kept words of every lane, computes all their gradients from the same tables and adds them
  (summed, as word2vec's per-pair updates add up: a few hundred tokens per update keep that sum close to
  word2vec's sequential updates; 4096 diverged at its rate). Lanes are split over the devices of the mesh
  (`jax.set_mesh`), which exchange the rows they touched, so every device applies every update and the
  tables stay replicated; the result does not depend on the number of devices. Many updates per step keep
  the host out of the loop.
  """
  del step  # the engine's learning-rate schedule already holds what the step decides
  w = config.word2vec
  # (lanes, B / lanes): lane l is tokens [l * B / lanes, (l + 1) * B / lanes) of the step.
  tokens = batch["tokens"].reshape(w.lanes, -1)
  starts = batch["line_starts"].reshape(w.lanes, -1)
  mesh = jax.sharding.get_abstract_mesh()
  devices = mesh.shape[DATA_AXIS] if DATA_AXIS in mesh.axis_names else 1
  axis = DATA_AXIS if devices > 1 else None  # one device: no collectives, no shard_map
  if w.lanes % devices:
    raise ConfigError(f"word2vec.lanes={w.lanes} is not a multiple of the {devices} devices of the mesh")
  n = w.update_tokens

  gather = (lambda x: jax.lax.all_gather(x, axis, tiled=True)) if axis else None

  def local(params, state, tokens, starts, rng, learning_rate):
    lanes, length = tokens.shape
    first_lane = jax.lax.axis_index(axis) * lanes if axis else 0
    keys = jax.vmap(lambda lane: jax.random.fold_in(rng, lane))(first_lane + jnp.arange(lanes))
    k_sample, k_negative = jax.vmap(jax.random.split, out_axes=1)(keys)
    # Subsampled once per lane, kept words first; the updates then walk the kept words only, in chunks of
    # `update_tokens`, and stop when every lane is done (dropped words cost nothing).
    ids, kept, ctx_mask = jax.vmap(functools.partial(_subsample_and_windows, state=state, window=w.window))(
      tokens, starts, k_sample
    )
    position = jnp.arange(length) % n
    inside = jnp.stack([(position + d >= 0) & (position + d < n) for d in _offsets(w.window)], axis=1)
    ctx_mask = ctx_mask & inside  # no pair across two updates' chunks
    most_kept = kept.sum(axis=1).max()
    if axis:
      most_kept = jax.lax.pmax(most_kept, axis)  # devices run the same number of updates (collectives)
    ids = ids.reshape(lanes, -1, n)
    ctx_mask = ctx_mask.reshape(lanes, -1, n, ctx_mask.shape[-1])

    def one_update(carry):
      i, params, totals = carry
      ids_i = jax.lax.dynamic_index_in_dim(ids, i, axis=1, keepdims=False)
      ctx_i = jax.lax.dynamic_index_in_dim(ctx_mask, i, axis=1, keepdims=False)
      keys_i = jax.vmap(lambda k: jax.random.fold_in(k, i))(k_negative)
      ids_i, d_input, out_ids, factors, sums = _gradients(params, state, ids_i, ctx_i, keys_i, w)
      coefficients, vectors = factors
      # Whichever is smaller crosses devices: the output gradients or their factors (CBOW's are 16x smaller).
      exchange_factors = coefficients[0].size + vectors[0].size < coefficients.shape[1] * vectors.shape[2]
      floats = [d_input, *factors] if exchange_factors else [d_input, outer_sum(*factors)]
      (ids_i, out_ids), floats = _exchange([ids_i, out_ids], floats, gather)
      d_output = outer_sum(*floats[1:]) if exchange_factors else floats[1]
      params = {
        "input": params["input"].at[ids_i].add(-learning_rate * floats[0]),
        "output": params["output"].at[out_ids].add(-learning_rate * d_output),
      }
      return i + 1, params, jax.tree.map(jnp.add, totals, sums)

    totals = {
      "loss": jnp.zeros((), jnp.float32),
      "terms": jnp.zeros((), jnp.int32),
      "grad_sq": jnp.zeros((), jnp.float32),
    }
    _, params, totals = jax.lax.while_loop(
      lambda carry: carry[0] * n < most_kept, one_update, (jnp.zeros((), jnp.int32), params, totals)
    )
    totals.update(kept=kept.sum(), tokens=(tokens >= 0).sum())
    return params, (jax.lax.psum(totals, axis) if axis else totals)

  if axis:
    local = jax.shard_map(
      local, mesh=mesh, in_specs=(P(), P(), P(axis), P(axis), P(), P()), out_specs=(P(), P()), check_vma=False
    )
  params, sums = local(params, state, tokens, starts, rng, jnp.asarray(learning_rate, jnp.float32))
  metrics = {
    "loss": sums["loss"] / jnp.maximum(sums["terms"], 1),
    "grad_norm": jnp.sqrt(sums["grad_sq"]),
    "kept_fraction": sums["kept"] / jnp.maximum(sums["tokens"], 1),
  }
  return params, state, metrics


def embed(params, state, batch, config):
  """Input vectors of the batch's word ids (the vectors gensim calls `wv`); for rows of ids (-1: none), the
  mean vector of each row's words."""
  del state, config
  tokens = batch["tokens"]
  if tokens.ndim == 1:
    return params["input"][tokens]
  known = (tokens >= 0)[..., None]
  vectors = params["input"][jnp.maximum(tokens, 0)] * known
  return vectors.sum(1) / jnp.maximum(known.sum(1), 1)


def batch_from_inputs(config, workdir: str, texts) -> dict:
  """Strings -> rows of word ids (split on whitespace, lowercased as the corpus was; words outside the vocabulary
  are left out): `embed` gives each string the mean vector of its words."""
  ids = {w: i for i, w in enumerate(storage.path(os.path.join(workdir, VOCAB_FILE)).read_text().split("\n")[:-1])}
  rows = []
  for string in texts:
    words = (string.lower() if config.data.lowercase else string).split()
    row = [ids[w] for w in words if w in ids]
    if not row:
      raise ValueError(f"no word of {string!r} is in the run's vocabulary ({workdir}/{VOCAB_FILE})")
    rows.append(row)
  tokens = np.full((len(rows), max(map(len, rows), default=1)), -1, np.int32)
  for i, row in enumerate(rows):
    tokens[i, : len(row)] = row
  return {"tokens": tokens}


def evaluate(context) -> dict:
  """Word-vector evals, the exported vectors and the PCA picture."""
  from ssljax.evals import word_suite  # lazy: matplotlib, scipy

  c = context
  vectors = np.asarray(sharding.to_host(c.params["input"]), np.float32)
  initial = np.asarray(sharding.to_host(c.random_init()[0]["input"]), np.float32)
  return word_suite.evaluate(
    c.config,
    workdir=c.workdir,
    vectors=vectors,
    words=c.train_data.corpus.vocab.words,
    baseline_vectors=initial,
    writer=c.writer,
    step=c.step,
  )


METHOD = Method(
  name="word2vec",
  load_train_data=load_train_data,
  init=init,
  update=update,
  embed=embed,
  evaluate=evaluate,
  check_config=check_config,
  example_unit="words",
  batch_from_inputs=batch_from_inputs,
)
