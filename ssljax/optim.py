"""Optimizers and learning-rate schedules from the config's `optim` group."""

from __future__ import annotations

import math

import jax
import optax

from ssljax.config import ConfigError

NAMES = ("lars", "sgd", "adamw")
SCHEDULES = ("cosine", "constant", "linear")
LR_SCALINGS = ("linear", "sqrt", "none")


def check_config(optim_config) -> None:
  """The choices of the `optim` group, before anything is read (the numbers: `config.check_common`)."""
  for key, value, known in (
    ("name", optim_config.name, NAMES),
    ("schedule", optim_config.schedule, SCHEDULES),
    ("lr_scaling", optim_config.lr_scaling, LR_SCALINGS),
  ):
    if value not in known:
      raise ConfigError(f"optim.{key}='{value}' is not one of {', '.join(known)}")


def decay_mask(params):
  """Weight decay (and LARS trust ratios) only on kernels: not on BatchNorm scales/offsets or biases."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def peak_learning_rate(optim_config, batch_size: int) -> float:
  scaling = optim_config.lr_scaling
  if scaling == "linear":
    return optim_config.learning_rate * batch_size / 256
  if scaling == "sqrt":
    return optim_config.learning_rate * math.sqrt(batch_size)
  if scaling == "none":
    return optim_config.learning_rate
  raise ConfigError(f"optim.lr_scaling='{scaling}' is not one of linear, sqrt, none")


def make_schedule(optim_config, *, batch_size: int, total_steps: int, steps_per_epoch: int) -> optax.Schedule:
  peak = peak_learning_rate(optim_config, batch_size)
  warmup = min(int(round(optim_config.warmup_epochs * steps_per_epoch)), total_steps)
  if optim_config.schedule == "cosine":
    decay = optax.cosine_decay_schedule(peak, max(total_steps - warmup, 1))
  elif optim_config.schedule == "constant":
    decay = optax.constant_schedule(peak)
  elif optim_config.schedule == "linear":  # word2vec's: straight down to final_learning_rate at the last step
    decay = optax.linear_schedule(peak, optim_config.final_learning_rate, max(total_steps - warmup, 1))
  else:
    raise ConfigError(f"optim.schedule='{optim_config.schedule}' is not one of cosine, constant, linear")
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def make_optimizer(optim_config, *, batch_size: int, total_steps: int, steps_per_epoch: int):
  """Returns (optax transformation, schedule)."""
  schedule = make_schedule(
    optim_config, batch_size=batch_size, total_steps=total_steps, steps_per_epoch=steps_per_epoch
  )
  name, wd = optim_config.name, optim_config.weight_decay
  if name == "lars":
    tx = optax.lars(
      schedule,
      weight_decay=wd,
      weight_decay_mask=decay_mask,
      trust_ratio_mask=decay_mask,
      trust_coefficient=optim_config.trust_coefficient,
      momentum=optim_config.momentum,
    )
  elif name == "sgd":
    tx = optax.chain(
      optax.add_decayed_weights(wd, mask=decay_mask), optax.sgd(schedule, momentum=optim_config.momentum or None)
    )
  elif name == "adamw":
    tx = optax.adamw(schedule, b1=optim_config.momentum, b2=optim_config.b2, weight_decay=wd, mask=decay_mask)
  else:
    raise ConfigError(f"optim.name='{name}' is not one of lars, sgd, adamw")
  if optim_config.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(optim_config.grad_clip_norm), tx)
  return tx, schedule
