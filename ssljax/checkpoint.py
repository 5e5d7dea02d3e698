"""Orbax checkpoints of the whole train state: params, optimizer and method state, step and RNG.

The data position is the step (the input stream is a function of it), so the step is all the data state a
checkpoint needs. Saves are async; a step directory appears only once complete, so a run killed mid-save
resumes from the previous one. Arrays are restored into the shardings the caller asks for, not those they were
saved with, so a checkpoint written on a pod resumes on 8 GPUs and opens on a laptop.
"""

from __future__ import annotations

import sys
import uuid

import jax
import orbax.checkpoint as ocp

from ssljax import storage
from ssljax.config import ConfigError

# Where a checkpoint that cannot be read is moved, beside checkpoints/: kept for a post-mortem, out of the way of
# the run that saves that step again.
UNREADABLE = "checkpoints-unreadable"


def _first_line(error: Exception) -> str:
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


class Checkpointer:
  def __init__(self, workdir, *, keep: int, fingerprint: str, read_only: bool = False):
    self.directory = storage.path(workdir) / "checkpoints"  # orbax needs absolute paths; gs:// URLs are
    self.fingerprint = fingerprint
    self.read_only = read_only
    # `read_only` here: this object never saves, deletes or creates (Orbax's own read-only mode logs a warning on
    # every open, which would break the one-line error of a tool that loads a run).
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep,
      create=not read_only,
      enable_async_checkpointing=not read_only,
      cleanup_tmp_directories=not read_only,
    )
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, *, force: bool = False) -> None:
    if step in self.manager.all_steps():
      return
    meta = {"step": int(step), "fingerprint": self.fingerprint}
    self.manager.save(
      step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=force
    )

  def _restore(self, step: int, target):
    out = self.manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore())
    )
    if out.meta.get("fingerprint") != self.fingerprint:
      raise ConfigError(
        f"checkpoint {self.directory}/{step} was written by a different config than "
        f"{self.directory.parent}/config.json; use a new --workdir or the original config"
      )
    return out.state

  def restore_latest(self, make_target, *, step: int | None = None):
    """(step, state) of the newest checkpoint that reads (or of `step`), None when there is none.

    `make_target(step)` gives the abstract state to restore into. A newer checkpoint that cannot be read (cut
    off mid-copy, a disk error) is reported in one line and skipped; unless read-only, it is moved to
    `UNREADABLE`, so that the run saves that step again. A checkpoint of another config is an error, not skipped.
    """
    steps = sorted(self.manager.all_steps(), reverse=True) if step is None else [step]
    for candidate in steps:
      try:
        return candidate, self._restore(candidate, make_target(candidate))
      except ConfigError:
        raise
      except Exception as e:  # Orbax and TensorStore raise many types for one damaged file
        if step is not None:
          raise ConfigError(f"checkpoint {self.directory}/{candidate} cannot be read ({_first_line(e)})") from None
        print(
          f"warning: checkpoint {self.directory}/{candidate} cannot be read ({_first_line(e)}); "
          + ("trying the one before" if candidate != steps[-1] else "no older checkpoint: starting from step 0"),
          file=sys.stderr,
          flush=True,
        )
        if not self.read_only:
          self._set_aside(candidate)
    return None

  def _set_aside(self, step: int) -> None:
    if jax.process_index() == 0:
      aside = self.directory.parent / UNREADABLE
      aside.mkdir(parents=True, exist_ok=True)
      (self.directory / str(step)).rename(aside / f"{step}-{uuid.uuid4().hex[:8]}")
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices(f"ssljax: checkpoint {step} set aside")
    self.manager.reload()

  def restore_replicated(self, mesh, *, step: int | None = None):
    """(step, state as a dict) of the newest readable checkpoint, every array replicated on `mesh`; shapes come
    from the checkpoint's metadata, so no model is built."""
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    def target(s):
      metadata = self.manager.item_metadata(s)["state"]
      return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=replicated), metadata)

    return self.restore_latest(target, step=step)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
