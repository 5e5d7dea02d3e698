"""MoCo v2 (He et al. 2020, arXiv:1911.05722; Chen et al. 2020, arXiv:2003.04297): a query encoder trained by
gradient, a key encoder that follows it by momentum, and InfoNCE of each query against its key and a FIFO queue of
the keys of earlier batches.

One step is the paper's Algorithm 1, in the order of its reference code: the key encoder first moves toward the
query encoder (theta_k <- m theta_k + (1 - m) theta_q, with theta_q as the last step left it), then encodes the key
view; the key gets no gradient; the loss is InfoNCE over [positive, queue]; the keys of the whole global batch then
replace the queue's oldest. Key encoder, queue and its pointer live in the method state, so a resumed run continues
exactly. At step 0 the key encoder equals the query encoder, as the paper initialises it.

BatchNorm: the step runs on global arrays, so each encoder's statistics are over the whole global batch, never one
device's shard. The paper's shuffle-BN exists because per-device statistics let a query and its key, sitting on the
same device, share a batch-statistics signature the model can cheat with; statistics over the global batch of
hundreds of images carry next to nothing of one pair. See the README (MoCo) for what per-device BN would cost.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ssljax import losses
from ssljax.config import ConfigError
from ssljax.methods.vision import eval_view, image_method, init_model, projection_model, two_views


def check_config(config) -> None:
  m = config.moco
  if m.queue_size < config.batch_size or m.queue_size % config.batch_size:
    raise ConfigError(
      f"moco.queue_size={m.queue_size} must be a positive multiple of batch_size={config.batch_size} "
      "(every step enqueues the keys of the whole global batch)"
    )
  if not 0.0 <= m.momentum < 1.0:
    raise ConfigError(f"moco.momentum={m.momentum} must be in [0, 1)")
  if m.momentum_schedule not in ("constant", "cosine"):
    raise ConfigError(f"moco.momentum_schedule='{m.momentum_schedule}' is not one of constant, cosine")
  if not m.temperature > 0:
    raise ConfigError(f"moco.temperature={m.temperature} must be > 0")


def key_momentum(config, step, total_steps) -> jax.Array:
  """m at `step`: `moco.momentum`, or with the cosine schedule (BYOL's) from it toward 1 at `total_steps`."""
  m = jnp.float32(config.moco.momentum)
  if config.moco.momentum_schedule == "constant":
    return m
  progress = jnp.minimum(step.astype(jnp.float32) / jnp.maximum(total_steps, 1).astype(jnp.float32), 1.0)
  return 1.0 - (1.0 - m) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0


def momentum_update(key_params, query_params, momentum):
  """theta_k <- m theta_k + (1 - m) theta_q, leaf by leaf; no gradient reaches the query parameters through it."""
  return jax.tree.map(lambda k, q: momentum * k + (1.0 - momentum) * jax.lax.stop_gradient(q), key_params, query_params)


def enqueue(queue: jax.Array, pointer: jax.Array, keys: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The keys replace the queue's oldest rows (rows [pointer, pointer + N)); returns (queue, next pointer). The
  queue size is a multiple of N (`check_config`), so a batch never wraps."""
  queue = jax.lax.dynamic_update_slice(queue, keys.astype(queue.dtype), (pointer, jnp.int32(0)))
  return queue, (pointer + keys.shape[0]) % queue.shape[0]


def init(config, rng, example_batch, *, data):
  model_rng, queue_rng = jax.random.split(rng)
  params, state = init_model(projection_model(config), model_rng, eval_view(example_batch["image"], config))
  # The paper starts the queue with random unit vectors: negatives that carry nothing until real keys arrive.
  queue = losses.l2_normalize(jax.random.normal(queue_rng, (config.moco.queue_size, config.model.proj_out_dim)))
  steps = config.total_steps if config.total_steps > 0 else config.epochs * data.steps_per_epoch(config.batch_size)
  return params, {
    **state,
    "key": {"params": jax.tree.map(jnp.copy, params), **jax.tree.map(jnp.copy, state)},  # replaced at step 0
    "queue": queue,
    "queue_pointer": jnp.zeros((), jnp.int32),
    "total_steps": jnp.asarray(steps, jnp.int32),  # the end of the momentum's cosine schedule
  }


def moco_step(params, state, views, apply, *, step, momentum, temperature):
  """Algorithm 1 for one batch, with `apply(variables, x) -> (embeddings, new batch statistics)` the network:
  (loss, (metrics, new state)). Shared by `loss_fn` and the test that holds it against NumPy."""
  query_view, key_view = views
  # theta_k = theta_q at step 0, as the paper initialises it: also when the query encoder came from `init_from`.
  key_params = jax.tree.map(lambda k, q: jnp.where(step == 0, q, k), state["key"]["params"], params)
  key_params = momentum_update(key_params, params, momentum)
  q, query_stats = apply({"params": params, **_stats(state)}, query_view)
  k, key_stats = apply({"params": key_params, **_stats(state["key"])}, key_view)
  # Unit vectors once: the keys are enqueued as they are scored, and the queue holds unit rows already.
  q = losses.l2_normalize(q.astype(jnp.float32))
  k = jax.lax.stop_gradient(losses.l2_normalize(k.astype(jnp.float32)))
  logits, labels = losses.info_nce_logits(q, k, temperature=temperature, negatives=state["queue"], normalize=False)
  loss = optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  queue, pointer = enqueue(state["queue"], state["queue_pointer"], k)
  new_state = {
    **state,
    **query_stats,
    "key": {"params": key_params, **key_stats},
    "queue": queue,
    "queue_pointer": pointer,
  }
  metrics = {"accuracy": jnp.mean(jnp.argmax(logits, axis=1) == labels, dtype=jnp.float32), "momentum": momentum}
  return loss, (metrics, new_state)


def _stats(variables) -> dict:
  return {"batch_stats": variables["batch_stats"]} if "batch_stats" in variables else {}


def loss_fn(params, state, batch, rng, config, step):
  model = projection_model(config)

  def apply(variables, x):
    (z, _), updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    return z.astype(jnp.float32), {"batch_stats": updates["batch_stats"]}

  return moco_step(
    params,
    state,
    two_views(batch["image"], rng, config),
    apply,
    step=step,
    momentum=key_momentum(config, step, state["total_steps"]),
    temperature=config.moco.temperature,
  )


METHOD = image_method("moco", init=init, loss_fn=loss_fn, check_config=check_config)
