"""Config files, presets and command-line overrides.

A config is a Python file with `get_config(arg=None) -> ml_collections.ConfigDict`; `arg` picks a preset
(`configs/simclr.py:cpu`). Overrides are `--config.a.b=value` strings, parsed with the type of the value they
replace. Configs come back locked, so a misspelt key is an error that names the key.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import ml_collections


class ConfigError(ValueError):
  """Bad config input; the message is one line meant for the user."""


# Keys that may differ between a run and its resumption without changing what it computes.
RESUMABLE_KEYS = ("checkpoint_every", "keep_checkpoints", "log_every", "evals", "data.path")


# The checkout's configs/: its shared bases (vision_base, text_base) are importable from any config file.
CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """Loads `path/to/file.py[:arg]` and calls its `get_config(arg)`.

  The file's directory is importable while it loads, as a script's is, and so is `CONFIGS_DIR`: a config
  anywhere (a method of one's own, outside the repository) can start from `vision_base.base(...)`.
  """
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ConfigError(f"config file not found: {path}")
  module_spec = importlib.util.spec_from_file_location(f"_ssljax_config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(module_spec)
  added = [os.path.dirname(os.path.abspath(path)), CONFIGS_DIR]
  sys.path[:0] = added
  try:
    module_spec.loader.exec_module(module)
  finally:
    del sys.path[: len(added)]
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file {path} defines no get_config(arg=None)")
  try:
    config = module.get_config(arg or None)
  except ValueError as e:
    raise ConfigError(f"{spec}: {e}") from None
  config.lock()
  return config


def _parse_value(key: str, text: str, current: Any) -> Any:
  if isinstance(current, bool):
    lowered = text.lower()
    if lowered not in ("true", "false", "1", "0"):
      raise ConfigError(f"--config.{key}={text}: expected true or false")
    return lowered in ("true", "1")
  if isinstance(current, str):
    return text
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    raise ConfigError(f"--config.{key}={text}: expected a {type(current).__name__}") from None
  if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if isinstance(current, tuple) and isinstance(value, list):
    value = tuple(value)
  if current is not None and not isinstance(value, type(current)):
    raise ConfigError(f"--config.{key}={text}: expected a {type(current).__name__}, got {type(value).__name__}")
  return value


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> ml_collections.ConfigDict:
  """Applies `a.b=value` strings to a locked config; an unknown key is an error naming it."""
  for item in overrides:
    key, sep, text = item.partition("=")
    if not sep:
      raise ConfigError(f"--config.{item}: expected --config.KEY=VALUE")
    node, parts = config, key.split(".")
    for depth, part in enumerate(parts):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        known = ", ".join(sorted(node.keys())) if isinstance(node, ml_collections.ConfigDict) else ""
        prefix = ".".join(parts[: depth + 1])
        raise ConfigError(f"unknown config key '{prefix}'" + (f" (known here: {known})" if known else ""))
      if depth < len(parts) - 1:
        node = node[part]
    current = node[parts[-1]]
    if isinstance(current, ml_collections.ConfigDict):
      raise ConfigError(f"--config.{key}: is a group of keys, set one of {', '.join(sorted(current.keys()))}")
    with node.unlocked():
      node[parts[-1]] = _parse_value(key, text, current)
  return config


def get_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """The config a run uses: file, preset, then overrides, locked."""
  return apply_overrides(load_config_file(spec), overrides)


def to_dict(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort(sort_keys=True))


def _drop(tree: dict, dotted: str) -> None:
  *parents, leaf = dotted.split(".")
  for p in parents:
    tree = tree.get(p, {})
  tree.pop(leaf, None)


def fingerprint(config: ml_collections.ConfigDict | dict) -> str:
  """Hash of everything that decides what a run computes (not logging or checkpoint cadence)."""
  tree = to_dict(config) if isinstance(config, ml_collections.ConfigDict) else json.loads(json.dumps(config))
  for key in RESUMABLE_KEYS:
    _drop(tree, key)
  return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:16]


def config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
  """Dotted keys whose values differ, for a message that says what changed."""
  keys = sorted(set(old) | set(new))
  out = []
  for k in keys:
    name = f"{prefix}{k}"
    a, b = old.get(k), new.get(k)
    if isinstance(a, dict) and isinstance(b, dict):
      out += config_diff(a, b, name + ".")
    elif a != b and not any(name == r or name.startswith(r + ".") for r in RESUMABLE_KEYS):
      out.append(name)
  return out


# Keys the engine and the shared evals read, and the interval each must lie in ('[' and ']' include the bound,
# '(' and ')' exclude it). Keys a config does not have are skipped. Checked before anything is read or written.
RANGES = {
  "batch_size": "[1, inf)",
  "total_steps": "[0, inf)",  # 0: epochs decide
  "epochs": "[0, inf)",
  "checkpoint_every": "[1, inf)",
  "keep_checkpoints": "[1, inf)",
  "log_every": "[1, inf)",
  "optim.learning_rate": "(0, inf)",
  "optim.final_learning_rate": "[0, inf)",
  "optim.weight_decay": "[0, inf)",
  "optim.momentum": "[0, 1)",
  "optim.b2": "(0, 1)",
  "optim.warmup_epochs": "[0, inf)",
  "optim.grad_clip_norm": "[0, inf)",  # 0: no clipping
  "evals.batch_size": "[1, inf)",
  "evals.knn_k": "[1, inf)",
  "evals.knn_temperature": "(0, inf)",
  "evals.finetune_batch_size": "[1, inf)",
  "evals.finetune_learning_rate": "(0, inf)",
  "evals.finetune_epochs": "[0, inf)",
  "evals.finetune_min_steps": "[0, inf)",
  "evals.finetune_max_steps": "[0, inf)",  # 0: no cap
  "evals.finetune_validation_fraction": "[0, 1)",  # 0: the last step is tested
  "evals.finetune_evaluations": "[1, inf)",
}


def _inside(value: float, interval: str) -> bool:
  low, high = (float(x) for x in interval[1:-1].split(","))
  above = value > low if interval[0] == "(" else value >= low
  below = value < high if interval[-1] == ")" else value <= high
  return above and below


def _lookup(config, dotted: str):
  node = config
  for part in dotted.split("."):
    if not hasattr(node, "keys") or part not in node:
      return None
    node = node[part]
  return node


def check_common(config) -> None:
  """ConfigError naming the first key outside its range (`RANGES`), and the label fractions outside (0, 1]."""
  for key, interval in RANGES.items():
    value = _lookup(config, key)
    if value is None or isinstance(value, bool):
      continue
    if not isinstance(value, (int, float)):
      raise ConfigError(f"{key}={value!r} must be a number")
    if not _inside(value, interval):
      raise ConfigError(f"{key}={value} must be in {interval}")
  if not (config.get("total_steps", 0) or config.get("epochs", 0)):
    raise ConfigError("total_steps and epochs are both 0: set one to a positive number")
  for fraction in _lookup(config, "evals.label_fractions") or ():
    if not 0.0 < fraction <= 1.0:
      raise ConfigError(f"evals.label_fractions holds {fraction}: each fraction must be in (0, 1]")
