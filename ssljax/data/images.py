"""Image datasets: offline IDX files or tfds, as uint8 arrays, streamed by a seeded tf.data pipeline.

Nothing random happens on the host beyond the seeded order: batch `s` of the stream is a function of
(seed, s) alone, so a resumed run reads exactly what an uninterrupted one would. Augmentation happens on
device, inside the train step.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct

import numpy as np

from ssljax.data import DataError

# IDX names used by (Fashion-)MNIST and the Debian package `dataset-fashion-mnist`.
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASS_NAMES = {
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                      "Bag", "Ankle boot"),
    "mnist": tuple(str(i) for i in range(10)),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}
HOW_TO_GET = {
    "fashion_mnist": "run `make data` (installs the Debian package dataset-fashion-mnist into "
                     "/usr/share/datasets/fashion-mnist), or set --config.data.path='' to use tfds with a network",
}


@dataclasses.dataclass(frozen=True)
class ImageSplit:
  images: np.ndarray  # (N, H, W, C) uint8
  labels: np.ndarray  # (N,) int32
  class_names: tuple[str, ...]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  # The engine's view of training data (ssljax/train.py); word2vec's TokenData has the same three methods.
  def steps_per_epoch(self, batch_size: int) -> int:
    return steps_per_epoch(len(self.labels), batch_size)

  def example_batch(self, batch_size: int) -> dict:
    return {"image": np.zeros((batch_size, *self.images.shape[1:]), np.uint8)}

  def stream(self, **kwargs):
    return train_stream(self, **kwargs)


def read_idx(path: str) -> np.ndarray:
  """Reads an IDX file (optionally gzipped) into a numpy array."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    data = f.read()
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise DataError(f"{path}: not an unsigned-byte IDX file")
  ndim = data[3]
  shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
  body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
  if body.size != int(np.prod(shape)):
    raise DataError(f"{path}: truncated (expected {int(np.prod(shape))} values, found {body.size})")
  return body.reshape(shape)


def _find(directory: str, stem: str) -> str | None:
  for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
    if os.path.isfile(os.path.join(directory, name)):
      return os.path.join(directory, name)
  return None


def load_idx_split(directory: str, split: str, name: str = "fashion_mnist") -> ImageSplit:
  if split not in _IDX_FILES:
    raise DataError(f"data split '{split}' has no IDX files (known: {', '.join(_IDX_FILES)})")
  hint = HOW_TO_GET.get(name, "point --config.data.path at a directory of IDX files")
  if not os.path.isdir(directory):
    raise DataError(f"data.path={directory}: no such directory; {hint}")
  paths = [_find(directory, stem) for stem in _IDX_FILES[split]]
  if None in paths:
    missing = _IDX_FILES[split][paths.index(None)]
    raise DataError(f"data.path={directory}: missing {missing}[.gz]; {hint}")
  images, labels = read_idx(paths[0]), read_idx(paths[1])
  if images.ndim != 3 or labels.shape != images.shape[:1]:
    raise DataError(f"data.path={directory}: images {images.shape} and labels {labels.shape} do not match")
  return ImageSplit(images[..., None], labels.astype(np.int32), CLASS_NAMES.get(name, _numbered(labels)))


def _numbered(labels: np.ndarray) -> tuple[str, ...]:
  return tuple(str(i) for i in range(int(labels.max()) + 1))


def load_tfds_split(name: str, split: str, data_dir: str | None = None) -> ImageSplit:
  """Loads a whole tfds image split into memory (fine up to CIFAR scale)."""
  import tensorflow_datasets as tfds  # lazy: tensorflow is heavy

  try:
    ds, info = tfds.load(name, split=split, batch_size=-1, as_supervised=True, with_info=True, data_dir=data_dir)
  except Exception as e:  # tfds raises many types for "not there and cannot download"
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise DataError(
        f"tfds could not load '{name}' split '{split}' ({first[:160]}); with a network tfds downloads it, "
        f"offline prepare it elsewhere (`tfds build {name}`) and set TFDS_DATA_DIR"
        + (f", or {HOW_TO_GET[name]}" if name in HOW_TO_GET else "")) from None
  images, labels = tfds.as_numpy(ds)
  names = info.features["label"].names if "label" in info.features else _numbered(labels)
  return ImageSplit(np.asarray(images, np.uint8), np.asarray(labels, np.int32), tuple(names))


def load_split(data_config, split: str, limit: int = 0) -> ImageSplit:
  """The split named by the config, from IDX files when `data.path` is set, else from tfds."""
  if data_config.path:
    out = load_idx_split(data_config.path, split, data_config.name)
  else:
    out = load_tfds_split(data_config.name, split)
  if limit:
    out = dataclasses.replace(out, images=out.images[:limit], labels=out.labels[:limit])
  return out


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  if num_examples < batch_size:
    raise DataError(f"batch_size={batch_size} is larger than the {num_examples} training examples")
  return num_examples // batch_size


def train_stream(split: ImageSplit, *, batch_size: int, seed: int, start_step: int,
                 process_index: int = 0, process_count: int = 1):
  """Yields this process's rows of global batches `start_step, start_step + 1, ...` forever.

  Each epoch is a permutation seeded by (seed, epoch); the global batch `s` is rows
  [b*s, b*(s+1)) of its epoch's permutation and process `p` takes its contiguous slice of those rows,
  so the global batch does not depend on the number of processes. Partial batches are dropped.
  """
  import tensorflow as tf  # lazy: tensorflow is heavy

  if batch_size % process_count:
    raise DataError(f"batch_size={batch_size} is not divisible by the {process_count} processes")
  n, local = len(split.labels), batch_size // process_count
  spe = steps_per_epoch(n, batch_size)
  first_epoch, skip = divmod(start_step, spe)
  images = tf.constant(split.images)
  labels = tf.constant(split.labels)

  def epoch_batches(epoch):
    perm = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=tf.stack([seed, epoch]))
    rows = tf.reshape(perm[: spe * batch_size], [spe, batch_size])
    return tf.data.Dataset.from_tensor_slices(rows[:, process_index * local : (process_index + 1) * local])

  def gather(idx):
    return {"image": tf.gather(images, idx), "label": tf.gather(labels, idx)}

  ds = tf.data.Dataset.counter(first_epoch).flat_map(epoch_batches).skip(skip)
  ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  options = tf.data.Options()
  options.deterministic = True
  ds = ds.with_options(options).prefetch(2)
  return ds.as_numpy_iterator()


def eval_batches(split: ImageSplit, batch_size: int):
  """Fixed-order batches over a whole split; the last one is padded and comes with its true size."""
  n = len(split.labels)
  for start in range(0, n, batch_size):
    images = split.images[start : start + batch_size]
    valid = len(images)
    if valid < batch_size:
      images = np.concatenate([images, np.zeros((batch_size - valid, *images.shape[1:]), images.dtype)])
    yield {"image": images}, valid
