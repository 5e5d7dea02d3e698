"""Fine-tuning: a pre-trained encoder with a new classification head, trained end to end on labelled data.

The protocol of BERT's GLUE runs (and of MAE's): AdamW, linear warm-up then linear decay to zero, dropout
on, the whole network updated. The budget is in epochs of the labelled examples, and the stopping point is chosen
on a held-out part of them (`validation_fraction`, never the test set): the model is scored on validation at
`evaluations` evenly spaced steps and the best one is tested. A short budget that overfits, or a long one that
peaks early, then still reports the best model the labels could pick, as a practitioner's early stopping would.

The same loop serves every modality: a method gives the classifier's
`apply(params, state, batch, *, train, rng) -> (logits, new_state)` and its initial params (pre-trained encoder +
fresh head, or all fresh for the from-scratch baseline); `state` holds what is not trained by gradient
(BatchNorm statistics; {} for a Transformer). Augmentation, if any, belongs in `apply` under `train`.
`prepare(batch)` may reshape a host batch first, e.g. to cut padding to a length bucket, so that short inputs do
not pay for the longest one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from ssljax import optim, sharding
from ssljax.evals import linear


@functools.lru_cache(maxsize=8)
def _functions(apply: Callable, weight_decay: float):
  """The jitted train step and prediction of one classifier, compiled once per input shape and reused by every
  run (label fraction, baseline) that fine-tunes it: the learning rate is an argument, not a constant."""
  tx = optax.adamw(1.0, weight_decay=weight_decay, mask=optim.decay_mask)  # updates are scaled by the rate below

  def loss_fn(p, state, batch, labels, rng):
    logits, state = apply(p, state, batch, train=True, rng=rng)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()
    return loss, state

  @jax.jit
  def step(p, state, opt_state, batch, labels, seed, i, learning_rate):
    # The key is made inside: a key array made outside lives on one local device, which other processes lack.
    rng = jax.random.fold_in(jax.random.PRNGKey(seed), i)
    (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, state, batch, labels, rng)
    updates, opt_state = tx.update(grads, opt_state, p)
    updates = jax.tree.map(lambda u: learning_rate * u, updates)
    return optax.apply_updates(p, updates), state, opt_state, loss

  @jax.jit
  def predict(p, state, batch):
    return jnp.argmax(apply(p, state, batch, train=False, rng=None)[0], -1)

  return tx, step, predict


def budget(num_examples: int, *, epochs: float, batch_size: int, min_steps: int = 1, max_steps: int = 0) -> int:
  """Steps for `epochs` passes over `num_examples` at `batch_size`, at least `min_steps` and (when > 0) at most
  `max_steps`."""
  steps = max(int(min_steps), math.ceil(epochs * num_examples / batch_size), 1)
  return min(steps, int(max_steps)) if max_steps > 0 else steps


def budget_of(evals_config) -> dict:
  """`finetune_top1`'s budget and stopping keywords from a config's `evals.finetune_*` keys."""
  e = evals_config
  return dict(
    epochs=e.finetune_epochs,
    batch_size=e.finetune_batch_size,
    learning_rate=e.finetune_learning_rate,
    min_steps=e.finetune_min_steps,
    max_steps=e.finetune_max_steps,
    validation_fraction=e.finetune_validation_fraction,
    evaluations=e.finetune_evaluations,
  )


def split_validation(labels: np.ndarray, fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(train rows, validation rows) of the labelled rows: a seeded, class-stratified `fraction` of each class (at
  least one, and one left to train on) held out to choose the stopping point; none when `fraction` is 0 or no
  class has two examples."""
  held = np.zeros(len(labels), bool)
  if fraction > 0:
    held[linear.stratified_subset(np.asarray(labels), fraction, np.random.default_rng(seed), leave_one=True)] = True
  return np.flatnonzero(~held), np.flatnonzero(held)


def _top1(predict, params, state, x: dict, y: np.ndarray, batch_size: int, rows, prepare) -> float:
  """Top-1 over every row of (x, y): the last batch is padded and its padding ignored."""
  correct = 0
  for start in range(0, len(y), batch_size):
    idx = np.arange(start, start + batch_size)
    valid = idx < len(y)
    idx = np.where(valid, idx, 0)
    pred = sharding.to_host(predict(params, state, rows(prepare({k: v[idx] for k, v in x.items()}))))
    correct += int(np.sum((pred == y[idx]) & valid))
  return correct / len(y)


def finetune_top1(
  *,
  params,
  apply: Callable,
  train_x: dict,
  train_y: np.ndarray,
  test_x: dict,
  test_y: np.ndarray,
  epochs: float,
  batch_size: int,
  learning_rate: float,
  min_steps: int = 1,
  max_steps: int = 0,
  validation_fraction: float = 0.1,
  evaluations: int = 10,
  state: dict | None = None,
  weight_decay: float = 0.01,
  warmup_fraction: float = 0.1,
  seed: int = 0,
  mesh=None,
  prepare: Callable[[dict], dict] = lambda b: b,
) -> dict:
  """Fine-tunes `params` on the labelled (train_x, train_y) and returns the test top-1 of the model chosen on
  validation.

  `validation_fraction` of the labelled rows are held out (`split_validation`); the rest train for `budget(...)`
  steps. At `evaluations` evenly spaced steps (the last among them) the model is scored on the held-out rows and
  the best (the earliest of equals) is kept; with `validation_fraction=0` the last step is tested. Batches are
  drawn epoch by epoch from a permutation seeded by `seed`; a training set smaller than a batch is repeated to fill
  it. Pass the same `apply` function object to every call that fine-tunes one architecture: its compiled step is
  reused.

  Returns 'top1' (test), 'validation_top1' (of the chosen model; nan without validation), 'best_step', 'steps'
  and 'final_train_loss'.
  """
  mesh = mesh or sharding.make_mesh()
  batch_size = max(batch_size - batch_size % mesh.size, mesh.size)
  repl = sharding.replicated(mesh)
  rows = lambda x: sharding.host_to_global(x, mesh)  # every process draws the same batch and holds it whole
  fit, held = split_validation(train_y, validation_fraction, seed=seed)
  steps = budget(len(fit), epochs=epochs, batch_size=batch_size, min_steps=min_steps, max_steps=max_steps)
  checks = (
    set(np.linspace(steps, 0, max(int(evaluations), 1), endpoint=False).round().astype(int)) if len(held) else {steps}
  )
  warmup = int(warmup_fraction * steps)
  # Linear warm-up to `learning_rate`, then linearly down to zero at the last step.
  rates = learning_rate * np.minimum(
    (np.arange(steps) + 1) / max(warmup, 1), (steps - np.arange(steps)) / max(steps - warmup, 1)
  ).astype(np.float32)
  tx, step, predict = _functions(apply, float(weight_decay))

  # Replicated over the mesh (host copies first: a fresh head lives on one local device, which the other
  # processes cannot read from).
  params, state = sharding.host_to_global(sharding.to_host((params, state or {})), mesh, P())
  opt_state = jax.jit(tx.init, out_shardings=repl)(params)
  rng, order = np.random.default_rng(seed), np.zeros(0, np.int64)
  loss, best = float("nan"), None
  for i in range(steps):
    while len(order) < batch_size:
      order = np.concatenate([order, fit[rng.permutation(len(fit))]])
    idx, order = order[:batch_size], order[batch_size:]
    batch = rows(prepare({k: v[idx] for k, v in train_x.items()}))
    # One step in flight: queued multi-device CPU steps hold host threads that wait for each other (train.py).
    jax.block_until_ready(loss)
    params, state, opt_state, loss = step(
      params, state, opt_state, batch, rows(train_y[idx]), np.int32(seed), np.int32(i), rates[i]
    )
    if i + 1 in checks:
      score = float("nan")
      if len(held):
        held_x = {k: v[held] for k, v in train_x.items()}
        score = _top1(predict, params, state, held_x, train_y[held], batch_size, rows, prepare)
      if best is None or score > best[0]:
        best = (score, i + 1, params, state)  # the step does not donate its inputs: a reference keeps them
  score, best_step, params, state = best
  return {
    "top1": _top1(predict, params, state, test_x, test_y, batch_size, rows, prepare),
    "validation_top1": score,
    "best_step": best_step,
    "steps": steps,
    "final_train_loss": float(sharding.to_host(loss)),
  }
