"""Methods: each module ties views, a model and a loss together behind one small interface.

    init(config, rng, example_batch) -> (params, state)      # state: non-trained (batch stats, queues, EMA)
    loss_fn(params, state, batch, rng, config) -> (loss, (metrics, new_state))   # pure, jittable
    embed(params, state, batch, config) -> features           # what the evals consume

`train.py` knows nothing about any one method; it looks the module up here by `config.method`.
"""

from __future__ import annotations

import importlib

from ssljax.config import ConfigError

METHODS = {
    "simclr": "ssljax.methods.simclr",
}


def get_method(name: str):
  if name not in METHODS:
    raise ConfigError(f"unknown method '{name}' (known: {', '.join(sorted(METHODS))})")
  return importlib.import_module(METHODS[name])
