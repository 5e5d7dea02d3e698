"""Where numbers go: JSONL and TensorBoard files in the workdir, and a progress line on stdout."""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def write_json_atomic(path: str, obj) -> None:
  """Never leaves a half-written file that looks complete."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


class MetricWriter:
  """Scalars to `metrics.jsonl` and TensorBoard, images to TensorBoard. Only process 0 writes."""

  def __init__(self, workdir: str, *, enabled: bool = True):
    self.enabled = enabled
    self._tb = None
    if enabled:
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
      import tensorflow as tf  # lazy: heavy, and already loaded by tf.data in training runs

      self._tf = tf
      self._tb = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))

  def write_scalars(self, step: int, scalars: dict) -> None:
    if not self.enabled:
      return
    clean = {k: float(v) for k, v in scalars.items()}
    self._jsonl.write(json.dumps({"step": int(step), **clean}) + "\n")
    self._jsonl.flush()
    with self._tb.as_default(step=int(step)):
      for k, v in clean.items():
        self._tf.summary.scalar(k, v)

  def write_image(self, step: int, name: str, image: np.ndarray) -> None:
    if not self.enabled:
      return
    with self._tb.as_default(step=int(step)):
      self._tf.summary.image(name, np.asarray(image)[None])

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._tb.close()


def _duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
  """`step 120/1170 (10%) | loss 5.12 | 812 ex/s, 101 ex/s/device | ETA 12m30s`, timed from the first step."""

  def __init__(self, *, total_steps: int, batch_size: int, num_devices: int, start_step: int, stream=sys.stdout):
    self.total, self.batch, self.devices, self.stream = total_steps, batch_size, num_devices, stream
    self._t0, self._step0 = None, start_step

  def start(self, step: int) -> None:
    """Call after the first (compiling) step, so compile time does not count as throughput."""
    self._t0, self._step0 = time.perf_counter(), step

  def examples_per_sec(self, step: int) -> float:
    if self._t0 is None or step <= self._step0:
      return 0.0
    return (step - self._step0) * self.batch / (time.perf_counter() - self._t0)

  def line(self, step: int, scalars: dict) -> str:
    eps = self.examples_per_sec(step)
    eta = (self.total - step) * self.batch / eps if eps else float("nan")
    parts = [f"step {step}/{self.total} ({100 * step / self.total:.0f}%)"]
    parts += [f"{k} {v:.4g}" for k, v in scalars.items() if k in ("loss", "accuracy", "learning_rate")]
    if eps:
      parts += [f"{eps:.0f} ex/s, {eps / self.devices:.0f} ex/s/device", f"ETA {_duration(eta)}"]
    return " | ".join(parts)

  def print(self, step: int, scalars: dict) -> None:
    print(self.line(step, scalars), file=self.stream, flush=True)
