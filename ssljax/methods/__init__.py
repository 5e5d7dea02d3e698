"""Methods: each module ties views, a model and a loss together behind one small interface.

    load_train_data(config, *, workdir) -> data   # steps_per_epoch(batch), example_batch(batch), stream(...);
                                                  # what the run must keep (a tokenizer) goes in workdir
    init(config, rng, example_batch, *, data) -> (params, state)   # state: batch stats, queues, EMA, tables
    loss_fn(params, state, batch, rng, config) -> (loss, (metrics, new_state))   # pure, jittable
    embed(params, state, batch, config) -> features           # what the evals consume
    evaluate(config, *, workdir, mesh, method, params, method_state, train_data, initial_state, writer,
             step) -> {metric name: number}                   # eval.json

Optional: `EXAMPLE_UNIT` names what throughput counts ('words', 'tok'), and `units_per_example(config)` how many
of them one batch row holds (a language model's row is `seq_len` tokens).

A method whose update is not a dense gradient step exports `update(...)` instead of `loss_fn` (see
`train.make_train_step`).

`train.py` knows nothing about any one method; it looks the module up here by `config.method`.
"""

from __future__ import annotations

import importlib

from ssljax.config import ConfigError

METHODS = {
  "simclr": "ssljax.methods.simclr",
  "word2vec": "ssljax.methods.word2vec",
  "nnlm": "ssljax.methods.nnlm",
  "bert": "ssljax.methods.bert",
  "rotation": "ssljax.methods.rotation",
  "inpainting": "ssljax.methods.inpainting",
  "jigsaw": "ssljax.methods.jigsaw",
  "relative_position": "ssljax.methods.relative_position",
  "colorization": "ssljax.methods.colorization",
  "mae": "ssljax.methods.mae",
}


def get_method(name: str):
  if name not in METHODS:
    raise ConfigError(f"unknown method '{name}' (known: {', '.join(sorted(METHODS))})")
  return importlib.import_module(METHODS[name])
