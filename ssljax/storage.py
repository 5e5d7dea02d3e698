"""Where a run's files go: a local directory or an object store (`gs://bucket/run`), through `etils.epath`, the
path type Orbax uses too, so checkpoints and every other file of a workdir take the same road.

Only local paths are made absolute (Orbax needs that; a `gs://` URL is already absolute and `os.path.abspath`
would turn it into `<cwd>/gs:/bucket`). Files are written whole or not at all: locally to a temporary name and
renamed; on an object store an object appears only when its upload completes, so the final name is written
directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid

from etils import epath


def is_local(path) -> bool:
  return "://" not in os.fspath(path)


def path(p) -> epath.Path:
  """`p` as an epath.Path: local paths absolute, URLs untouched."""
  s = os.fspath(p)
  return epath.Path(os.path.abspath(s) if is_local(s) else s)


@contextlib.contextmanager
def open_atomic(target, mode: str = "w"):
  """A file object for `target` ('w' or 'wb') that appears under its name only once closed without an error."""
  target = path(target)
  if not is_local(target):
    with target.open(mode) as f:
      yield f
    return
  tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
  try:
    with open(tmp, mode) as f:
      yield f
    os.replace(tmp, target)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_json_atomic(target, obj) -> None:
  with open_atomic(target, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write("\n")


def read_json(target):
  return json.loads(path(target).read_text())
