"""Orbax checkpoints of the whole train state: params, optimizer and method state, step and RNG.

The data position is the step (the input stream is a function of it), so the step is all the data state a
checkpoint needs. Saves are async; a step directory appears only once complete, so a run killed mid-save
resumes from the previous one. Arrays are restored into the shardings the caller asks for, not those they were
saved with, so a checkpoint written on a pod resumes on 8 GPUs and opens on a laptop.
"""

from __future__ import annotations

import jax
import numpy as np
import orbax.checkpoint as ocp

from ssljax import storage
from ssljax.config import ConfigError


class Checkpointer:
  def __init__(self, workdir, *, keep: int, fingerprint: str):
    self.directory = storage.path(workdir) / "checkpoints"  # orbax needs absolute paths; gs:// URLs are
    self.fingerprint = fingerprint
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, enable_async_checkpointing=True, cleanup_tmp_directories=True
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

  def restore(self, step: int, abstract_state):
    """Restores `step` into the shapes, dtypes and shardings of `abstract_state` (whatever mesh wrote it)."""
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), abstract_state)
    return self._restore(step, target)

  def restore_params(self, step: int):
    """The params of checkpoint `step` as host numpy arrays, on any machine (demos, exports): shapes come from
    the checkpoint's metadata and every array is read onto this process's first device."""
    metadata = self.manager.item_metadata(step)["state"]
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata)
    return jax.tree.map(np.asarray, self._restore(step, target)["params"])

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
