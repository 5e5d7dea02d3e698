"""Tests for ssljax.evals.ngram against a plain dict-based modified Kneser-Ney in float64."""

from __future__ import annotations

import collections
import math

import numpy as np
import pytest

from ssljax.evals import ngram
from ssljax.evals.ngram import (
  FALLBACK_DISCOUNTS,
  conditional_distribution,
  fit_kneser_ney,
  log_prob,
  perplexity,
  token_log_probs,
)

BOS, EOS = "<s>", "</s>"


def _reference_model(train, order, vocab_size, discounts=None):
  """Interpolated modified Kneser-Ney (Chen & Goodman 1998), one n-gram at a time in dicts.

  Returns (prob(history, w) with history the order - 1 symbols before w, discounts by order).
  """
  top = collections.Counter()
  for seq in train:
    padded = [BOS] * (order - 1) + [int(t) for t in seq] + [EOS]
    for i in range(order - 1, len(padded)):
      top[tuple(padded[i - order + 1 : i + 1])] += 1
  counts = {order: dict(top)}
  for k in range(order - 1, 0, -1):  # continuation counts: distinct left extensions
    cont = collections.Counter()
    for gram in counts[k + 1]:
      cont[gram[1:]] += 1
    counts[k] = dict(cont)

  disc = {}
  for k in range(1, order + 1):
    if discounts is not None:
      disc[k] = tuple(float(x) for x in np.broadcast_to(discounts, (order, 3))[k - 1])
      continue
    n = collections.Counter(counts[k].values())
    disc[k] = FALLBACK_DISCOUNTS
    if n[1] and n[2] and n[3]:
      y = n[1] / (n[1] + 2 * n[2])
      d = (1 - 2 * y * n[2] / n[1], 2 - 3 * y * n[3] / n[2], 3 - 4 * y * n[4] / n[3])
      if all(0 < d[r - 1] <= r for r in (1, 2, 3)):
        disc[k] = d

  contexts = {k: {} for k in range(1, order + 1)}  # history -> [total count, gamma numerator]
  for k in range(1, order + 1):
    for gram, c in counts[k].items():
      entry = contexts[k].setdefault(gram[:-1], [0, 0.0])
      entry[0] += c
      entry[1] += disc[k][min(c, 3) - 1]

  def prob(history, w):
    p = 1.0 / (vocab_size + 1)  # uniform over tokens and </s>
    for k in range(1, order + 1):
      h = tuple(history[len(history) - (k - 1) :]) if k > 1 else ()
      if h in contexts[k]:
        total, gamma = contexts[k][h]
        c = counts[k].get(h + (w,), 0)
        d = disc[k][min(c, 3) - 1] if c else 0.0
        p = (max(c - d, 0.0) + gamma * p) / total
    return p

  return prob, np.array([disc[k] for k in range(1, order + 1)])


def _reference_probs(prob, sequences, order):
  out = []
  for seq in sequences:
    padded = [BOS] * (order - 1) + [int(t) for t in seq] + [EOS]
    for i in range(order - 1, len(padded)):
      out.append(prob(padded[i - order + 1 : i], padded[i]))
  return np.array(out)


def _skewed_sequences(rng, num, max_len, vocab):
  """Zipf-ish tokens with some repetition, so the counts have 1s, 2s, 3s and more."""
  weights = 1.0 / np.arange(1, vocab + 1)
  return [rng.choice(vocab, rng.integers(0, max_len), p=weights / weights.sum()) for _ in range(num)]


def _markov_sequences(rng, num, length, vocab, alpha=0.1):
  """A second-order Markov chain with sparse Dirichlet(alpha) transitions."""
  cum = np.cumsum(rng.dirichlet(np.full(vocab, alpha), size=(vocab, vocab)), axis=-1)
  cum[..., -1] = 1.0
  out = []
  for _ in range(num):
    u = rng.random(length)
    seq = [int(rng.integers(vocab)), int(rng.integers(vocab))]
    for t in range(2, length):
      seq.append(int(np.searchsorted(cum[seq[-2], seq[-1]], u[t])))
    out.append(np.array(seq))
  return out


@pytest.fixture(scope="module")
def tiny():
  rng = np.random.default_rng(0)
  train = _skewed_sequences(rng, 25, 30, 10)  # ids 10 and 11 of the vocab of 12 never appear
  train.append(np.zeros(0, np.int64))  # an empty sequence still predicts </s>
  held = _skewed_sequences(rng, 8, 20, 12)
  assert 250 < sum(map(len, train)) < 600
  assert any(11 in s or 10 in s for s in held)
  return train, held, 12


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("discounts", [None, (0.3, 0.9, 1.7)])
def test_matches_dict_reference(tiny, order, discounts):
  train, held, vocab = tiny
  prob, want_d = _reference_model(train, order, vocab, discounts)
  model = fit_kneser_ney(train, order=order, vocab_size=vocab, discounts=discounts)
  np.testing.assert_allclose(model.discounts, want_d, rtol=1e-12)
  for sequences in (held, train):
    want = _reference_probs(prob, sequences, order)
    got = np.exp(token_log_probs(model, sequences))
    assert got.shape == want.shape == (sum(map(len, sequences)) + len(sequences),)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=0)
  total, num = log_prob(model, held)
  assert num == sum(map(len, held)) + len(held)
  assert total == pytest.approx(np.log(_reference_probs(prob, held, order)).sum(), rel=1e-10)


def test_reference_comparison_covers_both_discount_paths(tiny):
  train, _, vocab = tiny
  rows = np.concatenate([fit_kneser_ney(train, order=o, vocab_size=vocab).discounts for o in (1, 2, 3, 4)])
  fallback = np.all(rows == FALLBACK_DISCOUNTS, axis=1)
  assert fallback.any() and not fallback.all()


def test_matches_reference_with_sparse_ids_in_a_large_vocab():
  rng = np.random.default_rng(1)
  ids = rng.choice(1_000_000, 15, replace=False)
  train = [ids[s] for s in _skewed_sequences(rng, 20, 25, 15)]
  held = [ids[s] for s in _skewed_sequences(rng, 5, 25, 15)] + [np.array([999_999, 0])]
  prob, _ = _reference_model(train, 3, 1_000_000)
  model = fit_kneser_ney(train, order=3, vocab_size=1_000_000)
  np.testing.assert_allclose(np.exp(token_log_probs(model, held)), _reference_probs(prob, held, 3), rtol=1e-10, atol=0)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_conditional_distribution_sums_to_one(tiny, order):
  train, _, vocab = tiny
  model = fit_kneser_ney(train, order=order, vocab_size=vocab)
  rng = np.random.default_rng(order)
  contexts = [np.zeros(0, np.int64), train[0][:1], train[1][:5], train[2]]
  contexts += [rng.integers(0, vocab, rng.integers(1, 6)) for _ in range(6)]
  for context in contexts:
    dist = conditional_distribution(model, context)
    assert dist.shape == (vocab + 1,)
    assert np.all(dist > 0)
    assert abs(dist.sum() - 1.0) < 1e-9, (context, dist.sum())


def test_conditional_distribution_agrees_with_token_scores(tiny):
  train, held, vocab = tiny
  model = fit_kneser_ney(train, order=3, vocab_size=vocab)
  seq = max(held, key=len)
  scores = np.exp(token_log_probs(model, [seq]))
  for i in range(len(seq) + 1):
    dist = conditional_distribution(model, seq[:i])
    target = seq[i] if i < len(seq) else vocab  # index vocab_size is </s>
    assert dist[target] == pytest.approx(scores[i], rel=1e-12)


def test_perplexity_falls_with_order_on_a_markov_chain():
  rng = np.random.default_rng(0)
  sequences = _markov_sequences(rng, 40, 600, 20)
  train, held = sequences[:34], sequences[34:]
  ppl = [perplexity(fit_kneser_ney(train, order=o, vocab_size=20), held) for o in (1, 2, 3, 4)]
  assert ppl[0] > 1.1 * ppl[1] and ppl[1] > 2 * ppl[2], ppl
  # The chain has order 2: a 4-gram model has nothing more to learn, only sparser counts.
  assert 0.9 * ppl[2] < ppl[3] < 1.1 * ppl[2], ppl


def test_unigram_perplexity_closed_form():
  rng = np.random.default_rng(0)
  vocab = 300
  train = _skewed_sequences(rng, 40, 80, 250)  # ids 250..299 unseen in training
  held = _skewed_sequences(rng, 10, 80, 300)
  c = np.bincount(np.concatenate(train), minlength=vocab + 1).astype(np.float64)
  c[vocab] = len(train)  # </s>, once per sequence
  n = np.array([np.sum(c == r) for r in (1, 2, 3, 4)], np.float64)
  y = n[0] / (n[0] + 2 * n[1])
  d = np.array([1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2]])
  assert np.all((d > 0) & (d <= [1, 2, 3])), d
  d_of = np.concatenate([[0.0], d])[np.minimum(c, 3).astype(int)]
  gamma = d[0] * n[0] + d[1] * n[1] + d[2] * np.sum(c >= 3)
  p = (c - d_of + gamma / (vocab + 1)) / c.sum()
  assert p.sum() == pytest.approx(1.0, abs=1e-12)
  held_ids = np.concatenate([np.append(s, vocab) for s in held])
  want = math.exp(-np.log(p[held_ids]).mean())

  model = fit_kneser_ney(train, order=1, vocab_size=vocab)
  np.testing.assert_allclose(model.discounts[0], d, rtol=1e-12)
  assert perplexity(model, held) == pytest.approx(want, rel=1e-10)

  # Without discounting the unigram model is the maximum-likelihood one: on its own training data
  # its perplexity is exp(entropy) of the token (and </s>) frequencies.
  mle = fit_kneser_ney(train, order=1, vocab_size=vocab, discounts=(0.0, 0.0, 0.0))
  q = c[c > 0] / c.sum()
  assert perplexity(mle, train) == pytest.approx(math.exp(-(q * np.log(q)).sum()), rel=1e-10)


def test_rank_paths_agree_with_np_unique():
  rng = np.random.default_rng(0)
  for high in (1000, 2**61):  # packed sort, then argsort (key and position need > 63 bits)
    key = rng.integers(0, high, 5000)
    key[rng.integers(0, 5000, 2000)] = key[rng.integers(0, 5000, 2000)]
    want_unique, want_inverse = np.unique(key, return_inverse=True)
    unique, ids, where = ngram._rank(key.copy())
    np.testing.assert_array_equal(unique, np.concatenate([[0], want_unique]))
    np.testing.assert_array_equal(ids, want_inverse + 1)
    np.testing.assert_array_equal(key[where], want_unique)


def test_bad_inputs_raise_clear_errors():
  good = [np.array([0, 1, 2, 1])]
  with pytest.raises(
    ValueError,
    match=r"sequences\[1\]\[2\] is token id 5, outside \[0, "
    r"vocab_size=5\)",
  ):
    fit_kneser_ney([np.array([1]), np.array([0, 1, 5])], vocab_size=5)
  with pytest.raises(ValueError, match="token id -1"):
    fit_kneser_ney([np.array([0, -1])], vocab_size=5)
  with pytest.raises(ValueError, match="order must be an integer >= 1, got 0"):
    fit_kneser_ney(good, order=0, vocab_size=5)
  with pytest.raises(ValueError, match="sequences is empty"):
    fit_kneser_ney([], vocab_size=5)
  with pytest.raises(ValueError, match="vocab_size must be"):
    fit_kneser_ney(good, vocab_size=0)
  with pytest.raises(ValueError, match="got one 1-D array"):
    fit_kneser_ney(good[0], vocab_size=5)
  with pytest.raises(ValueError, match="integer token ids, got dtype float64"):
    fit_kneser_ney([np.array([0.0, 1.0])], vocab_size=5)
  with pytest.raises(ValueError, match="0 <= D1 <= 1"):
    fit_kneser_ney(good, vocab_size=5, discounts=(1.5, 1.0, 1.0))
  with pytest.raises(ValueError, match="shape"):
    fit_kneser_ney(good, order=3, vocab_size=5, discounts=np.ones((2, 3)))
  model = fit_kneser_ney(good, order=2, vocab_size=5)
  with pytest.raises(ValueError, match=r"sequences\[0\]\[0\] is token id 7"):
    perplexity(model, [np.array([7])])
  with pytest.raises(ValueError, match="sequences is empty"):
    log_prob(model, [])
  with pytest.raises(ValueError, match="context holds token id 9"):
    conditional_distribution(model, [9])
