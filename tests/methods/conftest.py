"""Shared by the image-method tests: train a method's real step on real Fashion-MNIST images."""

import os

import jax
import numpy as np
import pytest

from ssljax import config as config_lib
from ssljax import methods, optim, train
from ssljax.data import images

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_config(spec: str):
  """`configs/x.py:preset` (relative to the repository), unlocked so a test may change it."""
  config = config_lib.load_config_file(os.path.join(ROOT, spec))
  config.unlock()
  return config


def _train(config_spec: str, steps: int, *, examples: int = 1024, data=None, **overrides):
  """Runs `steps` steps of the method's jitted train step (its loss, AdamW, the engine's step function) on the
  first `examples` Fashion-MNIST training images, or on `data(config)` (the method's own training data); returns
  the per-step metrics as floats and the final params."""
  config = load_config(config_spec)
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  method = methods.get_method(config.method)
  split = data(config) if data is not None else images.load_split(config.data, "train", examples)
  stream = split.stream(batch_size=config.batch_size, seed=0, start_step=0)
  params, method_state = method.init(config, jax.random.PRNGKey(0), split.example_batch(config.batch_size), data=split)
  tx, schedule = optim.make_optimizer(
    config.optim,
    batch_size=config.batch_size,
    total_steps=steps,
    steps_per_epoch=split.steps_per_epoch(config.batch_size),
  )
  state = train.TrainState(
    step=np.zeros((), np.int32),
    params=params,
    opt_state=tx.init(params),
    method_state=method_state,
    rng=jax.random.PRNGKey(1),
  )
  step = jax.jit(train.make_train_step(method, config, tx, schedule))
  history = []
  for _ in range(steps):
    state, metrics = step(state, next(stream))
    history.append({k: float(v) for k, v in jax.device_get(metrics).items()})
  return history, state.params


@pytest.fixture
def train_steps():
  return _train


@pytest.fixture
def config_of():
  return load_config
