"""Interpolated modified Kneser-Ney n-gram language model over integer token ids: the count-based
baseline a neural language model's perplexity is compared with.

The model is that of Chen & Goodman 1998 ("An empirical study of smoothing techniques for language
modeling", Harvard TR-10-98, section 3), interpolated at every order:

  P_k(w | h) = (max(c_k(hw) - D_k(c_k(hw)), 0) + gamma_k(h) * P_{k-1}(w | h')) / c_k(h.)
  gamma_k(h) = D_k,1 N_1(h.) + D_k,2 N_2(h.) + D_k,3+ N_3+(h.)

where h' is h without its first token, c_k(h.) = sum_w c_k(hw), N_r(h.) is the number of distinct w
with c_k(hw) = r (3 or more for N_3+), and a context never seen at order k (c_k(h.) = 0) passes
P_{k-1} through unchanged. c_k is the raw count at the highest order and the continuation count
N_1+(.hw), the number of distinct tokens seen just before hw, below it. Under order 1 sits the
uniform distribution over the vocabulary and end-of-sequence (vocab_size + 1 outcomes), so every
token, unseen ones included, has a probability above zero (unless all discounts are 0).

Each sequence (a document or paragraph of ids in [0, vocab_size)) is padded on the left with
order - 1 beginning-of-sequence symbols <s> and ends with an end-of-sequence symbol </s> that is
predicted like a token: a sequence of L tokens holds L + 1 predictions. <s> is only ever context.

Discounts D_k,1, D_k,2, D_k,3+ are estimated per order from the count-of-counts n_1..n_4 of c_k
(Chen & Goodman eq. 26): Y = n_1 / (n_1 + 2 n_2), D_r = r - (r + 1) Y n_{r+1} / n_r. Where that
closed form is undefined (n_1, n_2 or n_3 is 0) or falls outside (0, r], as it can on tiny corpora,
the order takes FALLBACK_DISCOUNTS instead (KenLM's --discount_fallback default).

Everything is numpy and vectorized: no Python loop runs over tokens. An n-gram is named by an id
per order, built left to right: the k-gram ending at a position is the key
id(its first k-1 tokens) * (vocab_size + 2) + last token, and the sorted unique keys of an order
give the ids. Keys therefore stay below (number of tokens + 1) * (vocab_size + 2), far inside
int64 at any order, where a plain mixed-radix key (vocab_size + 2)^order would overflow already at
order 5 for a 40k vocabulary. Counting is one sort per order above 1; lookups are np.searchsorted.

Example:
  >>> model = fit_kneser_ney(train_ids, order=4, vocab_size=len(vocab))
  >>> perplexity(model, valid_ids)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = [
  "FALLBACK_DISCOUNTS",
  "KneserNey",
  "conditional_distribution",
  "fit_kneser_ney",
  "log_prob",
  "perplexity",
  "token_log_probs",
]

# Used for an order whose count-of-counts give no valid closed-form discounts (KenLM's default).
FALLBACK_DISCOUNTS: tuple[float, float, float] = (0.5, 1.0, 1.5)

_MAX_POSITIONS = 2**31 - 2  # n-gram ids and counts are int32


@dataclasses.dataclass(frozen=True, eq=False)
class KneserNey:
  """A fitted model; build it with `fit_kneser_ney`.

  Internally symbol 0 is <s>, token t is symbol t + 1 and vocab_size + 1 is </s>. For order k
  (index k - 1 of the tuples), id i names the k-gram keys[k-1][i] = context id * (vocab_size + 2)
  + last symbol, the context id being that of the k-gram's first k - 1 symbols at order k - 1
  (0 at order 1). Id 0 is always <s>^k, which is never predicted and so has count 0.
  """

  order: int
  vocab_size: int
  discounts: np.ndarray  # (order, 3) float64: D1, D2, D3+ of orders 1..order
  keys: tuple[np.ndarray, ...] = dataclasses.field(repr=False)  # sorted int64, one per order
  counts: tuple[np.ndarray, ...] = dataclasses.field(repr=False)  # c_k per k-gram id
  context_totals: tuple[np.ndarray, ...] = dataclasses.field(repr=False)  # c_k(h.) per (k-1)-gram id
  context_backoffs: tuple[np.ndarray, ...] = dataclasses.field(repr=False)  # gamma_k(h), float64

  @property
  def num_ngrams(self) -> tuple[int, ...]:
    """Distinct k-grams seen in training for k = 1..order (with </s>, without <s>^k)."""
    return tuple(int(np.count_nonzero(c)) for c in self.counts)


def _check_order_and_vocab(order: int, vocab_size: int) -> None:
  if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
    raise ValueError(f"order must be an integer >= 1, got {order!r}.")
  if (
    isinstance(vocab_size, bool)
    or not isinstance(vocab_size, (int, np.integer))
    or not 1 <= vocab_size <= _MAX_POSITIONS - 2
  ):
    raise ValueError(f"vocab_size must be an integer in [1, {_MAX_POSITIONS - 2}], got {vocab_size!r}.")


def _symbol_stream(sequences: Sequence[np.ndarray], vocab_size: int, name: str) -> tuple[np.ndarray, np.ndarray]:
  """All sequences as one int32 symbol stream, each followed by </s>, and the start of each.

  <s> padding is not stored: a position at a sequence start takes context id 0, which is <s>^k
  at every order k, so the model sees the same n-grams as with order - 1 explicit <s>.
  """
  if isinstance(sequences, np.ndarray) and sequences.ndim == 1:
    raise ValueError(
      f"{name} must be a list of 1-D token id arrays, got one 1-D array; wrap it in a list if it is one sequence."
    )
  seqs = [np.asarray(s) for s in sequences]
  if not seqs:
    raise ValueError(f"{name} is empty: need at least one sequence of token ids.")
  for i, s in enumerate(seqs):
    if s.ndim != 1:
      raise ValueError(f"{name}[{i}] must be a 1-D array of token ids, got shape {s.shape}.")
    if s.size and not np.issubdtype(s.dtype, np.integer):
      raise ValueError(f"{name}[{i}] must hold integer token ids, got dtype {s.dtype}.")
  lengths = np.fromiter((s.size for s in seqs), np.int64, len(seqs))
  if lengths.sum() + len(seqs) > _MAX_POSITIONS:
    raise ValueError(
      f"{name} holds {lengths.sum() + len(seqs)} predictions (tokens and </s>), more "
      f"than the {_MAX_POSITIONS} that int32 n-gram ids allow."
    )
  flat = np.concatenate([s for s in seqs if s.size]) if lengths.any() else np.zeros(0, np.int64)
  if flat.size:
    lo, hi = flat.min(), flat.max()
    if lo < 0 or hi >= vocab_size:
      where = int(np.flatnonzero((flat < 0) | (flat >= vocab_size))[0])
      seq = int(np.searchsorted(np.cumsum(lengths), where, side="right"))
      pos = where - int(lengths[:seq].sum())
      raise ValueError(f"{name}[{seq}][{pos}] is token id {flat[where]}, outside [0, vocab_size={vocab_size}).")
  ends = np.cumsum(lengths + 1) - 1  # where each </s> goes
  starts = ends - lengths
  sym = np.empty(int(ends[-1]) + 1, np.int32)
  is_token = np.ones(sym.size, bool)
  is_token[ends] = False
  sym[is_token] = flat
  del flat, is_token
  sym += 1
  sym[ends] = vocab_size + 1
  return sym, starts


def _context_keys(prev_ids: np.ndarray, sym: np.ndarray, starts: np.ndarray, radix: int) -> np.ndarray:
  """int64 key of the k-gram ending at each position, from the (k-1)-gram ids `prev_ids` (any
  negative id, unknown, gives a negative key that matches nothing)."""
  key = np.empty(sym.size, np.int64)
  key[1:] = prev_ids[:-1]
  key[starts] = 0  # the context of a sequence's first prediction is all <s>
  key *= radix
  key += sym
  return key


def _rank(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """np.unique(key, return_inverse) shifted so ids start at 1 (0 is kept for <s>^k), plus one
  position where each unique key occurs. Consumes `key`.

  Returns:
    (sorted keys with 0 prepended, int32 id per position, int64 position per id >= 1).
  """
  n = key.size
  pos_bits = max(int(n - 1).bit_length(), 1)
  if int(key.max()).bit_length() + pos_bits <= 63:
    # Sorting (key, position) packed in one int64 is about twice as fast as argsort, in place.
    key <<= pos_bits
    chunk = 1 << 22
    for i in range(0, n, chunk):
      key[i : i + chunk] |= np.arange(i, min(i + chunk, n), dtype=np.int64)
    key.sort()
    perm = key & ((1 << pos_bits) - 1)
    key >>= pos_bits
    sorted_key = key
  else:
    perm = np.argsort(key)
    sorted_key = key[perm]
    del key
  new = np.empty(n, bool)
  new[0] = True
  np.not_equal(sorted_key[1:], sorted_key[:-1], out=new[1:])
  unique = np.concatenate([np.zeros(1, np.int64), sorted_key[new]])
  del sorted_key
  ids = np.empty(n, np.int32)
  ids[perm] = np.cumsum(new, dtype=np.int32)
  return unique, ids, perm[new]


def _count_of_counts(counts: np.ndarray) -> np.ndarray:
  return np.bincount(np.minimum(counts, 5), minlength=6)[1:5]


def _estimate_discounts(n: np.ndarray) -> np.ndarray:
  """Chen & Goodman's D1, D2, D3+ from count-of-counts n1..n4, or FALLBACK_DISCOUNTS."""
  n1, n2, n3, n4 = (float(x) for x in n)
  if n1 > 0 and n2 > 0 and n3 > 0:
    y = n1 / (n1 + 2 * n2)
    d = np.array([1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3])
    if np.all(d > 0) and np.all(d <= (1, 2, 3)):
      return d
  return np.array(FALLBACK_DISCOUNTS, np.float64)


def _check_discounts(discounts: Sequence[float] | np.ndarray | None, order: int) -> np.ndarray | None:
  if discounts is None:
    return None
  d = np.asarray(discounts, np.float64)
  if d.shape not in ((3,), (order, 3)):
    raise ValueError(f"discounts must have shape (3,) or (order, 3) = ({order}, 3), got shape {d.shape}.")
  d = np.broadcast_to(d, (order, 3)).copy()
  # D_r <= r keeps every count's discounted mass >= 0, so each distribution still sums to 1.
  if not np.all((d >= 0) & (d <= (1, 2, 3))):
    raise ValueError(f"discounts must satisfy 0 <= D1 <= 1, 0 <= D2 <= 2, 0 <= D3+ <= 3, got {d.tolist()}.")
  return d


def fit_kneser_ney(
  sequences: Sequence[np.ndarray],
  *,
  order: int = 3,
  vocab_size: int,
  discounts: Sequence[float] | np.ndarray | None = None,
) -> KneserNey:
  """Counts n-grams of `sequences` and returns the interpolated modified Kneser-Ney model.

  Args:
    sequences: 1-D integer arrays of token ids in [0, vocab_size), one per document or paragraph;
      n-grams never cross from one to the next.
    order: n, the longest n-gram; 1 is a smoothed unigram model.
    vocab_size: number of token ids; the model predicts these and end-of-sequence.
    discounts: None to estimate D1, D2, D3+ per order from the counts; or fixed ones, shape (3,)
      for every order or (order, 3) for orders 1..order, with 0 <= D_r <= r.

  Returns:
    A KneserNey model for `log_prob`, `perplexity`, `token_log_probs` and
    `conditional_distribution`.

  Raises:
    ValueError: bad order, vocab_size or discounts, no sequence, a token id outside
      [0, vocab_size), or more than 2^31 - 2 tokens.
  """
  _check_order_and_vocab(order, vocab_size)
  fixed = _check_discounts(discounts, order)
  sym, starts = _symbol_stream(sequences, vocab_size, "sequences")
  # Keys stay below (sym.size + 1) * radix < 2^62: the int32 limits on both checked above are what
  # keep them inside int64, at any order.
  radix = vocab_size + 2

  # Pass k builds the k-gram ids; the k-grams' suffixes give the (k-1)-grams' continuation counts.
  keys = [np.arange(radix, dtype=np.int64)]  # order 1: the id is the symbol
  counts = []
  ids = sym
  for _ in range(2, order + 1):
    unique, next_ids, where = _rank(_context_keys(ids, sym, starts, radix))
    # The (k-1)-gram ending where a k-gram ends is its suffix; one entry per distinct k-gram.
    counts.append(np.bincount(ids[where], minlength=keys[-1].size).astype(np.int32))
    del where
    keys.append(unique)
    ids = next_ids
  counts.append(np.bincount(ids, minlength=keys[-1].size).astype(np.int32))  # raw, highest order
  del ids, sym

  d_all = np.empty((order, 3), np.float64)
  totals, backoffs = [], []
  for k in range(order):
    c = counts[k]
    d = fixed[k] if fixed is not None else _estimate_discounts(_count_of_counts(c))
    d_all[k] = d
    # keys sort by context, so a context's k-grams are contiguous; bincount does not need that.
    context = keys[k] // radix if k else np.zeros(c.size, np.int64)
    num_contexts = keys[k - 1].size if k else 1
    totals.append(np.bincount(context, weights=c, minlength=num_contexts).astype(np.int32))
    discount_of = np.concatenate([[0.0], d])[np.minimum(c, 3)]
    backoffs.append(np.bincount(context, weights=discount_of, minlength=num_contexts))
    del context, discount_of
  d_all.setflags(write=False)
  return KneserNey(
    order=order,
    vocab_size=vocab_size,
    discounts=d_all,
    keys=tuple(keys),
    counts=tuple(counts),
    context_totals=tuple(totals),
    context_backoffs=tuple(backoffs),
  )


def _lookup(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
  """Index of each query in sorted `keys`, -1 where absent."""
  i = np.searchsorted(keys, query)
  np.minimum(i, keys.size - 1, out=i)
  return np.where(keys[i] == query, i, -1)


def _stream_probs(model: KneserNey, sym: np.ndarray, starts: np.ndarray) -> np.ndarray:
  """P(symbol | its order - 1 predecessors) at every position of a symbol stream, float64."""
  radix = model.vocab_size + 2
  p = np.full(sym.size, 1.0 / (model.vocab_size + 1))
  ids = prev = None
  for k in range(model.order):
    if k == 0:
      ids, context = sym, np.zeros(sym.size, np.int64)
    else:
      context = np.empty(sym.size, np.int64)
      context[1:] = prev[:-1]
      context[starts] = 0
      ids = _lookup(model.keys[k], context * radix + sym)  # unknown context: negative, not found
    c = np.where(ids >= 0, model.counts[k][np.maximum(ids, 0)], 0)
    known = context >= 0
    safe = np.maximum(context, 0)
    total = np.where(known, model.context_totals[k][safe], 0).astype(np.float64)
    backoff = model.context_backoffs[k][safe]
    discount = np.concatenate([[0.0], model.discounts[k]])[np.minimum(c, 3)]
    seen = total > 0
    p = np.where(seen, (np.maximum(c - discount, 0.0) + backoff * p) / np.where(seen, total, 1.0), p)
    prev = ids
  return p


def token_log_probs(model: KneserNey, sequences: Sequence[np.ndarray]) -> np.ndarray:
  """Natural log-probability of each prediction: for every sequence in turn, its tokens then its
  end-of-sequence, so len(sequence) + 1 entries each. -inf only where all discounts are 0."""
  _check_model(model)
  sym, starts = _symbol_stream(sequences, model.vocab_size, "sequences")
  with np.errstate(divide="ignore"):
    return np.log(_stream_probs(model, sym, starts))


def log_prob(model: KneserNey, sequences: Sequence[np.ndarray]) -> tuple[float, int]:
  """(total natural log-probability, number of predictions) of held-out `sequences`, scored as in
  training: <s>-padded on the left, end-of-sequence predicted too."""
  lp = token_log_probs(model, sequences)
  return float(lp.sum()), int(lp.size)


def perplexity(model: KneserNey, sequences: Sequence[np.ndarray]) -> float:
  """exp(-total log-probability / number of predictions), end-of-sequence counted as a token."""
  total, num = log_prob(model, sequences)
  return float(np.exp(-total / num))


def conditional_distribution(model: KneserNey, context: Sequence[int] | np.ndarray) -> np.ndarray:
  """P(next | context) over all vocab_size + 1 outcomes: tokens 0..vocab_size-1, then
  end-of-sequence at index vocab_size. float64, sums to 1.

  Args:
    model: a fitted model.
    context: 1-D token ids since the start of the sequence; fewer than order - 1 of them mean the
      sequence has just begun (the rest is <s>). Only the last order - 1 matter.
  """
  _check_model(model)
  context = np.asarray(context)
  if context.ndim != 1:
    raise ValueError(f"context must be a 1-D array of token ids, got shape {context.shape}.")
  tail = context[max(context.size - (model.order - 1), 0) :]
  if tail.size and not np.issubdtype(tail.dtype, np.integer):
    raise ValueError(f"context must hold integer token ids, got dtype {tail.dtype}.")
  bad = (tail < 0) | (tail >= model.vocab_size)
  if bad.any():
    raise ValueError(f"context holds token id {tail[bad][0]}, outside [0, vocab_size={model.vocab_size}).")
  # One row per outcome: the context tail then the outcome, each row a sequence of its own.
  outcomes = model.vocab_size + 1
  rows = np.empty((outcomes, tail.size + 1), np.int32)
  rows[:, :-1] = tail + 1
  rows[:, -1] = np.arange(1, outcomes + 1)  # symbols of tokens 0..V-1, then </s>
  starts = np.arange(outcomes, dtype=np.int64) * (tail.size + 1)
  return _stream_probs(model, rows.ravel(), starts)[tail.size :: tail.size + 1]


def _check_model(model: object) -> None:
  if not isinstance(model, KneserNey):
    raise ValueError(f"model must be a KneserNey from fit_kneser_ney, got {type(model).__name__}.")
