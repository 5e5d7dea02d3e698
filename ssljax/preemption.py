"""SIGTERM (preemption, `scancel`, a SLURM time limit, a TPU maintenance event) -> every process of the run stops
after the same step, saves it, and exits with status 143.

One process: a Python handler sets a flag that the loop reads between steps.

Several processes: `jax.distributed.initialize` starts JAX's preemption sync manager, which owns SIGTERM: the
process that receives it tells the coordination service, and `reached_preemption_sync_point(step)` turns True on
every process at the same step (one past the largest step any process had reached). Asking is a local flag read
(0.2 us), where an all-gather of a flag on every step costs a collective.

Either way a watchdog thread learns of SIGTERM at once, even while the main thread is blocked inside a collective
whose peer is gone (Python runs signal handlers only between bytecodes): Python's C-level handler writes the
signal to a wakeup pipe. If the run has not stopped `grace_s` seconds later, the watchdog prints why and ends the
process with status 143 (the last complete checkpoint stays, and the same command resumes from it).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

import jax

EXIT_STATUS = 143  # 128 + SIGTERM, what schedulers expect of a process ended by SIGTERM


def _sync_manager():
  from jax._src import distributed

  return distributed.global_state.preemption_sync_manager


def _c_handler_address(signum: int) -> int | None:
  """The address of the C function installed for `signum` (JAX's preemption notifier's), read with sigaction."""
  try:
    libc = ctypes.CDLL(None, use_errno=True)
    action = ctypes.create_string_buffer(256)  # struct sigaction starts with the handler pointer
    if libc.sigaction(signum, None, action) != 0:
      return None
    address = ctypes.c_void_p.from_buffer(action).value
  except (OSError, AttributeError):
    return None
  return address if address and address > 1 else None  # 0 and 1 are SIG_DFL and SIG_IGN


class Preemption:
  """Context manager around the training loop: `stop_after(step)` is True on every process at the same step."""

  def __init__(self, grace_s: float):
    self.grace_s = grace_s
    self.received = False
    self._done = threading.Event()
    self._jax_handler = None

  def __enter__(self):
    self._multi = jax.process_count() > 1
    if self._multi and _sync_manager() is None:
      raise RuntimeError("a multi-process run needs JAX's preemption service (jax_enable_preemption_service)")
    if self._multi:
      # JAX's notifier learns of SIGTERM through its own C handler, which ours replaces: keep it to pass it on.
      address = _c_handler_address(signal.SIGTERM)
      if address is not None:
        self._jax_handler = ctypes.CFUNCTYPE(None, ctypes.c_int)(address)
    self._read_fd, self._write_fd = os.pipe()
    os.set_blocking(self._write_fd, False)
    self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
    self._previous_wakeup = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
    threading.Thread(target=self._watch, name="ssljax-preemption-watchdog", daemon=True).start()
    return self

  def _on_sigterm(self, signum, frame):
    self.received = True

  def _watch(self):
    try:
      while not self._done.is_set():
        data = os.read(self._read_fd, 64)
        if not data or self._done.is_set():
          return
        if signal.SIGTERM in data:
          break
      else:
        return
      self.received = True
      if self._jax_handler is not None:
        self._jax_handler(signal.SIGTERM)  # sets the notifier's flag; it tells the other processes
      if not self._done.wait(self.grace_s):
        print(
          f"preempted: SIGTERM, and the run did not stop within {self.grace_s:.0f} s (blocked in a "
          "collective or a save whose peer is gone?); exiting without a checkpoint of this step, the last "
          "complete one stays; run the same command again to resume",
          file=sys.stderr,
          flush=True,
        )
        os._exit(EXIT_STATUS)
    finally:
      os.close(self._read_fd)

  def stop_after(self, step: int) -> bool:
    """Call after every step, on every process, with the same steps."""
    if self._multi:
      from jax.experimental import multihost_utils

      return multihost_utils.reached_preemption_sync_point(step)
    return self.received

  def __exit__(self, *exc):
    self._done.set()
    signal.set_wakeup_fd(self._previous_wakeup)
    signal.signal(signal.SIGTERM, self._previous_handler)
    try:
      os.write(self._write_fd, b"\0")  # wakes the watchdog, which sees the run done and closes its end
    except BrokenPipeError:  # it already has: it saw SIGTERM and woke when the run ended
      pass
    os.close(self._write_fd)
