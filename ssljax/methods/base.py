"""The Method contract: what the engine (`ssljax.train`) calls, and what it does when a hook is not given.

A method is a module that defines `METHOD = Method(...)`. Built-in methods live in `ssljax.methods`; any other
importable module works too, named by its dotted path (`config.method='mypkg.mymethod'`).

Required:
  load_train_data(config, *, workdir) -> data
      `data.steps_per_epoch(batch_size)`, `data.example_batch(batch_size)` (host arrays of one global batch),
      `data.stream(batch_size=, seed=, start_step=, process_index=, process_count=)` (this process's rows of
      each global batch, from `start_step` on). What the run must keep (a tokenizer) goes in `workdir`.
  init(config, rng, example_batch, *, data) -> (params, state)
      `state` is what is not trained by gradient: BatchNorm statistics, queues, EMA targets, tables.
  loss_fn(params, state, batch, rng, config, step) -> (loss, (metrics, new_state))
      Pure and jittable; `step` is the global step (a traced int32), for schedules inside the loss.
      Or, instead of `loss_fn`, `update` (below).
  embed(params, state, batch, config) -> features
      What the evals read out: a global feature per example.
  evaluate(context: EvalContext) -> {metric name: number}
      Written to `workdir/eval.json`.

Optional, with their defaults:
  check_config(config) -> None                       default: accepts everything
      Raises `ConfigError` naming the bad key. Called once, before any data is read or anything is written.
  update(params, state, batch, rng, learning_rate, config, step) -> (params, state, metrics)   default: None
      For an update that is not a dense gradient step (word2vec's sparse SGD); `metrics` holds `loss` and
      `grad_norm`. The engine's optimizer is then unused.
  units_per_example(config) -> int                   default: 1
      How many throughput units one batch row holds (a language model's row is `seq_len` tokens).
  example_unit: str                                  default: 'ex'
      The unit's name in progress lines ('tok', 'words').
  batch_from_inputs(config, workdir, inputs) -> batch    default: None
      Raw inputs (uint8 images of any size, strings) -> the batch `embed` reads, for `ssljax.load(...).embed`;
      `workdir` holds what the run kept (a tokenizer, a vocabulary, `inputs.json`).
  encoder(config, params, state) -> (flax module, variables)   default: None
      The trained encoder alone, for fine-tuning (`ssljax.load(...).encoder()`).
  image: ImageHooks | None                           default: None
      Given by image methods, for the vision suite's fine-tuning (`ssljax.methods.vision.image_method` fills
      it): the encoder, the eval view and the fine-tuning view. Such a method keeps its encoder's parameters at
      `params['encoder']` (BatchNorm statistics at `state['batch_stats']['encoder']`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class EvalContext:
  """Everything a method's `evaluate` may need, in one object."""

  config: Any
  workdir: str
  mesh: Any  # jax.sharding.Mesh: the evals run on the same devices as training
  method: Method
  params: Any  # the trained params, replicated on the mesh
  method_state: Any
  train_data: Any  # what `method.load_train_data` returned
  step: int  # the last training step: where pictures and eval scalars go in TensorBoard
  writer: Any  # ssljax.metrics.MetricWriter (writes only on process 0)
  initial_state: Callable[[], Any]  # the run's TrainState at step 0: the random-init baseline
  summary: dict = dataclasses.field(default_factory=dict)  # what the evals chose (a probe's l2): summary.json

  def random_init(self) -> tuple[Any, Any]:
    """(params, method_state) at step 0: the same architecture, seed and init as the trained run."""
    start = self.initial_state()
    return start.params, start.method_state


@dataclasses.dataclass(frozen=True)
class ImageHooks:
  """What the vision suite needs from an image method to fine-tune its encoder with a new head."""

  build_encoder: Callable[[Any], Any]  # config -> flax Module returning (features, aux) with aux['pre_logits']
  eval_view: Callable[[Any, Any], Any]  # (uint8 or [0, 1] images, config) -> the model's input
  finetune_view: Callable[[Any, Any, Any], Any]  # (images, rng, config) -> an augmented model input


def accept_any_config(config) -> None:
  del config


def one_unit_per_example(config) -> int:
  del config
  return 1


@dataclasses.dataclass(frozen=True)
class Method:
  """One self-supervised method, as the engine sees it; see the module docstring for each field's contract."""

  name: str
  load_train_data: Callable[..., Any]
  init: Callable[..., Any]
  embed: Callable[..., Any]
  evaluate: Callable[[EvalContext], dict]
  loss_fn: Callable[..., Any] | None = None
  update: Callable[..., Any] | None = None
  check_config: Callable[[Any], None] = accept_any_config
  units_per_example: Callable[[Any], int] = one_unit_per_example
  example_unit: str = "ex"
  batch_from_inputs: Callable[[Any, str, Any], dict] | None = None
  encoder: Callable[[Any, Any, Any], tuple[Any, dict]] | None = None
  image: ImageHooks | None = None

  def __post_init__(self):
    if (self.loss_fn is None) == (self.update is None):
      raise TypeError(f"Method {self.name!r}: give exactly one of loss_fn and update")
    for field in ("load_train_data", "init", "embed", "evaluate", "check_config", "units_per_example"):
      if not callable(getattr(self, field)):
        raise TypeError(f"Method {self.name!r}: {field} must be callable")
