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


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """Loads `path/to/file.py[:arg]` and calls its `get_config(arg)`.

  The file's directory is importable while it loads, as a script's is, so configs can share a module of
  defaults (configs/vision_base.py).
  """
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ConfigError(f"config file not found: {path}")
  module_spec = importlib.util.spec_from_file_location(f"_ssljax_config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(module_spec)
  sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
  try:
    module_spec.loader.exec_module(module)
  finally:
    sys.path.pop(0)
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
