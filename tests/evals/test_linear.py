"""Tests for ssljax.evals.linear: probe accuracy, optimality against scipy, splits."""

import warnings

import numpy as np
import pytest
import scipy.optimize
import scipy.special

from ssljax.evals.linear import (
  fit_logistic_regression,
  label_fraction_indices,
  linear_probe,
  logistic_regression_objective,
)


def _objective64(w, b, x, y, l2):
  """mean cross-entropy + l2 * ||W||^2 and its gradient, in float64; W is (C, D)."""
  logits = x @ w.T + b
  log_p = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
  value = -log_p[np.arange(len(y)), y].mean() + l2 * np.sum(w**2)
  residual = np.exp(log_p)
  residual[np.arange(len(y)), y] -= 1.0
  residual /= len(y)
  return value, residual.T @ x + 2 * l2 * w, residual.sum(0)


def _blobs(rng, n, dim, num_classes, spread):
  centers = rng.normal(size=(num_classes, dim)) * spread
  labels = rng.integers(0, num_classes, n)
  return (centers[labels] + rng.normal(size=(n, dim))).astype(np.float32), labels


@pytest.fixture(scope="module")
def overlapping():
  """Gaussian blobs that overlap, so the optimum is interior and the objective is not tiny."""
  x, y = _blobs(np.random.default_rng(0), 400, 12, 4, spread=0.6)
  return (x - x.mean(0)) / x.std(0), y


@pytest.mark.parametrize("mixing", ["identity", "correlated"])
def test_lbfgs_reaches_the_scipy_optimum(overlapping, mixing):
  x, y = overlapping
  if mixing == "correlated":  # feature scales spanning 3 decades, as real encoders give
    rng = np.random.default_rng(6)
    basis = np.linalg.qr(rng.normal(size=(12, 12)))[0]
    x = ((x @ basis) * np.logspace(-2, 1, 12) @ basis.T).astype(np.float32)
  c, d, l2 = 4, x.shape[1], 1e-3
  params, value, _ = fit_logistic_regression(x, y, num_classes=c, l2=l2)  # default tolerance

  def fun(theta):
    value, grad_w, grad_b = _objective64(theta[: c * d].reshape(c, d), theta[c * d :], x, y, l2)
    return value, np.concatenate([grad_w.ravel(), grad_b])

  ref = scipy.optimize.minimize(
    fun, np.zeros(c * d + c), jac=True, method="L-BFGS-B", options=dict(gtol=1e-12, ftol=1e-15, maxiter=10_000)
  )
  ours64, _, _ = _objective64(params["w"].astype(np.float64), params["b"], x, y, l2)
  assert ref.success
  assert abs(ours64 - ref.fun) < 1e-4
  assert ours64 > ref.fun - 1e-7  # scipy's float64 optimum is a lower bound
  # The returned value is the objective at the returned (de-preconditioned) params.
  assert value == pytest.approx(ours64, abs=1e-5)


def test_objective_matches_float64_reference(overlapping):
  x, y = overlapping
  rng = np.random.default_rng(1)
  w, b = rng.normal(size=(4, 12)).astype(np.float32), rng.normal(size=4).astype(np.float32)
  got = logistic_regression_objective({"w": w, "b": b}, x, y, 0.01)
  assert float(got) == pytest.approx(_objective64(w, b, x, y, 0.01)[0], rel=1e-5)


# The probe tests share one (1000, 32) x 10-class shape, so L-BFGS compiles once for all of them.
def _split(x, y):
  return x[:1000], y[:1000], x[1000:], y[1000:]


def test_separable_blobs_probe_above_95_percent():
  x, y = _blobs(np.random.default_rng(2), 1200, 32, 10, spread=2.0)
  # Every l2 separates the validation set perfectly; the tie goes to the strongest, an end of
  # the grid, which the probe flags in its result, not with a warning on every run.
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    result = linear_probe(*_split(x, y), num_classes=10, l2_grid=(1e-3, 1e-2, 1e-1))
  assert result["top1"] > 0.95
  assert result["l2"] == 1e-1 and result["l2_at_grid_end"]


def test_random_labels_score_near_chance():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(3000, 32)).astype(np.float32)
  y = rng.integers(0, 10, 3000)
  result = linear_probe(*_split(x, y), num_classes=10, l2_grid=(1e-3, 1e-2, 1e-1, 1.0))
  assert abs(result["top1"] - 0.1) < 0.03  # 2000 test rows: chance +- 4.5 standard errors


def test_probe_is_deterministic():
  x, y = _blobs(np.random.default_rng(4), 1200, 32, 10, spread=0.4)
  run = lambda seed: linear_probe(*_split(x, y), num_classes=10, l2_grid=(1e-3, 1e-2, 1e-1), seed=seed)
  first = run(0)
  assert first == run(0)
  assert set(first) >= {"top1", "l2", "val_top1"}
  assert first["val_top1"] == first["val_top1_by_l2"][first["l2"]]
  assert 0.3 < first["top1"] < 0.99  # overlapping classes: the probe has something to choose


def test_probe_keeps_a_training_example_per_class():
  # Two examples per class, as a 1-label-per-class split plus one: validation takes one of each
  # class, never both, so no class is missing from the fit.
  rng = np.random.default_rng(5)
  y = np.repeat(np.arange(4), 2)
  x = (3 * rng.normal(size=(4, 12))[y] + rng.normal(size=(8, 12))).astype(np.float32)
  result = linear_probe(x, y, x, y, num_classes=4, l2_grid=(1e-2, 1e-1))
  assert np.isfinite(result["loss"]) and result["val_top1"] >= 0.0
  with pytest.raises(ValueError, match="single train example"):
    linear_probe(x[::2], y[::2], x, y, num_classes=4)


def test_probe_rejects_out_of_range_labels(overlapping):
  x, y = overlapping
  with pytest.raises(ValueError, match="train_labels"):
    linear_probe(x, y + 1, x, y, num_classes=4)


def test_label_fraction_indices_are_stratified_and_seeded():
  labels = np.repeat([0, 1, 2], [100, 50, 3])
  idx = label_fraction_indices(labels, 0.1, seed=0)
  np.testing.assert_array_equal(np.bincount(labels[idx]), [10, 5, 1])  # at least one per class
  assert np.all(np.diff(idx) > 0)
  np.testing.assert_array_equal(idx, label_fraction_indices(labels, 0.1, seed=0))
  assert not np.array_equal(idx, label_fraction_indices(labels, 0.1, seed=1))
  np.testing.assert_array_equal(label_fraction_indices(labels, 1.0, seed=0), np.arange(153))
  with pytest.raises(ValueError, match="fraction"):
    label_fraction_indices(labels, 0.0, seed=0)
