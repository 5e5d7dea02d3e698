"""A finished (or running) run, loaded from its workdir: `ssljax.load(workdir)`.

    run = ssljax.load("workdirs/simclr_cpu")
    features = run.embed(images)          # uint8 images of any size (image methods), strings (text methods)
    module, variables = run.encoder()     # the trained encoder, for fine-tuning or surgery

The config comes from `workdir/config.json`, the params and method state from the newest checkpoint that
reads, restored replicated on this machine's devices whatever device or process count wrote it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import ml_collections
import numpy as np

from ssljax import config as config_lib
from ssljax import methods, sharding, storage
from ssljax.checkpoint import Checkpointer


def _tuples(value):
  # config.json holds JSON lists where the config had tuples (every sequence a config holds is a tuple).
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def config_of(workdir, *, with_checkpoint: bool = False) -> ml_collections.ConfigDict:
  """The config a workdir's run was started with, locked; a ConfigError naming the workdir when it holds no run
  (or, `with_checkpoint`, no checkpoint yet)."""
  path = storage.path(workdir) / "config.json"
  if not path.is_file():
    raise config_lib.ConfigError(f"{workdir} holds no run: {path} is missing")
  if with_checkpoint and not (storage.path(workdir) / "checkpoints").is_dir():
    raise config_lib.ConfigError(f"{workdir} has no checkpoint yet")
  config = ml_collections.ConfigDict(_tuples(storage.read_json(path)))
  config.lock()
  return config


@dataclasses.dataclass
class Run:
  workdir: str
  config: ml_collections.ConfigDict
  method: methods.Method
  step: int  # of the checkpoint the params come from
  params: Any
  method_state: Any
  mesh: jax.sharding.Mesh

  def embed(self, inputs, *, batch_size: int = 256) -> np.ndarray:
    """Features (N, D) of raw inputs, as the evals read them out (`method.embed`), computed on the mesh."""
    if self.method.batch_from_inputs is None:
      raise ValueError(f"method '{self.method.name}' gives no batch_from_inputs: it cannot embed raw inputs")
    batch = self.method.batch_from_inputs(self.config, self.workdir, inputs)
    rows = len(next(iter(batch.values())))
    step = max(self.mesh.size, batch_size - batch_size % self.mesh.size)
    repl, sharded = sharding.replicated(self.mesh), sharding.batch_sharded(self.mesh)
    fn = jax.jit(
      lambda p, s, b: self.method.embed(p, s, b, self.config), in_shardings=(repl, repl, sharded), out_shardings=repl
    )
    out = []
    for start in range(0, rows, step):
      chunk = {k: np.asarray(v[start : start + step]) for k, v in batch.items()}
      n = len(next(iter(chunk.values())))
      pad = -n % self.mesh.size  # every device gets the same number of rows; the padding is cut off below
      chunk = {k: np.concatenate([v, np.repeat(v[-1:], pad, axis=0)]) if pad else v for k, v in chunk.items()}
      features = fn(self.params, self.method_state, sharding.host_to_global(chunk, self.mesh))
      out.append(np.asarray(sharding.to_host(features))[:n])
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

  def encoder(self) -> tuple[Any, dict]:
    """(flax module, its variables) of the trained encoder: `module.apply(variables, x, train=False)`."""
    if self.method.encoder is None:
      raise ValueError(f"method '{self.method.name}' names no encoder (Method.encoder)")
    return self.method.encoder(self.config, self.params, self.method_state)


def load(workdir, *, step: int | None = None) -> Run:
  """The run in `workdir` at its newest readable checkpoint (or at `step`)."""
  config = config_of(workdir, with_checkpoint=True)
  method = methods.get_method(config.method)
  mesh = sharding.make_mesh()
  checkpointer = Checkpointer(workdir, keep=1, fingerprint=config_lib.fingerprint(config), read_only=True)
  try:
    found = checkpointer.restore_replicated(mesh, step=step)
  finally:
    checkpointer.close()
  if found is None:
    raise config_lib.ConfigError(f"{workdir} has no checkpoint yet")
  restored_step, state = found
  return Run(
    workdir=str(storage.path(workdir)),
    config=config,
    method=method,
    step=restored_step,
    params=state["params"],
    method_state=state["method_state"],
    mesh=mesh,
  )
