"""Where numbers go: JSONL and TensorBoard files in the workdir, and a progress line on stdout."""

from __future__ import annotations

import json
import os
import resource
import socket
import sys
import time

import numpy as np

from ssljax import storage


def peak_rss_mib() -> float:
  """This process's peak resident memory in MiB. Linux's VmHWM starts afresh at exec; getrusage's ru_maxrss
  does not (a child started by a 1 GiB parent reports 1 GiB), so it is only the fallback elsewhere."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


class MetricWriter:
  """Scalars to `metrics.jsonl` and TensorBoard, images to TensorBoard. Only process 0 writes.

  TensorBoard events are written with the `tensorboard` package alone: importing TensorFlow for them would
  add half a gigabyte to runs that never use tf.data (word2vec). Files open through `storage`, so a gs://
  workdir works (an object store re-uploads a file at each flush).
  """

  def __init__(self, workdir: str, *, enabled: bool = True):
    self.enabled = enabled
    if enabled:
      # RecordWriter on a plain file: tensorboard's EventFileWriter would import TensorFlow for its gfile.
      from tensorboard.compat.proto import event_pb2
      from tensorboard.summary.writer.record_writer import RecordWriter

      workdir = storage.path(workdir)
      self._jsonl = (workdir / "metrics.jsonl").open("a")
      (workdir / "tensorboard").mkdir(parents=True, exist_ok=True)
      name = f"events.out.tfevents.{time.time():.0f}.{socket.gethostname()}.{os.getpid()}"
      self._tb_file = (workdir / "tensorboard" / name).open("wb")
      self._tb = RecordWriter(self._tb_file)
      self._tb.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())

  def _write_summary(self, step: int, values: list) -> None:
    from tensorboard.compat.proto import event_pb2, summary_pb2

    event = event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values))
    self._tb.write(event.SerializeToString())
    self._tb.flush()

  def write_scalars(self, step: int, scalars: dict, *, jsonl: bool = True) -> None:
    """To TensorBoard, and to metrics.jsonl unless `jsonl` is False (the evals: eval.json holds them)."""
    if not self.enabled:
      return
    from tensorboard.compat.proto import summary_pb2

    clean = {k: float(v) for k, v in scalars.items()}
    if jsonl:
      self._jsonl.write(json.dumps({"step": int(step), **clean}) + "\n")
      self._jsonl.flush()
    self._write_summary(step, [summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in clean.items()])

  def write_image(self, step: int, name: str, image: np.ndarray) -> None:
    """`image`: (H, W, C) uint8, C in 1, 3 or 4."""
    if not self.enabled:
      return
    import io

    import matplotlib.image
    from tensorboard.compat.proto import summary_pb2

    image = np.asarray(image)
    png = io.BytesIO()
    matplotlib.image.imsave(
      png, image[..., 0] if image.shape[-1] == 1 else image, format="png", cmap="gray" if image.shape[-1] == 1 else None
    )
    encoded = summary_pb2.Summary.Image(
      height=image.shape[0], width=image.shape[1], colorspace=4, encoded_image_string=png.getvalue()
    )
    self._write_summary(step, [summary_pb2.Summary.Value(tag=name, image=encoded)])

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._tb_file.close()


def _duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
  """`step 120/1170 (10%) | loss 5.12 | 812 ex/s, 101 ex/s/device | ETA 12m30s`, timed from the first step."""

  def __init__(
    self, *, total_steps: int, batch_size: int, num_devices: int, start_step: int, unit: str = "ex", stream=sys.stdout
  ):
    self.total, self.batch, self.devices, self.stream, self.unit = total_steps, batch_size, num_devices, stream, unit
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
      parts += [f"{eps:.0f} {self.unit}/s, {eps / self.devices:.0f} {self.unit}/s/device", f"ETA {_duration(eta)}"]
    return " | ".join(parts)

  def print(self, step: int, scalars: dict) -> None:
    print(self.line(step, scalars), file=self.stream, flush=True)
