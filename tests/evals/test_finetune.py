"""The fine-tuning loop shared by every modality."""

import flax.linen as nn
import jax
import numpy as np

from ssljax.evals import finetune


class _MLP(nn.Module):
  @nn.compact
  def __call__(self, x, *, train):
    h = nn.Dropout(0.1, deterministic=not train)(nn.relu(nn.Dense(32)(x)))
    return nn.Dense(3)(h)


_model = _MLP()


def _apply(params, state, batch, *, train, rng):
  return _model.apply({"params": params}, batch["x"], train=train, rngs={"dropout": rng} if train else {}), state


def _blobs(n, seed):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 3, n)
  centres = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
  return (centres[y] + rng.normal(size=(n, 2))).astype(np.float32), y.astype(np.int32)


def test_finetuning_learns_and_is_reproducible():
  x, y = _blobs(400, 0)
  tx, ty = _blobs(203, 1)  # not a multiple of the batch: the padded last batch must not count
  params = _model.init(jax.random.PRNGKey(0), x[:2], train=False)["params"]
  run = lambda steps, seed: finetune.finetune_top1(
    params=params,
    apply=_apply,
    train_x={"x": x},
    train_y=y,
    test_x={"x": tx},
    test_y=ty,
    steps=steps,
    batch_size=32,
    learning_rate=1e-2,
    seed=seed,
  )
  untrained = np.mean(np.argmax(np.asarray(_apply(params, {}, {"x": tx}, train=False, rng=None)[0]), -1) == ty)
  trained = run(200, 0)
  assert trained["top1"] > 0.95 > untrained + 0.2
  assert run(200, 0) == trained  # same seed, same result (and the compiled step is reused)
  assert run(200, 1)["final_train_loss"] != trained["final_train_loss"]


def test_fraction_names():
  assert [finetune.fraction_name(f) for f in (1.0, 0.1, 0.01)] == ["finetune", "finetune_10pct", "finetune_1pct"]
