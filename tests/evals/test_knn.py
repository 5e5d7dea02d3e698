"""Tests for ssljax.evals.knn against a float64 brute-force reference."""

import jax.numpy as jnp
import numpy as np
import pytest

from ssljax.evals.knn import knn_predict, knn_top1, nearest_neighbors


def _cosine64(a, b):
  normalize = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  return normalize(np.asarray(a, np.float64)) @ normalize(np.asarray(b, np.float64)).T


def _reference_votes(train_x, train_y, test_x, num_classes, k, temperature):
  """Wu et al. 2018 weighted vote, one test row at a time, in float64."""
  votes = np.zeros((len(test_x), num_classes))
  for i, row in enumerate(_cosine64(test_x, train_x)):
    order = np.argsort(-row)
    if k < len(row):
      assert row[order[k - 1]] - row[order[k]] > 1e-4, "fixture has a near-tie at neighbour k"
    for j in order[:k]:
      # Shifting by the row's best similarity rescales the row's votes only; exp(1/T) would
      # overflow for T = 0.005 otherwise.
      votes[i, train_y[j]] += np.exp((row[j] - row[order[0]]) / temperature)
  return votes


@pytest.fixture(scope="module")
def random_data():
  rng = np.random.default_rng(0)
  train_x = rng.normal(size=(60, 8)).astype(np.float32)
  train_y = rng.integers(0, 4, 60)
  test_x = rng.normal(size=(25, 8)).astype(np.float32)
  return train_x, train_y, test_x


@pytest.mark.parametrize("k, temperature", [(1, 0.1), (10, 0.1), (10, 0.005), (60, 1.0)])
def test_matches_bruteforce_reference(random_data, k, temperature):
  train_x, train_y, test_x = random_data
  votes = _reference_votes(train_x, train_y, test_x, 4, k, temperature)
  top2 = np.sort(votes, axis=1)[:, -2:]
  assert np.all(top2[:, 1] - top2[:, 0] > 1e-3 * top2[:, 1]), "fixture has a near-tied vote"
  preds = knn_predict(train_x, train_y, test_x, num_classes=4, k=k, temperature=temperature)
  np.testing.assert_array_equal(preds, votes.argmax(1))


def test_chunking_does_not_change_predictions(random_data):
  train_x, train_y, test_x = random_data
  kwargs = dict(num_classes=4, k=10, temperature=0.1)
  np.testing.assert_array_equal(
    knn_predict(train_x, train_y, test_x, chunk_size=7, **kwargs),
    knn_predict(train_x, train_y, test_x, chunk_size=1000, **kwargs),
  )


def test_nearest_neighbors_match_reference(random_data):
  train_x, _, test_x = random_data
  sims = _cosine64(test_x, train_x)
  idx, got_sims = nearest_neighbors(jnp.asarray(test_x), jnp.asarray(train_x), k=5, chunk_size=4)
  want_idx = np.argsort(-sims, axis=1)[:, :5]
  assert np.all(-np.diff(np.sort(sims, 1)[:, ::-1][:, :6], axis=1) > 1e-5), "fixture has a tie"
  np.testing.assert_array_equal(idx, want_idx)
  np.testing.assert_allclose(got_sims, np.take_along_axis(sims, want_idx, 1), atol=1e-5)


def test_k_larger_than_train_set_raises(random_data):
  train_x, train_y, test_x = random_data
  with pytest.raises(ValueError, match="k must be in"):
    knn_predict(train_x, train_y, test_x, num_classes=4, k=61)


def test_separable_clusters_score_perfectly():
  rng = np.random.default_rng(1)
  centers = rng.normal(size=(5, 16)) * 10
  train_y, test_y = np.repeat(np.arange(5), 40), np.repeat(np.arange(5), 10)
  train_x = centers[train_y] + rng.normal(size=(200, 16))
  test_x = centers[test_y] + rng.normal(size=(50, 16))
  assert knn_top1(train_x, train_y, test_x, test_y, num_classes=5, k=20) == 1.0
