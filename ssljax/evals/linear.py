"""Linear probe on frozen features: multinomial logistic regression fitted by full-batch L-BFGS.

The SimCLR / BYOL linear evaluation protocol (Chen et al. 2020, https://arxiv.org/abs/2002.05709,
appendix B.5; Grill et al. 2020, https://arxiv.org/abs/2006.07733) adapted to a CPU budget: the
features are standardised, the L2 strength is picked on a held-out stratified slice of the train
set, and the classifier is refitted on all train features before the single test evaluation.

Example:
  >>> result = linear_probe(train_x, train_y, test_x, test_y, num_classes=10)
  >>> result['top1'], result['l2']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from threadpoolctl import threadpool_limits

__all__ = ["fit_logistic_regression", "label_fraction_indices", "linear_probe", "logistic_regression_objective"]


def logistic_regression_objective(params: dict, features, labels, l2, sample_weights=None) -> jax.Array:
  """mean cross-entropy + l2 * ||W||^2; the bias is not penalised.

  Args:
    params: {'w': (C, D), 'b': (C,)}.
    features: (N, D) array.
    labels: (N,) ints in [0, C).
    l2: regularisation strength.
    sample_weights: optional (N,) weights; the mean becomes sum(w * ce) / sum(w).
  """
  # W is stored (C, D), as torch.nn.Linear does: XLA:CPU then computes the gradient as
  # g.T @ x, about 4x faster than the x.T @ g it emits for a (D, C) kernel.
  logits = features @ params["w"].T + params["b"]
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  ce = ce.mean() if sample_weights is None else (jnp.sum(sample_weights * ce) / jnp.sum(sample_weights))
  return ce + l2 * jnp.sum(jnp.square(params["w"]))


@jax.jit
def _lbfgs(params, rotated, labels, sample_weights, scale, l2, tol, max_iters):
  """L-BFGS on the objective with W = (W' * scale) in the rotated basis; see `_Preconditioner`."""

  def objective(p):
    return logistic_regression_objective({"w": p["w"] * scale, "b": p["b"]}, rotated, labels, l2, sample_weights)

  solver = optax.lbfgs()
  # Reuses the value and gradient the zoom line search already computed at the accepted point.
  value_and_grad = optax.value_and_grad_from_state(objective)

  def step(carry):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=objective)
    return optax.apply_updates(params, updates), state

  def keep_going(carry):
    _, state = carry
    count = optax.tree.get(state, "count")
    grad = optax.tree.get(state, "grad")
    # Gradient norm w.r.t. the original W, so `tol` does not depend on the preconditioner.
    grad_norm = optax.tree.norm({"w": grad["w"] / scale, "b": grad["b"]})
    return (count == 0) | ((count < max_iters) & (grad_norm >= tol))

  params, state = jax.lax.while_loop(keep_going, step, (params, solver.init(params)))
  return params, optax.tree.get(state, "value"), optax.tree.get(state, "count")


class _Preconditioner(NamedTuple):
  """Features in the eigenbasis of their second-moment matrix M = x^T x / N.

  Near W = 0 the objective's Hessian in W is about M / C + 2 l2 I (softmax curvature ~1/C per
  class). Optimising W' with W = (W' * scale) @ basis.T, scale = (eig(M) / C + 2 l2)^-1/2, makes
  that Hessian close to the identity, so L-BFGS needs 2-7x fewer iterations on correlated
  features (7x on 512-d random ReLU features of Fashion-MNIST). The objective and its minimiser are
  unchanged; only the coordinates L-BFGS walks in differ.
  """

  rotated: jax.Array  # x @ basis
  eigvals: np.ndarray
  basis: np.ndarray

  @classmethod
  def of(cls, features) -> _Preconditioner:
    x = np.asarray(features, np.float32)
    # One BLAS thread: 0.3 s for 60k x 512 either way when cores are free, but with cores shared
    # (JAX's threads, other jobs) threaded OpenBLAS spins and took 5.5 s.
    with threadpool_limits(1, user_api="blas"):
      eigvals, basis = np.linalg.eigh((x.T @ x).astype(np.float64) / len(x))
      basis = basis.astype(np.float32)
      rotated = x @ basis
    return cls(jnp.asarray(rotated), np.maximum(eigvals, 0.0), basis)

  def fit(
    self, labels, *, num_classes: int, l2: float, max_iters: int, tol: float, init: dict | None, sample_weights=None
  ) -> tuple[dict, float, int]:
    # 1e-6 keeps the scale finite for l2 = 0 along null directions of rank-deficient features.
    scale = (self.eigvals / num_classes + 2 * l2 + 1e-6).astype(np.float32) ** -0.5
    if init is None:
      init = {"w": np.zeros((num_classes, len(scale)), np.float32), "b": np.zeros(num_classes, np.float32)}
    start = {"w": np.asarray(init["w"], np.float32) @ self.basis / scale, "b": np.asarray(init["b"], np.float32)}
    if sample_weights is None:  # explicit ones: one compiled program for weighted and not
      sample_weights = np.ones(len(labels), np.float32)
    params, value, count = _lbfgs(
      start,
      self.rotated,
      jnp.asarray(labels, jnp.int32),
      jnp.asarray(sample_weights, jnp.float32),
      scale,
      jnp.float32(l2),
      jnp.float32(tol),
      jnp.int32(max_iters),
    )
    w = (np.asarray(params["w"]) * scale) @ self.basis.T
    return {"w": w, "b": np.asarray(params["b"])}, float(value), int(count)


def fit_logistic_regression(
  features, labels, *, num_classes: int, l2: float, max_iters: int = 1000, tol: float = 1e-4, init: dict | None = None
) -> tuple[dict, float, int]:
  """Minimises `logistic_regression_objective` with optax's L-BFGS (zoom line search).

  Args:
    features: (N, D) float array, preferably standardised as `linear_probe` does.
    labels: (N,) ints in [0, num_classes).
    num_classes: number of classes C.
    l2: regularisation strength on W.
    max_iters: L-BFGS iteration cap.
    tol: stop once the gradient's global L2 norm (w.r.t. W and b) falls below this.
    init: warm start {'w': (C, D), 'b': (C,)}; zeros by default.

  Returns:
    (params {'w': (C, D), 'b': (C,)} as float32 numpy arrays, objective value, iterations run).
  """
  return _Preconditioner.of(features).fit(
    labels, num_classes=num_classes, l2=l2, max_iters=max_iters, tol=tol, init=init
  )


def _accuracy(params: dict, features: np.ndarray, labels: np.ndarray) -> float:
  logits = features @ params["w"].T + params["b"]
  return float(np.mean(np.argmax(logits, axis=-1) == labels))


def stratified_subset(
  labels: np.ndarray, fraction: float, rng: np.random.Generator, *, leave_one: bool = False
) -> np.ndarray:
  """round(fraction * count) random members of each class, at least one, and with `leave_one`
  at most count - 1, so every class keeps a member outside the subset."""
  picked = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    size = max(1, int(round(fraction * len(members))))
    picked.append(rng.permutation(members)[: min(size, len(members) - 1) if leave_one else size])
  return np.sort(np.concatenate(picked))


def fraction_name(kind: str, fraction: float) -> str:
  """eval.json's name for an eval at a label fraction: ('linear', 1.0) -> linear, ('finetune', 0.1) ->
  finetune_10pct."""
  return kind if fraction == 1.0 else f"{kind}_{fraction * 100:g}pct"


def label_fraction_indices(labels, fraction: float, *, seed: int) -> np.ndarray:
  """Seeded class-balanced subset of indices, for semi-supervised (1% / 10% label) probes.

  Each class keeps round(fraction * its count) examples, at least one.

  Args:
    labels: (N,) int labels.
    fraction: in (0, 1]; 1.0 returns every index.
    seed: numpy RNG seed; equal seeds give equal subsets.

  Returns:
    Sorted int64 indices into `labels`.
  """
  labels = np.asarray(labels)
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
  if fraction == 1.0:
    return np.arange(len(labels))
  return stratified_subset(labels, fraction, np.random.default_rng(seed))


def linear_probe(
  train_features,
  train_labels,
  test_features,
  test_labels,
  *,
  num_classes: int,
  l2_grid: Sequence[float] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
  val_fraction: float = 0.1,
  seed: int = 0,
  max_iters: int = 1000,
  tol: float = 1e-4,
) -> dict:
  """Linear-probe top-1 accuracy with the L2 strength chosen on a held-out validation split.

  Args:
    train_features: (N, D) frozen features of the labelled train set.
    train_labels: (N,) ints in [0, num_classes).
    test_features: (M, D) frozen features of the test set.
    test_labels: (M,) ints.
    num_classes: number of classes.
    l2_grid: candidate l2 strengths for mean CE + l2 * ||W||^2.
    val_fraction: stratified share of the train set held out to choose l2.
    seed: seeds the validation split; the fit itself is deterministic.
    max_iters: L-BFGS iteration cap per fit.
    tol: gradient-norm stopping tolerance of the final refit; the l2 search uses 10 * tol.

  Returns:
    {'top1': test accuracy of the refit, 'l2': chosen strength, 'l2_at_grid_end': whether it is the
    smallest or largest of a grid of 2 or more, 'val_top1': its validation
    accuracy, 'val_top1_by_l2': {l2: validation accuracy}, 'train_top1': refit train accuracy,
    'loss': refit objective value, 'iters': refit L-BFGS iterations}.
  """
  train_x = np.asarray(train_features, np.float32)
  test_x = np.asarray(test_features, np.float32)
  train_y, test_y = np.asarray(train_labels), np.asarray(test_labels)
  if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
    raise ValueError(f"Features must be (N, D) and (M, D); got {train_x.shape}, {test_x.shape}.")
  if train_y.shape != (len(train_x),) or test_y.shape != (len(test_x),):
    raise ValueError("Each label array must have one entry per feature row.")
  for name, y in (("train_labels", train_y), ("test_labels", test_y)):
    if y.size and not 0 <= y.min() <= y.max() < num_classes:
      raise ValueError(f"{name} must lie in [0, {num_classes}).")
  if not 0.0 < val_fraction < 1.0:
    raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
  if not l2_grid:
    raise ValueError("l2_grid must hold at least one value.")

  mean, std = train_x.mean(0), train_x.std(0)
  # Statistics over all train rows, validation included: they use no labels, so nothing leaks.
  std = np.where(std > 0, std, 1.0)  # constant feature dims carry no signal; avoid 0/0
  train_x, test_x = (train_x - mean) / std, (test_x - mean) / std

  val = np.zeros(len(train_y), bool)
  rng = np.random.default_rng(seed)
  val[stratified_subset(train_y, val_fraction, rng, leave_one=True)] = True
  if not val.any():
    raise ValueError("Every class has a single train example: nothing to hold out to choose l2.")
  fit_kwargs = dict(num_classes=num_classes, max_iters=max_iters)
  # Validation rows get weight 0 instead of being sliced out: every fit, the refit included, then
  # shares one compiled program and one preconditioner (any fixed one is valid).
  problem = _Preconditioner.of(train_x)
  # Regularisation path from strong to weak: each fit warm-starts from the previous optimum,
  # which is close, saving the weakly regularised (slowest) fits 10-25% of their iterations.
  params, val_top1_by_l2, solutions = None, {}, {}
  for l2 in sorted(map(float, l2_grid), reverse=True):
    # Only the validation ranking matters here, so a 10x looser tolerance: on Fashion-MNIST
    # features it cut the search's iterations 4x, moved validation accuracies by <= 0.2% and
    # left the choice unchanged.
    params, _, _ = problem.fit(train_y, sample_weights=~val, l2=l2, init=params, tol=10 * tol, **fit_kwargs)
    val_top1_by_l2[l2] = _accuracy(params, train_x[val], train_y[val])
    solutions[l2] = params
  # Ties go to the stronger regularisation, the safer choice.
  best_l2 = max(val_top1_by_l2, key=lambda l2: (val_top1_by_l2[l2], l2))
  params, loss, iters = problem.fit(train_y, l2=best_l2, init=solutions[best_l2], tol=tol, **fit_kwargs)
  return {
    "top1": _accuracy(params, test_x, test_y),
    "l2": best_l2,
    # The optimum may lie beyond the grid when the choice is one of its ends: the caller says so where it reports.
    "l2_at_grid_end": len(val_top1_by_l2) > 1 and best_l2 in (min(val_top1_by_l2), max(val_top1_by_l2)),
    "val_top1": val_top1_by_l2[best_l2],
    "val_top1_by_l2": val_top1_by_l2,
    "train_top1": _accuracy(params, train_x, train_y),
    "loss": loss,
    "iters": iters,
  }
