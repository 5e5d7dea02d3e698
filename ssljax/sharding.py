"""The device mesh, shardings, and global batches assembled from per-process data.

Everything runs under `jax.jit` on global arrays: the batch is split over the mesh axis `data`, params and
optimizer state are replicated. A loss written on the global batch therefore sees global negatives and global
BatchNorm statistics, whatever the number of devices or hosts.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed() -> None:
  """Joins a multi-process job when the environment describes one (no-op for a single process).

  Set SSLJAX_COORDINATOR=host:port, SSLJAX_NUM_PROCESSES and SSLJAX_PROCESS_ID (launch/run.py does this for
  SLURM); on Cloud TPU pods jax finds its peers itself and SSLJAX_DISTRIBUTED=1 is enough.
  """
  if os.environ.get("SSLJAX_COORDINATOR"):
    jax.distributed.initialize(
        coordinator_address=os.environ["SSLJAX_COORDINATOR"],
        num_processes=int(os.environ["SSLJAX_NUM_PROCESSES"]),
        process_id=int(os.environ["SSLJAX_PROCESS_ID"]))
  elif os.environ.get("SSLJAX_DISTRIBUTED") == "1":
    jax.distributed.initialize()


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D data-parallel mesh over all (or the first `num_devices`) devices."""
  devices = jax.devices()
  n = num_devices or len(devices)
  # Auto axes: GSPMD propagates shardings, so replicated params meet a sharded batch without annotations.
  return Mesh(np.asarray(devices[:n]), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def global_batch(local_batch, mesh: Mesh):
  """This process's rows of a global batch -> global jax.Arrays sharded over `data`."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  if batch_size % mesh.size:
    raise ValueError(f"batch_size={batch_size} is not divisible by the {mesh.size} devices of the mesh")
