"""Weighted k-nearest-neighbour evaluation on frozen features.

The kNN monitor of Wu et al. 2018, "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination" (https://arxiv.org/abs/1805.01978), as used to evaluate SimCLR, MoCo and DINO:
cosine similarity, top-k train neighbours per test row, votes weighted by exp(similarity / T).

Example:
  >>> acc = knn_top1(train_feats, train_labels, test_feats, test_labels, num_classes=10)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["knn_predict", "knn_top1", "nearest_neighbors"]


def _l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


@functools.partial(jax.jit, static_argnames="k")
def _top_k_chunk(query: jax.Array, bank: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  # Only a (chunk, N) similarity block lives at once: 1024 x 60k floats is 245 MB, not 2.4 GB.
  return jax.lax.top_k(_l2_normalize(query) @ bank.T, k)


def _as_matrix(x, name: str) -> np.ndarray:
  x = np.asarray(x, dtype=np.float32)
  if x.ndim != 2:
    raise ValueError(f"{name} must be a (num_examples, dim) matrix, got shape {x.shape}.")
  return x


def _cosine_top_k(query, bank, k: int, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
  """(similarities, indices), each (num_query, k), sorted by decreasing similarity."""
  query, bank = _as_matrix(query, "query features"), _as_matrix(bank, "bank features")
  if query.shape[1] != bank.shape[1]:
    raise ValueError(f"Feature dims differ: query {query.shape[1]} vs bank {bank.shape[1]}.")
  if not 1 <= k <= bank.shape[0]:
    raise ValueError(f"k must be in [1, {bank.shape[0]}] (the bank size), got k={k}.")
  if chunk_size < 1:
    raise ValueError(f"chunk_size must be positive, got {chunk_size}.")
  bank = _l2_normalize(jnp.asarray(bank))
  num_query = query.shape[0]
  chunk_size = min(chunk_size, max(num_query, 1))
  # Pad the last chunk to full size so every call reuses one compiled shape.
  padded = np.zeros((-(-num_query // chunk_size) * chunk_size, query.shape[1]), np.float32)
  padded[:num_query] = query
  sims, idx = zip(
    *(_top_k_chunk(jnp.asarray(padded[i : i + chunk_size]), bank, k) for i in range(0, len(padded), chunk_size))
  )
  return np.concatenate(sims)[:num_query], np.concatenate(idx)[:num_query]


def nearest_neighbors(
  query_features, bank_features, *, k: int, chunk_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
  """Cosine nearest neighbours of each query row among the bank rows.

  Args:
    query_features: (Q, D) array.
    bank_features: (N, D) array.
    k: neighbours per query, 1 <= k <= N.
    chunk_size: query rows per jitted similarity block.

  Returns:
    (indices, similarities): (Q, k) int32 bank indices and float32 cosine similarities, most
    similar first.
  """
  sims, idx = _cosine_top_k(query_features, bank_features, k, chunk_size)
  return idx, sims


@functools.partial(jax.jit, static_argnames="num_classes")
def _weighted_votes(sims, neighbor_labels, temperature, num_classes: int) -> jax.Array:
  # Subtracting the row max rescales each row's votes by one constant: argmax unchanged, and
  # exp(1 / T) cannot overflow float32 for small T.
  weights = jnp.exp((sims - sims[:, :1]) / temperature)
  return jax.vmap(lambda lab, w: jnp.zeros(num_classes, w.dtype).at[lab].add(w))(neighbor_labels, weights)


def knn_predict(
  train_features,
  train_labels,
  test_features,
  *,
  num_classes: int,
  k: int = 200,
  temperature: float = 0.1,
  chunk_size: int = 1024,
) -> np.ndarray:
  """Weighted kNN class predictions for the test rows (Wu et al. 2018).

  Args:
    train_features: (N, D) float array, the labelled bank.
    train_labels: (N,) ints in [0, num_classes).
    test_features: (M, D) float array.
    num_classes: number of classes.
    k: neighbours per test row; must not exceed N (a ValueError rather than a silent clip,
      because the vote with fewer neighbours is a different estimator).
    temperature: T in the vote weight exp(cosine / T).
    chunk_size: test rows per jitted similarity block; bounds memory, not the result.

  Returns:
    (M,) int array of predicted classes. Exact ties go to the lower class index.
  """
  train_labels = np.asarray(train_labels)
  if train_labels.shape != (np.shape(train_features)[0],):
    raise ValueError(f"train_labels must have shape ({np.shape(train_features)[0]},), got {train_labels.shape}.")
  if train_labels.size and not 0 <= train_labels.min() <= train_labels.max() < num_classes:
    raise ValueError(f"train_labels must lie in [0, {num_classes}).")
  if temperature <= 0:
    raise ValueError(f"temperature must be positive, got {temperature}.")
  sims, idx = _cosine_top_k(test_features, train_features, k, chunk_size)
  votes = _weighted_votes(jnp.asarray(sims), jnp.asarray(train_labels[idx]), temperature, num_classes)
  return np.asarray(jnp.argmax(votes, axis=-1))


def knn_top1(
  train_features,
  train_labels,
  test_features,
  test_labels,
  *,
  num_classes: int,
  k: int = 200,
  temperature: float = 0.1,
  chunk_size: int = 1024,
) -> float:
  """Top-1 accuracy of `knn_predict` against `test_labels`; same arguments."""
  preds = knn_predict(
    train_features,
    train_labels,
    test_features,
    num_classes=num_classes,
    k=k,
    temperature=temperature,
    chunk_size=chunk_size,
  )
  return float(np.mean(preds == np.asarray(test_labels)))
