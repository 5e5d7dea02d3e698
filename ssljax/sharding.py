"""The device mesh, shardings, and global batches assembled from per-process data.

Everything runs under `jax.jit` on global arrays: the batch is split over the mesh axis `data`, params and
optimizer state are replicated. A loss written on the global batch therefore sees global negatives and global
BatchNorm statistics, whatever the number of devices or hosts.
"""

from __future__ import annotations

import os
import socket
import struct
import time

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


class DistributedError(RuntimeError):
  """A multi-process job that cannot start or go on (unreachable coordinator, processes that disagree); the
  message is one line for the user."""


def _rendezvous(address: str, num_processes: int, process_id: int, timeout_s: float) -> None:
  """Meets every process on the coordinator's port before jax does, so that a process that cannot reach the
  coordinator, or a coordinator whose peers never come, ends with one line instead of jax's abort and stack trace.

  Process 0 listens on the port, collects one hello from each peer, answers them all, and frees the port for
  jax's coordination service; the peers then connect to it (jax retries until the service is up).
  """
  host, port = address.rsplit(":", 1)
  deadline = time.monotonic() + timeout_s
  if process_id == 0:
    with socket.create_server(("", int(port))) as server:
      server.settimeout(1.0)
      peers: dict[int, socket.socket] = {}
      try:
        while len(peers) < num_processes - 1:
          if time.monotonic() > deadline:
            missing = sorted(set(range(1, num_processes)) - set(peers))
            raise DistributedError(
              f"coordinator {address}: processes {missing} of {num_processes} did not join "
              f"within {timeout_s:.0f} s (SSLJAX_INIT_TIMEOUT_S)"
            )
          try:
            conn, _ = server.accept()
          except TimeoutError:
            continue
          conn.settimeout(10.0)
          peers[struct.unpack("!i", conn.recv(4))[0]] = conn
        for conn in peers.values():
          conn.sendall(b"go")
        for conn in peers.values():  # the peers hang up first, so the port is not left in TIME_WAIT here
          conn.recv(1)
      finally:
        for conn in peers.values():
          conn.close()
    return
  while True:
    try:
      with socket.create_connection((host, int(port)), timeout=5.0) as conn:
        conn.sendall(struct.pack("!i", process_id))
        conn.settimeout(max(deadline - time.monotonic(), 1.0) + 10.0)
        if conn.recv(2) == b"go":
          return
    except OSError:
      pass
    if time.monotonic() > deadline:
      raise DistributedError(
        f"process {process_id} of {num_processes} could not reach the coordinator {address} "
        f"within {timeout_s:.0f} s (SSLJAX_INIT_TIMEOUT_S): is process 0 running there?"
      )
    time.sleep(0.5)


def initialize_distributed() -> None:
  """Joins a multi-process job when the environment describes one (no-op for a single process).

  Set SSLJAX_COORDINATOR=host:port, SSLJAX_NUM_PROCESSES and SSLJAX_PROCESS_ID (launch/run.py does this for
  SLURM); on Cloud TPU pods jax finds its peers itself and SSLJAX_DISTRIBUTED=1 is enough. SSLJAX_INIT_TIMEOUT_S
  (default 300) bounds the wait for the other processes.
  """
  timeout_s = float(os.environ.get("SSLJAX_INIT_TIMEOUT_S", "300"))
  if os.environ.get("SSLJAX_COORDINATOR"):
    address = os.environ["SSLJAX_COORDINATOR"]
    try:
      num_processes = int(os.environ["SSLJAX_NUM_PROCESSES"])
      process_id = int(os.environ["SSLJAX_PROCESS_ID"])
    except (KeyError, ValueError):
      raise DistributedError(
        "SSLJAX_COORDINATOR is set, so SSLJAX_NUM_PROCESSES and SSLJAX_PROCESS_ID must be integers"
      ) from None
    if ":" not in address or not address.rsplit(":", 1)[1].isdigit():
      raise DistributedError(f"SSLJAX_COORDINATOR={address}: expected host:port")
    if not 0 <= process_id < num_processes:
      raise DistributedError(f"SSLJAX_PROCESS_ID={process_id} is not in [0, SSLJAX_NUM_PROCESSES={num_processes})")
    if num_processes > 1:
      _rendezvous(address, num_processes, process_id, timeout_s)
    jax.distributed.initialize(
      coordinator_address=address,
      num_processes=num_processes,
      process_id=process_id,
      initialization_timeout=int(timeout_s),
    )
  elif os.environ.get("SSLJAX_DISTRIBUTED") == "1":
    jax.distributed.initialize(initialization_timeout=int(timeout_s))


def agree(fn, what: str):
  """Runs `fn` on every process; if it raised on any of them, raises the first failure on all of them, so that
  no process goes on into a collective that the failed one will never join (a process that waits for another's
  file waits here, too: the all-gather is the barrier).

  A failure elsewhere comes back as a ConfigError when it was one, else as a DistributedError naming the process.
  """
  if jax.process_count() == 1:
    return fn()
  from jax.experimental import multihost_utils

  from ssljax.config import ConfigError

  error, result = None, None
  try:
    result = fn()
  except (DistributedError, ValueError, OSError) as e:  # ValueError: ConfigError and DataError too
    error = e
  message = (f"{type(error).__name__}:{error}" if error is not None else "").encode()[:2000]
  gathered = multihost_utils.process_allgather(np.frombuffer(message.ljust(2000, b"\0"), np.uint8))
  failures = [(p, bytes(row).rstrip(b"\0").decode(errors="replace")) for p, row in enumerate(gathered) if row.any()]
  if error is not None:
    raise error
  if failures:
    process, text = failures[0]
    kind, _, text = text.partition(":")
    cls = ConfigError if kind == "ConfigError" else DistributedError
    raise cls(f"process {process} failed while {what}: {text}")
  return result


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


def check_batch_size(batch_size: int, mesh: Mesh, key: str = "batch_size") -> None:
  from ssljax.config import ConfigError

  if batch_size % mesh.size:
    raise ConfigError(
      f"{key}={batch_size} is not divisible by the {mesh.size} devices of the mesh "
      f"({jax.process_count()} processes x {jax.local_device_count()} devices)"
    )


def host_to_global(tree, mesh: Mesh, spec: P | None = None):
  """Host arrays that every process holds whole (an eval batch, a fresh head) -> global jax.Arrays with `spec`.

  Unlike `global_batch`, where each process brings its own rows, each process here hands over the slices its
  own devices hold of the same full array.
  """
  sharding = NamedSharding(mesh, P(DATA_AXIS) if spec is None else spec)

  def one(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(one, tree)


def to_host(tree):
  """Global jax.Arrays -> numpy on every process, whichever devices hold them."""
  from jax.experimental import multihost_utils

  def one(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated:
      return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))

  return jax.tree.map(one, tree)
