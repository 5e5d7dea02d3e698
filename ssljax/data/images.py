"""Image datasets: offline IDX files, tfds, or crops of the colour photographs inside the scikit-image wheel, as
uint8 arrays, streamed by a seeded tf.data pipeline.

Nothing random happens on the host beyond the seeded order: batch `s` of the stream is a function of
(seed, s) alone, so a resumed run reads exactly what an uninterrupted one would. Augmentation happens on
device, inside the train step.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import math
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
# The colour photographs bundled in the scikit-image wheel (scikit-image 0.26: each loader reads a file shipped in
# skimage/data, no download). Name -> loader name, index into its result for the stereo pair.
PHOTOS_NAME = "skimage_photos"
SKIMAGE_PHOTOS = {
    "astronaut": ("astronaut", None), "chelsea": ("chelsea", None), "coffee": ("coffee", None),
    "rocket": ("rocket", None), "motorcycle_left": ("stereo_motorcycle", 0),
    "motorcycle_right": ("stereo_motorcycle", 1), "retina": ("retina", None),
    "immunohistochemistry": ("immunohistochemistry", None), "hubble_deep_field": ("hubble_deep_field", None),
}
PHOTO_SPLITS = {"train": (0.0, 0.8), "test": (0.8, 1.0)}  # rows of every photo each split crops from
PHOTO_CROPS = {"train": 8192, "test": 1024}  # crops per split when data.max_*_examples is 0
PHOTO_CROP_SIDE = (0.06, 0.5)  # crop side as a fraction of the photo's shorter side, drawn log-uniformly
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


@functools.lru_cache(maxsize=1)
def skimage_photos() -> tuple[tuple[str, np.ndarray], ...]:
  """((name, (H, W, 3) uint8 RGB), ...) for the nine colour photographs of `SKIMAGE_PHOTOS`, read from the
  scikit-image wheel (no network)."""
  try:
    from skimage import data  # lazy: only this source needs it
  except ImportError:
    raise DataError(f"data.name='{PHOTOS_NAME}' needs scikit-image (pip install scikit-image==0.26.0)") from None
  out = []
  for name, (loader, index) in SKIMAGE_PHOTOS.items():
    try:
      image = getattr(data, loader)()
    except Exception as e:  # a scikit-image that fetches the file instead of shipping it fails many ways offline
      raise DataError(f"data.name='{PHOTOS_NAME}': scikit-image could not load its photo '{name}' "
                      f"({type(e).__name__}); install scikit-image==0.26.0, whose wheel ships it") from None
    image = np.asarray(image[index] if index is not None else image)
    out.append((name, np.ascontiguousarray(image[..., :3], dtype=np.uint8)))
  return tuple(out)


@functools.lru_cache(maxsize=8)
def load_photo_split(split: str, num_crops: int, image_size: int, seed: int = 0) -> ImageSplit:
  """`num_crops` square random crops of the scikit-image colour photographs, resized to `image_size`: the offline
  colour data for colorization.

  Each crop's side is drawn log-uniformly between `PHOTO_CROP_SIDE` of its photo's shorter side (objects appear at
  several sizes; tiny crops are upsampled, large ones shrunk with an antialiasing filter). Photos take turns, so
  every photo gives the same number of crops. 'train' crops lie in the top 80% of every photo's rows and 'test'
  crops in the bottom 20%, so held-out crops share no pixel with training crops. The label is the photo's index
  (class names are the photos' names). The same arguments give the same crops; different seeds, different crops.

  Returns:
    ImageSplit of (num_crops, image_size, image_size, 3) uint8 RGB, read-only (cached).
  """
  from PIL import Image  # lazy; Pillow comes with scikit-image and matplotlib

  if split not in PHOTO_SPLITS:
    raise DataError(f"data.name='{PHOTOS_NAME}' has splits {', '.join(PHOTO_SPLITS)}, not '{split}'")
  if num_crops < 1 or image_size < 1:
    raise DataError(f"data.name='{PHOTOS_NAME}': need num_crops >= 1 and image_size >= 1, got {num_crops}, "
                    f"{image_size}")
  photos = skimage_photos()
  top, bottom = PHOTO_SPLITS[split]
  rng = np.random.default_rng([seed, list(PHOTO_SPLITS).index(split)])
  labels = np.arange(num_crops, dtype=np.int32) % len(photos)
  images = np.empty((num_crops, image_size, image_size, 3), np.uint8)
  pil = [Image.fromarray(p) for _, p in photos]
  lo, hi = (math.log(f) for f in PHOTO_CROP_SIDE)
  for i, label in enumerate(labels):
    h, w, _ = photos[label][1].shape
    y0, y1 = round(top * h), round(bottom * h)
    side = min(math.exp(rng.uniform(lo, hi)) * min(h, w), y1 - y0, w)
    y = y0 + rng.uniform(0, y1 - y0 - side)
    x = rng.uniform(0, w - side)
    crop = pil[label].resize((image_size, image_size), Image.Resampling.BICUBIC, box=(x, y, x + side, y + side),
                              reducing_gap=3.0)
    images[i] = np.asarray(crop)
  images.flags.writeable = False  # shared through the cache
  return ImageSplit(images, labels, tuple(name for name, _ in photos))


def load_split(data_config, split: str, limit: int = 0) -> ImageSplit:
  """The split named by the config: crops of the scikit-image photos when `data.name='skimage_photos'` (`limit`
  crops, or `PHOTO_CROPS[split]` when 0), from IDX files when `data.path` is set, else from tfds."""
  if data_config.name == PHOTOS_NAME:
    return load_photo_split(split, limit or PHOTO_CROPS.get(split, 1), int(getattr(data_config, "image_size", 32)))
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
