"""Fine-tuning: a pre-trained encoder with a new classification head, trained end to end on labelled data.

The protocol of BERT's GLUE runs (and of MAE's): AdamW, linear warm-up then linear decay to zero, dropout
on, the whole network updated. The same loop serves every modality: a method gives the classifier's
`apply(params, state, batch, *, train, rng) -> (logits, new_state)` and its initial params (pre-trained encoder +
fresh head, or all fresh for the from-scratch baseline); `state` holds what is not trained by gradient
(BatchNorm statistics; {} for a Transformer). Augmentation, if any, belongs in `apply` under `train`.
`prepare(batch)` may reshape a host batch first, e.g. to cut padding to a length bucket, so that short inputs do
not pay for the longest one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from ssljax import sharding


def fraction_name(fraction: float) -> str:
  """eval.json's name for a label fraction: finetune, finetune_10pct, finetune_1pct."""
  return "finetune" if fraction == 1.0 else f"finetune_{fraction * 100:g}pct"


@functools.lru_cache(maxsize=8)
def _functions(apply: Callable, weight_decay: float):
  """The jitted train step and prediction of one classifier, compiled once per input shape and reused by every
  run (label fraction, baseline) that fine-tunes it: the learning rate is an argument, not a constant."""
  decay_mask = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
  tx = optax.adamw(1.0, weight_decay=weight_decay, mask=decay_mask)  # updates are scaled by the rate below

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


def finetune_top1(
  *,
  params,
  apply: Callable,
  train_x: dict,
  train_y: np.ndarray,
  test_x: dict,
  test_y: np.ndarray,
  steps: int,
  batch_size: int,
  learning_rate: float,
  state: dict | None = None,
  weight_decay: float = 0.01,
  warmup_fraction: float = 0.1,
  seed: int = 0,
  mesh=None,
  prepare: Callable[[dict], dict] = lambda b: b,
) -> dict:
  """Trains `params` for `steps` steps on (train_x, train_y) and returns test top-1 and the final train loss.

  Batches are drawn epoch by epoch from a permutation seeded by `seed`; a training set smaller than a batch
  is repeated to fill it. Test rows are all scored (the last batch is padded and its padding ignored).
  Pass the same `apply` function object to every call that fine-tunes one architecture: its compiled step
  is reused.
  """
  mesh = mesh or sharding.make_mesh()
  batch_size = max(batch_size - batch_size % mesh.size, mesh.size)
  repl = sharding.replicated(mesh)
  rows = lambda x: sharding.host_to_global(x, mesh)  # every process draws the same batch and holds it whole
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
  rng, order, n = np.random.default_rng(seed), np.zeros(0, np.int64), len(train_y)
  loss = float("nan")
  for i in range(steps):
    while len(order) < batch_size:
      order = np.concatenate([order, rng.permutation(n)])
    idx, order = order[:batch_size], order[batch_size:]
    batch = rows(prepare({k: v[idx] for k, v in train_x.items()}))
    # One step in flight: queued multi-device CPU steps hold host threads that wait for each other (train.py).
    jax.block_until_ready(loss)
    params, state, opt_state, loss = step(
      params, state, opt_state, batch, rows(train_y[idx]), np.int32(seed), np.int32(i), rates[i]
    )
  correct = 0
  for start in range(0, len(test_y), batch_size):
    idx = np.arange(start, start + batch_size)
    valid = idx < len(test_y)
    idx = np.where(valid, idx, 0)
    batch = rows(prepare({k: v[idx] for k, v in test_x.items()}))
    pred = sharding.to_host(predict(params, state, batch))
    correct += int(np.sum((pred == test_y[idx]) & valid))
  return {"top1": correct / len(test_y), "final_train_loss": float(sharding.to_host(loss))}
