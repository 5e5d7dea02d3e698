"""The fine-tuning loop shared by every modality: learning, its budget in epochs, and the validation-chosen stop."""

import flax.linen as nn
import jax
import numpy as np

from ssljax.evals import finetune, linear


class _MLP(nn.Module):
  width: int = 32

  @nn.compact
  def __call__(self, x, *, train):
    h = nn.Dropout(0.1, deterministic=not train)(nn.relu(nn.Dense(self.width)(x)))
    return nn.Dense(3)(h)


_model = _MLP()
_wide = _MLP(512)


def _apply(params, state, batch, *, train, rng):
  return _model.apply({"params": params}, batch["x"], train=train, rngs={"dropout": rng} if train else {}), state


def _apply_wide(params, state, batch, *, train, rng):
  return _wide.apply({"params": params}, batch["x"], train=train, rngs={"dropout": rng} if train else {}), state


def _blobs(n, seed, *, noise: float = 0.0, spread: float = 1.0):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 3, n)
  centres = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
  x = (centres[y] + spread * rng.normal(size=(n, 2))).astype(np.float32)
  flip = rng.random(n) < noise
  return x, np.where(flip, rng.integers(0, 3, n), y).astype(np.int32)


def test_finetuning_learns_and_is_reproducible():
  x, y = _blobs(400, 0)
  tx, ty = _blobs(203, 1)  # not a multiple of the batch: the padded last batch must not count
  params = _model.init(jax.random.PRNGKey(0), x[:2], train=False)["params"]
  run = lambda seed: finetune.finetune_top1(
    params=params,
    apply=_apply,
    train_x={"x": x},
    train_y=y,
    test_x={"x": tx},
    test_y=ty,
    epochs=16,
    batch_size=32,
    learning_rate=1e-2,
    seed=seed,
  )
  untrained = np.mean(np.argmax(np.asarray(_apply(params, {}, {"x": tx}, train=False, rng=None)[0]), -1) == ty)
  trained = run(0)
  assert trained["steps"] == 180  # 16 epochs of the 360 rows left after holding out a tenth, 32 a batch
  assert trained["top1"] > 0.95 > untrained + 0.2
  assert trained["validation_top1"] > 0.9
  assert run(0) == trained  # same seed, same result (and the compiled step is reused)
  assert run(1)["final_train_loss"] != trained["final_train_loss"]


def test_the_stopping_point_is_the_best_on_validation():
  # Noisy labels and a wide network over many epochs: it memorizes the noise, and validation peaks before the end.
  x, y = _blobs(120, 0, noise=0.4, spread=1.6)
  tx, ty = _blobs(2000, 1, spread=1.6)
  params = _wide.init(jax.random.PRNGKey(0), x[:2], train=False)["params"]
  run = lambda validation_fraction=0.25, **kw: finetune.finetune_top1(
    params=params,
    apply=_apply_wide,
    train_x={"x": x},
    train_y=y,
    test_x={"x": tx},
    test_y=ty,
    epochs=150,
    batch_size=16,
    learning_rate=3e-2,
    validation_fraction=validation_fraction,
    seed=0,
    **kw,
  )
  last = run(evaluations=1)
  chosen = run(evaluations=20)
  assert last["best_step"] == last["steps"] == chosen["steps"]
  assert chosen["best_step"] < chosen["steps"]  # an earlier model won on validation ...
  assert chosen["validation_top1"] > last["validation_top1"]  # ... because it was better there ...
  assert chosen["top1"] > last["top1"]  # ... and it is better on the test set too
  no_validation = run(validation_fraction=0.0, evaluations=20)
  assert no_validation["best_step"] == no_validation["steps"] and np.isnan(no_validation["validation_top1"])


def test_budget_is_in_epochs_within_the_step_bounds():
  assert finetune.budget(1000, epochs=3, batch_size=100) == 30
  assert finetune.budget(1000, epochs=0.01, batch_size=100) == 1
  assert finetune.budget(1000, epochs=3, batch_size=100, min_steps=50) == 50
  assert finetune.budget(1000, epochs=3, batch_size=100, max_steps=20) == 20


def test_validation_rows_are_a_stratified_part_of_the_labelled_rows():
  labels = np.repeat(np.arange(5), [50, 20, 10, 2, 1])
  fit, held = finetune.split_validation(labels, 0.1, seed=3)
  assert not set(fit) & set(held) and len(fit) + len(held) == len(labels)
  assert [int(np.sum(labels[held] == c)) for c in range(5)] == [5, 2, 1, 1, 0]  # every class keeps a training row
  assert np.array_equal(finetune.split_validation(labels, 0.1, seed=3)[1], held)
  assert len(finetune.split_validation(labels, 0.0, seed=3)[1]) == 0


def test_fraction_names():
  assert [linear.fraction_name("finetune", f) for f in (1.0, 0.1, 0.01)] == [
    "finetune",
    "finetune_10pct",
    "finetune_1pct",
  ]
  assert linear.fraction_name("linear", 0.5) == "linear_50pct"
