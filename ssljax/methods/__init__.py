"""Methods: each module ties views, a model and a loss together behind the contract of `ssljax.methods.base`.

`config.method` is a built-in name (the keys of `METHODS`) or the dotted path of any importable module that
defines `METHOD = ssljax.methods.Method(...)`; `train.py` knows nothing about any one method.
"""

from __future__ import annotations

import importlib
import os
import sys

from ssljax.config import ConfigError
from ssljax.methods.base import EvalContext, ImageHooks, Method

__all__ = ["METHODS", "EvalContext", "ImageHooks", "Method", "get_method"]

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
  "moco": "ssljax.methods.moco",
  "cpc": "ssljax.methods.cpc",
  "clip": "ssljax.methods.clip",
}


def _import_user_module(path: str):
  # As `python -m` would: a package in the directory the command runs from is importable without PYTHONPATH.
  if os.getcwd() not in sys.path:
    sys.path.append(os.getcwd())
  try:
    return importlib.import_module(path)
  except ModuleNotFoundError as e:
    # Only when the named module (or a package above it) is missing; an import inside it that fails is a bug
    # of that module, whose traceback its author needs.
    if e.name is None or not (path == e.name or path.startswith(e.name + ".")):
      raise
    raise ConfigError(
      f"method='{path}': no module {e.name} on the Python path (built-in methods: {', '.join(sorted(METHODS))}; "
      "another method is the dotted path of a module that defines METHOD)"
    ) from None


def get_method(name: str) -> Method:
  """The `Method` that `config.method` names: a built-in name, or the dotted path of a module defining METHOD."""
  if name in METHODS:
    module = importlib.import_module(METHODS[name])
  elif "." in name:
    module = _import_user_module(name)
  else:
    raise ConfigError(
      f"unknown method '{name}' (built-in: {', '.join(sorted(METHODS))}; or the dotted path of a module that "
      "defines METHOD)"
    )
  method = getattr(module, "METHOD", None)
  if not isinstance(method, Method):
    raise ConfigError(
      f"method='{name}': module {module.__name__} defines no METHOD = ssljax.methods.Method(...) "
      f"(found {type(method).__name__})"
    )
  return method
