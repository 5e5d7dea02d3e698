"""Orbax checkpoints of the whole train state: params, optimizer and method state, step and RNG.

The data position is the step (the input stream is a function of it), so the step is all the data state a
checkpoint needs. Saves are async; a step directory appears only once complete, so a run killed mid-save
resumes from the previous one.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from ssljax.config import ConfigError


class Checkpointer:

  def __init__(self, workdir: str, *, keep: int, fingerprint: str):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")  # orbax needs absolute paths
    self.fingerprint = fingerprint
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True,
                                           cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, *, force: bool = False) -> None:
    if step in self.manager.all_steps():
      return
    meta = {"step": int(step), "fingerprint": self.fingerprint}
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    meta=ocp.args.JsonSave(meta)), force=force)

  def restore(self, step: int, abstract_state):
    """Restores `step` into the shapes, dtypes and shardings of `abstract_state`."""
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), abstract_state)
    out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                             meta=ocp.args.JsonRestore()))
    if out.meta.get("fingerprint") != self.fingerprint:
      raise ConfigError(f"checkpoint {self.directory}/{step} was written by a different config; "
                        "use a new --workdir or the original config")
    return out.state

  def restore_params(self, step: int):
    """The params of checkpoint `step` as host arrays, without knowing their shapes (demos, exports)."""
    out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                                             meta=ocp.args.JsonRestore()))
    if out.meta.get("fingerprint") != self.fingerprint:
      raise ConfigError(f"checkpoint {self.directory}/{step} was written by a different config than "
                        f"{os.path.dirname(self.directory)}/config.json")
    return out.state["params"]

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
