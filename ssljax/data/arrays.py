"""In-memory training data of any fields (images and labels, waveform segments, image-caption pairs), streamed as
the engine reads it: global batch `s` is a function of (seed, s) alone, whatever the number of processes, so a
resumed run reads exactly what an uninterrupted one would."""

from __future__ import annotations

import dataclasses

import numpy as np

from ssljax.data import DataError


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  if num_examples < batch_size:
    raise DataError(f"batch_size={batch_size} is larger than the {num_examples} training examples")
  return num_examples // batch_size


def stream(
  arrays: dict[str, np.ndarray],
  *,
  batch_size: int,
  seed: int,
  start_step: int,
  process_index: int = 0,
  process_count: int = 1,
):
  """Yields this process's rows of global batches `start_step, start_step + 1, ...` forever, as dicts of the
  same keys as `arrays` (equal-length arrays, one row per example).

  Each epoch is a permutation seeded by (seed, epoch); the global batch `s` is rows [b*s, b*(s+1)) of its epoch's
  permutation and process `p` takes its contiguous slice of those rows, so the global batch does not depend on
  the number of processes. Partial batches are dropped.
  """
  import tensorflow as tf  # lazy: tensorflow is heavy

  if batch_size % process_count:
    raise DataError(f"batch_size={batch_size} is not divisible by the {process_count} processes")
  n = {len(a) for a in arrays.values()}
  if len(n) != 1:
    raise ValueError(f"arrays of different lengths: { {k: len(a) for k, a in arrays.items()} }")
  n, local = n.pop(), batch_size // process_count
  spe = steps_per_epoch(n, batch_size)
  first_epoch, skip = divmod(start_step, spe)
  tensors = {k: tf.constant(a) for k, a in arrays.items()}

  def epoch_batches(epoch):
    perm = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=tf.stack([seed, epoch]))
    rows = tf.reshape(perm[: spe * batch_size], [spe, batch_size])
    return tf.data.Dataset.from_tensor_slices(rows[:, process_index * local : (process_index + 1) * local])

  def gather(idx):
    return {k: tf.gather(t, idx) for k, t in tensors.items()}

  ds = tf.data.Dataset.counter(first_epoch).flat_map(epoch_batches).skip(skip)
  ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  options = tf.data.Options()
  options.deterministic = True
  ds = ds.with_options(options).prefetch(2)
  return ds.as_numpy_iterator()


def eval_batches(arrays: dict[str, np.ndarray], batch_size: int):
  """Fixed-order batches over every row of `arrays`: (batch, number of real rows); the last batch is padded with
  zeros to `batch_size`, so one compiled program serves them all."""
  n = len(next(iter(arrays.values())))
  for start in range(0, n, batch_size):
    batch = {k: a[start : start + batch_size] for k, a in arrays.items()}
    valid = len(next(iter(batch.values())))
    if valid < batch_size:
      batch = {k: np.concatenate([a, np.zeros((batch_size - valid, *a.shape[1:]), a.dtype)]) for k, a in batch.items()}
    yield batch, valid


@dataclasses.dataclass(frozen=True)
class ArrayData:
  """Training data held in memory as named arrays of one row per example: the engine's view of it (`stream`,
  `steps_per_epoch`, `example_batch`), plus `extras`, what a method keeps beside it for its evals."""

  arrays: dict[str, np.ndarray]
  extras: dict = dataclasses.field(default_factory=dict)

  @property
  def num_examples(self) -> int:
    return len(next(iter(self.arrays.values())))

  def steps_per_epoch(self, batch_size: int) -> int:
    return steps_per_epoch(self.num_examples, batch_size)

  def example_batch(self, batch_size: int) -> dict:
    return {k: np.zeros((batch_size, *a.shape[1:]), a.dtype) for k, a in self.arrays.items()}

  def stream(self, **kwargs):
    return stream(self.arrays, **kwargs)
