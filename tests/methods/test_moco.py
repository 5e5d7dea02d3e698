"""MoCo v2: one step against the paper's Algorithm 1 in NumPy, learning on real images, the queue and momentum
schedule, refusals, and a full run through the eval suite (exact resume includes the queue and key encoder)."""

import os

import jax
import jax.numpy as jnp
import launcher
import numpy as np
import pytest

from ssljax.config import ConfigError
from ssljax.methods import moco


def _normalize(x):
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def _algorithm_1(w0, queue, batches, *, lr, m, t):
  """The paper's Algorithm 1 in float64 NumPy for a linear encoder f(x) = normalize(x W) and SGD: per step, the
  key encoder the keys were computed with, logits, loss, and the query encoder, queue and pointer after it."""
  w_q, w_k, queue, pointer, out = w0.copy(), w0.copy(), queue.copy(), 0, []  # f_k.params = f_q.params
  for x_q, x_k in batches:
    u = x_q @ w_q
    q = _normalize(u)
    k = _normalize(x_k @ w_k)  # no gradient: k.detach()
    l_pos = np.sum(q * k, axis=1, keepdims=True)
    l_neg = q @ queue.T
    logits = np.concatenate([l_pos, l_neg], axis=1) / t
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    loss = -np.mean(np.log(p[:, 0]))
    # Backward through the cross-entropy (label 0), the similarities and the normalisation of q = u / |u|.
    d_logits = p.copy()
    d_logits[:, 0] -= 1.0
    d_logits /= len(q) * t
    d_q = d_logits[:, :1] * k + d_logits[:, 1:] @ queue
    norm = np.linalg.norm(u, axis=1, keepdims=True)
    d_u = (d_q - q * np.sum(q * d_q, axis=1, keepdims=True)) / norm
    keys_from = w_k.copy()
    w_q = w_q - lr * (x_q.T @ d_u)  # update(f_q.params)
    w_k = m * w_k + (1 - m) * w_q  # f_k.params = m * f_k.params + (1 - m) * f_q.params
    queue[pointer : pointer + len(k)] = k  # enqueue(queue, k); dequeue(queue)
    pointer = (pointer + len(k)) % len(queue)
    out.append({"w_k": keys_from, "logits": logits, "loss": loss, "w_q": w_q, "queue": queue.copy(), "ptr": pointer})
  return out


def test_two_steps_are_the_papers_algorithm_1_in_numpy():
  rng = np.random.default_rng(0)
  n, d_in, d, size, lr, m, t = 4, 6, 5, 8, 0.5, 0.9, 0.2
  w0 = rng.standard_normal((d_in, d))
  queue0 = _normalize(rng.standard_normal((size, d)))
  batches = [(rng.standard_normal((n, d_in)), rng.standard_normal((n, d_in))) for _ in range(3)]
  want = _algorithm_1(w0, queue0, batches, lr=lr, m=m, t=t)

  apply = lambda variables, x: (x @ variables["params"]["w"], {})
  params = {"w": jnp.asarray(w0, jnp.float32)}
  # The key encoder's stored parameters are junk: at step 0 it must start from the query encoder, as the paper's.
  state = {"key": {"params": {"w": jnp.zeros((d_in, d))}}, "queue": jnp.asarray(queue0, jnp.float32)}
  state["queue_pointer"] = jnp.int32(0)

  @jax.jit
  def step(params, state, views, step):
    fn = lambda p: moco.moco_step(p, state, views, apply, step=step, momentum=m, temperature=t)
    (loss, (metrics, new_state)), grads = jax.value_and_grad(fn, has_aux=True)(params)
    return jax.tree.map(lambda p, g: p - lr * g, params, grads), new_state, loss

  for i, (x_q, x_k) in enumerate(batches):
    views = (jnp.asarray(x_q, jnp.float32), jnp.asarray(x_k, jnp.float32))
    before = params, state
    params, state, loss = step(params, state, views, jnp.int32(i))
    w = want[i]
    # The key encoder this step used (kept in the state), then the logits and labels it classified.
    np.testing.assert_allclose(state["key"]["params"]["w"], w["w_k"], rtol=1e-5, atol=1e-6)
    logits, labels = moco.losses.info_nce_logits(
      views[0] @ before[0]["w"], views[1] @ state["key"]["params"]["w"], temperature=t, negatives=before[1]["queue"]
    )
    np.testing.assert_allclose(logits, w["logits"], rtol=1e-5, atol=1e-5)
    assert labels.tolist() == [0] * n
    np.testing.assert_allclose(loss, w["loss"], rtol=1e-5)
    np.testing.assert_allclose(params["w"], w["w_q"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state["queue"], w["queue"], rtol=1e-5, atol=1e-6)
    assert int(state["queue_pointer"]) == w["ptr"]
  # Three batches of 4 went through a queue of 8: the first batch's keys were dequeued by the third's.
  assert int(state["queue_pointer"]) == 4


def test_the_cosine_schedule_goes_from_m_to_one():
  config = launcher_config("tiny")
  config.moco.momentum_schedule = "cosine"
  got = [float(moco.key_momentum(config, jnp.int32(s), jnp.int32(100))) for s in (0, 50, 100, 150)]
  np.testing.assert_allclose(got, [config.moco.momentum, (1 + config.moco.momentum) / 2, 1.0, 1.0], rtol=1e-6)
  config.moco.momentum_schedule = "constant"
  assert float(moco.key_momentum(config, jnp.int32(70), jnp.int32(100))) == pytest.approx(config.moco.momentum)


def launcher_config(preset):
  from ssljax import config as config_lib

  config = config_lib.load_config_file(os.path.join(launcher.ROOT, f"configs/moco.py:{preset}"))
  config.unlock()
  return config


def test_the_step_learns_once_the_queue_holds_real_keys(train_steps):
  history, _ = train_steps("configs/moco.py:tiny", 60, **{"optim.learning_rate": 3e-3})
  # Step 0 contrasts with the random unit vectors the queue starts with (loss 0.8); two batches of real keys fill
  # the queue of 64, and the loss jumps to about ln(1 + 64) = 4.17 for a query that cannot tell its key apart.
  assert history[0]["loss"] < 2.0 < min(h["loss"] for h in history[2:8])
  filled = np.mean([h["loss"] for h in history[3:10]])
  last = np.mean([h["loss"] for h in history[-10:]])
  # Measured: 3.95 -> 3.6; chance accuracy is 1 of 65 (0.015, +-0.007 over 10 steps of 32 queries), measured 0.07.
  assert last < filled - 0.2, (filled, last)
  assert np.mean([h["accuracy"] for h in history[-10:]]) > 0.04


@pytest.mark.parametrize(
  "override, message",
  [
    (
      "moco.queue_size=48",
      "moco.queue_size=48 must be a positive multiple of batch_size=32 (every step enqueues the keys of the whole "
      "global batch)",
    ),
    ("moco.momentum=1.0", "moco.momentum=1.0 must be in [0, 1)"),
    ("moco.momentum_schedule=linear", "moco.momentum_schedule='linear' is not one of constant, cosine"),
  ],
)
def test_refuses_a_bad_moco_config_in_one_line(tmp_path, override, message):
  rc, out, err = launcher.run_main("configs/moco.py:tiny", tmp_path / "w", override)
  assert rc == 2 and err.strip().splitlines() == [f"error: {message}"], err
  assert not (tmp_path / "w").exists()


def test_check_config_names_the_key():
  config = launcher_config("tiny")
  config.moco.temperature = 0.0
  with pytest.raises(ConfigError, match="moco.temperature=0.0"):
    moco.check_config(config)


TINY = "configs/moco.py:tiny"

tiny_run, test_evals_are_the_same_on_one_device, test_resumes_exactly_after_sigkill = launcher.end_to_end(
  TINY, kill_at=2
)


def test_tiny_run_reports_the_suite_beside_raw_pixels_and_random_init(tiny_run):
  results = launcher.read_json(os.path.join(tiny_run[0], "eval.json"))
  launcher.assert_suite_read_both_encoders(results, ("knn/top1", "linear/top1", "linear_10pct/top1"))
  assert results["baseline/raw_pixels/linear/top1"] > 0.3
  # evals.finetune is off in MoCo's presets (its figures are probes, as the paper's); SimCLR's tests run that path.
  assert not any("finetune" in name for name in results), sorted(results)
