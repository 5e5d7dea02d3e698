"""Image datasets as uint8 arrays: offline IDX files and crops of the colour photographs inside the scikit-image
wheel (in memory, `ImageSplit`), or tfds (training data streamed per process, `TfdsTrainData`; eval splits decoded
into memory up to a limit).

Nothing random happens on the host beyond the seeded order: batch `s` of a stream is a function of (seed, s) alone,
whatever the number of processes, so a resumed run reads exactly what an uninterrupted one would. Host processing is
decoding and, for variable-size images, a deterministic resize; augmentation happens on device, inside the train
step.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import math
import os
import socket
import struct
import zlib

import numpy as np

from ssljax.data import DataError, arrays
from ssljax.data.arrays import steps_per_epoch

# IDX names used by (Fashion-)MNIST and the Debian package `dataset-fashion-mnist`.
_IDX_FILES = {
  "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASS_NAMES = {
  "fashion_mnist": (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
  ),
  "mnist": tuple(str(i) for i in range(10)),
  "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}
# The colour photographs bundled in the scikit-image wheel (scikit-image 0.26: each loader reads a file shipped in
# skimage/data, no download). Name -> loader name, index into its result for the stereo pair.
PHOTOS_NAME = "skimage_photos"
SKIMAGE_PHOTOS = {
  "astronaut": ("astronaut", None),
  "chelsea": ("chelsea", None),
  "coffee": ("coffee", None),
  "rocket": ("rocket", None),
  "motorcycle_left": ("stereo_motorcycle", 0),
  "motorcycle_right": ("stereo_motorcycle", 1),
  "retina": ("retina", None),
  "immunohistochemistry": ("immunohistochemistry", None),
  "hubble_deep_field": ("hubble_deep_field", None),
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
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (EOFError, OSError, zlib.error) as e:  # a gzip stream cut off, a corrupt one, an unreadable file
    raise DataError(f"{path}: cannot be read ({type(e).__name__}: {e}); fetch the file again") from None
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


# The datasets whose IDX files `data.path` may hold: the name only picks the class names, so any other name would
# train on these files under a name they are not.
IDX_DATASETS = ("fashion_mnist", "mnist")


def load_idx_split(directory: str, split: str, name: str = "fashion_mnist") -> ImageSplit:
  if name not in IDX_DATASETS:
    raise DataError(
      f"data.name='{name}' with data.path={directory}: a data.path holds IDX files of "
      f"{' or '.join(IDX_DATASETS)}; for tfds's {name} set data.path=''"
    )
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
      raise DataError(
        f"data.name='{PHOTOS_NAME}': scikit-image could not load its photo '{name}' "
        f"({type(e).__name__}); install scikit-image==0.26.0, whose wheel ships it"
      ) from None
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
    raise DataError(
      f"data.name='{PHOTOS_NAME}': need num_crops >= 1 and image_size >= 1, got {num_crops}, {image_size}"
    )
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
    crop = pil[label].resize(
      (image_size, image_size), Image.Resampling.BICUBIC, box=(x, y, x + side, y + side), reducing_gap=3.0
    )
    images[i] = np.asarray(crop)
  images.flags.writeable = False  # shared through the cache
  return ImageSplit(images, labels, tuple(name for name, _ in photos))


def load_split(data_config, split: str, limit: int = 0) -> ImageSplit:
  """The split named by the config: crops of the scikit-image photos when `data.name='skimage_photos'` (`limit`
  crops, or `PHOTO_CROPS[split]` when 0), from IDX files when `data.path` is set, else from tfds (the first
  `limit` examples, decoded into memory; variable-size images resized to `data.image_size`)."""
  if data_config.name == PHOTOS_NAME:
    return load_photo_split(split, limit or PHOTO_CROPS.get(split, 1), int(getattr(data_config, "image_size", 32)))
  if not data_config.path:
    return load_tfds_split(
      data_config.name,
      split,
      getattr(data_config, "tfds_data_dir", "") or None,
      limit=limit,
      image_size=int(getattr(data_config, "image_size", 0)),
    )
  out = load_idx_split(data_config.path, split, data_config.name)
  if limit:
    out = dataclasses.replace(out, images=out.images[:limit], labels=out.labels[:limit])
  return out


# ----------------------------------------------------------------------------------------------------- tfds

TFDS_HINT = (
  "with a network tfds downloads it; offline, prepare it elsewhere (`tfds build {name}`) and point "
  "TFDS_DATA_DIR or data.tfds_data_dir at it"
)


def _tfds_error(name: str, split: str, e: Exception) -> DataError:
  first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
  return DataError(
    f"tfds could not load '{name}' split '{split}' ({first[:160]}); "
    + TFDS_HINT.format(name=name)
    + (f", or {HOW_TO_GET[name]}" if name in HOW_TO_GET else "")
  )


OFFLINE_COPIES = {"fashion_mnist": "; or `make data` and data.path=/usr/share/datasets/fashion-mnist"}
# Where tfds fetches prepared datasets first: unreachable within the timeout means offline, and tfds' own retries
# would take minutes to say so.
TFDS_HOST = ("storage.googleapis.com", 443)
NETWORK_TIMEOUT_S = 5.0


def _unreachable(host: tuple[str, int]) -> str | None:
  """Why `host` cannot be reached (None when it can)."""
  try:
    socket.create_connection(host, timeout=NETWORK_TIMEOUT_S).close()
    return None
  except OSError as e:
    return f"{host[0]}:{host[1]}: {e.strerror or type(e).__name__}"


def _tfds_builder(name: str, split: str, data_dir: str | None):
  """The prepared builder (preparing it as `tfds.load` would) whose info knows `split`; a one-line DataError
  otherwise."""
  import tensorflow_datasets as tfds  # lazy: tensorflow is heavy
  from absl import logging as absl_logging

  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)  # tfds warns about empty folders it finds: not the user's error
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
    if not builder.is_prepared():
      offline = _unreachable(TFDS_HOST)
      if offline:
        raise DataError(
          f"tfds dataset '{name}' is not prepared in {builder.data_dir} and the network is out of reach "
          f"({offline}); " + TFDS_HINT.format(name=name) + OFFLINE_COPIES.get(name, "")
        )
      builder.download_and_prepare()
    builder.info.splits[split]  # an unknown split or a slice out of range raises here, not in a reader thread
  except DataError:
    raise
  except Exception as e:  # tfds raises many types for "not there and cannot download"
    raise _tfds_error(name, split, e) from None
  finally:
    absl_logging.set_verbosity(verbosity)
  return builder


@dataclasses.dataclass(frozen=True)
class _ImageSpec:
  """What the host makes of a tfds split's examples."""

  image_key: str
  label_key: str | None
  shape: tuple[int, int, int]  # of the uint8 arrays the host produces
  resize: bool  # variable-size features: shorter side to shape[0], centre square
  class_names: tuple[str, ...]


def _image_spec(builder, name: str, image_size: int) -> _ImageSpec:
  info = builder.info
  image_key, label_key = info.supervised_keys[:2] if info.supervised_keys else ("image", "label")
  if image_key not in info.features:
    raise DataError(f"tfds '{name}' has no image feature '{image_key}' (features: {', '.join(info.features)})")
  if label_key not in info.features:
    label_key = None  # unlabelled: labels are -1
  h, w, c = (tuple(info.features[image_key].shape) + (None,) * 3)[:3]
  c = c or 3
  class_names = tuple(getattr(info.features[label_key], "names", None) or ()) if label_key else ()
  if h and w:
    return _ImageSpec(image_key, label_key, (h, w, c), False, class_names)
  if image_size < 1:
    raise DataError(
      f"tfds '{name}' has images of varying size: set data.image_size to the side the host resizes them to"
    )
  return _ImageSpec(image_key, label_key, (image_size, image_size, c), True, class_names)


def _decode(spec: _ImageSpec):
  """Encoded image -> uint8 array of `spec.shape`: deterministic, so the host adds no randomness."""
  import tensorflow as tf

  size, channels = spec.shape[0], spec.shape[2]

  def decode(encoded):
    if not spec.resize:
      image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
      return tf.ensure_shape(image, spec.shape)

    def jpeg():  # decodes only the centre square: faster on wide photos
      hw = tf.image.extract_jpeg_shape(encoded)[:2]
      side = tf.reduce_min(hw)
      y, x = (hw[0] - side) // 2, (hw[1] - side) // 2
      return tf.io.decode_and_crop_jpeg(encoded, tf.stack([y, x, side, side]), channels=channels)

    def other():  # PNG, GIF, BMP
      image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
      hw = tf.shape(image)[:2]
      side = tf.reduce_min(hw)
      y, x = (hw[0] - side) // 2, (hw[1] - side) // 2
      return image[y : y + side, x : x + side]

    square = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)

    def resized():
      out = tf.image.resize(square, (size, size), method="bilinear", antialias=True)
      return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)

    image = tf.cond(tf.shape(square)[0] == size, lambda: square, resized)
    return tf.ensure_shape(image, spec.shape)

  return decode


def _read_config():
  import tensorflow as tf
  import tensorflow_datasets as tfds

  options = tf.data.Options()
  options.deterministic = True
  # One file at a time, in file order: a slice yields the same examples in the same order whichever process reads
  # it. No autocache (memory stays bounded) and no prefetch (the pipelines prefetch at their ends).
  return tfds.ReadConfig(options=options, try_autocache=False, skip_prefetch=True, interleave_cycle_length=1)


def _labels(spec: _ImageSpec, example):
  import tensorflow as tf

  if spec.label_key is None:
    return tf.constant(-1, tf.int32)
  return tf.cast(example[spec.label_key], tf.int32)


def load_tfds_split(
  name: str, split: str, data_dir: str | None = None, *, limit: int = 0, image_size: int = 0
) -> ImageSplit:
  """The first `limit` examples (all when 0) of a tfds split, decoded into memory as uint8.

  Streamed, never `batch_size=-1`: the encoded examples pass through once and only the decoded arrays are kept,
  so memory is `limit` x H x W x C bytes. Fixed-size images keep their size; variable-size ones (imagenet2012)
  become `image_size` squares (shorter side resized, centre crop), as in the training stream. "First" is in the
  split's file order, which tfds shuffled when it prepared the dataset.
  """
  import tensorflow as tf
  import tensorflow_datasets as tfds

  builder = _tfds_builder(name, split, data_dir)
  spec = _image_spec(builder, name, image_size)
  total = builder.info.splits[split].num_examples
  n = min(limit, total) if limit else total
  try:
    ds = builder.as_dataset(
      split=split,
      shuffle_files=False,
      read_config=_read_config(),
      decoders={spec.image_key: tfds.decode.SkipDecoding()},
    )
  except Exception as e:
    raise _tfds_error(name, split, e) from None
  decode = _decode(spec)
  ds = ds.take(n).map(
    lambda ex: (decode(ex[spec.image_key]), _labels(spec, ex)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
  )
  images = np.empty((n, *spec.shape), np.uint8)
  labels = np.empty((n,), np.int32)
  start = 0
  for image, label in ds.batch(256).prefetch(1).as_numpy_iterator():
    images[start : start + len(label)], labels[start : start + len(label)] = image, label
    start += len(label)
  if start != n:
    raise DataError(f"tfds '{name}' split '{split}': read {start} examples, its info says {n}")
  return ImageSplit(images, labels, spec.class_names or _numbered(labels))


@dataclasses.dataclass(frozen=True)
class TfdsTrainData:
  """A tfds training split, streamed per process: decoded and resized on the host, never held whole.

  The engine's view of training data, like `ImageSplit`: `steps_per_epoch`, `example_batch`, `stream`.

  Order. The split (its first `limit` examples) is cut into `num_shards` (G) virtual shards of n = N // G
  contiguous examples (the remainder, under G, is dropped, so every shard's epoch ends at the same step). Global
  batch s holds b/G consecutive examples of every shard, shard g in rows [g*b/G, (g+1)*b/G). A shard's epoch e
  is its examples in file order through a tf.data shuffle buffer seeded by (seed, e*G + g), cut into
  n // (b/G) = `steps_per_epoch` pieces (what is left over is dropped that epoch).

  Why the global batch does not depend on the process count P: shard g's sequence is a function of (split, G,
  seed, g) alone; process p reads exactly shards [p*G/P, (p+1)*G/P) (each as the tfds slice `split[a:b]`, which
  opens only the files it covers) and concatenates their pieces, which are rows [p*b/P, (p+1)*b/P) of the global
  batch, where `jax.make_array_from_process_local_data` puts them. Resuming at step k starts every shard at epoch
  k // spe and skips (k % spe) * b/G of its records before decoding (the skipped ones are read as bytes and parsed,
  never decoded), so it reads exactly what an uninterrupted run reads from step k on.

  Trade-offs:
  - Shuffling is local: a shard's buffer holds `shuffle_buffer // G` records, so an example meets the same few
    hundred neighbours of its file every epoch. tfds shuffles examples when it prepares a dataset, so batches are
    still random draws; what is not random is the company kept across epochs. A full-split permutation would need
    random access, which TFRecord files do not offer.
  - The order depends on G and on the shuffle implementation of the installed TensorFlow: resume with the same
    num_shards and TF version to read the same batches.
  - Each shard reads its files one by one; a process's parallelism comes from its G/P shards (each prefetching
    in the background) and the parallel decode. Keep G/P at 4 or more on slow storage.
  - Resume pays up to one epoch of each local shard's records read as bytes (not decoded), and every epoch
    starts by refilling the shards' shuffle buffers (a pause of shuffle_buffer / P records read, not decoded).
  - The host stores the preset's image_size: the device's random resized crop starts from that (a 224 square
    for imagenet2012), not from the full-resolution photo; that keeps host-to-device traffic fixed and small.
  - Memory: `shuffle_buffer / P` encoded records, one encoded piece per local shard and two decoded local
    batches in the prefetch.
  """

  name: str
  split: str  # a split name or one slice of it ('train', 'train[:90%]')
  data_dir: str | None
  num_shards: int
  shuffle_buffer: int  # encoded records, summed over all shards
  spec: _ImageSpec
  base_split: str
  offset: int  # of the first example in base_split
  num_examples: int  # used per epoch, num_shards * shard_size

  @classmethod
  def from_config(cls, data_config, limit: int = 0) -> TfdsTrainData:
    import tensorflow_datasets as tfds

    name, split = data_config.name, data_config.train_split
    data_dir = getattr(data_config, "tfds_data_dir", "") or None
    num_shards = int(getattr(data_config, "num_shards", 32))
    builder = _tfds_builder(name, split, data_dir)
    spec = _image_spec(builder, name, int(getattr(data_config, "image_size", 0)))
    try:
      (where,) = tfds.core.ReadInstruction.from_spec(split).to_absolute(builder.info.splits)
    except Exception as e:
      raise DataError(
        f"data.train_split='{split}' of '{name}' must be one split or one slice of it for streaming "
        f"({str(e).strip()[:120]})"
      ) from None
    start = where.from_ or 0
    stop = builder.info.splits[where.splitname].num_examples if where.to is None else where.to
    total = stop - start
    n = min(limit, total) if limit else total
    if num_shards < 1 or n < num_shards:
      raise DataError(f"data.num_shards={num_shards} does not fit the {n} examples of '{name}' split '{split}'")
    return cls(
      name=name,
      split=split,
      data_dir=data_dir,
      num_shards=num_shards,
      shuffle_buffer=int(getattr(data_config, "shuffle_buffer", 16_384)),
      spec=spec,
      base_split=where.splitname,
      offset=start,
      num_examples=n // num_shards * num_shards,
    )

  @functools.cached_property
  def _builder(self):
    return _tfds_builder(self.name, self.split, self.data_dir)

  @property
  def class_names(self) -> tuple[str, ...]:
    return self.spec.class_names

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def shard_size(self) -> int:
    return self.num_examples // self.num_shards

  def steps_per_epoch(self, batch_size: int) -> int:
    g = self.num_shards
    if batch_size % g:
      raise DataError(
        f"batch_size={batch_size} is not divisible by data.num_shards={g} (each shard of "
        f"'{self.name}' fills batch_size/num_shards rows of every batch)"
      )
    if self.shard_size < batch_size // g:
      raise DataError(
        f"batch_size={batch_size} takes {batch_size // g} examples from each of the {g} shards of "
        f"'{self.name}' split '{self.split}', which hold {self.shard_size}"
      )
    return self.shard_size // (batch_size // g)

  def example_batch(self, batch_size: int) -> dict:
    return {"image": np.zeros((batch_size, *self.spec.shape), np.uint8)}

  def _shard(self, g: int, rows: int, seed: int, first_epoch: int):
    """Shard g's pieces of `rows` encoded examples (and labels), epoch after epoch from `first_epoch`."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    lo = self.offset + g * self.shard_size
    split = f"{self.base_split}[{lo}:{lo + self.shard_size}]"
    try:
      records = self._builder.as_dataset(
        split=split,
        shuffle_files=False,
        read_config=_read_config(),
        decoders={self.spec.image_key: tfds.decode.SkipDecoding()},
      )
    except Exception as e:
      raise _tfds_error(self.name, split, e) from None
    records = records.map(lambda ex: (ex[self.spec.image_key], _labels(self.spec, ex)))
    buffer = max(1, self.shuffle_buffer // self.num_shards)
    g64, num_shards = tf.constant(g, tf.int64), tf.constant(self.num_shards, tf.int64)

    def epoch(e):
      key = tf.stack([tf.constant(seed, tf.int64), e * num_shards + g64])
      shuffle_seed = tf.random.stateless_uniform([], seed=key, minval=None, maxval=None, dtype=tf.int64)
      return records.shuffle(buffer, seed=shuffle_seed).batch(rows, drop_remainder=True)

    return tf.data.Dataset.counter(first_epoch).flat_map(epoch)

  def stream(self, *, batch_size: int, seed: int, start_step: int, process_index: int = 0, process_count: int = 1):
    """Yields this process's rows ({'image': (b/P, H, W, C) uint8, 'label': (b/P,) int32}) of global batches
    `start_step, start_step + 1, ...` forever."""
    import tensorflow as tf

    g_count = self.num_shards
    if g_count % process_count:
      raise DataError(
        f"data.num_shards={g_count} is not divisible by the {process_count} processes (each reads "
        f"num_shards/processes shards of '{self.name}')"
      )
    spe = self.steps_per_epoch(batch_size)
    first_epoch, skip = divmod(start_step, spe)
    per_shard, local = batch_size // g_count, g_count // process_count
    shards = [
      self._shard(g, per_shard, seed, first_epoch).skip(skip).prefetch(1)
      for g in range(process_index * local, (process_index + 1) * local)
    ]
    ds = tf.data.Dataset.zip(tuple(shards)).map(
      lambda *pieces: tuple(tf.concat([p[i] for p in pieces], 0) for i in range(2))
    )
    decode = _decode(self.spec)
    ds = ds.unbatch().map(
      lambda encoded, label: {"image": decode(encoded), "label": label},
      num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=True,
    )
    ds = ds.batch(batch_size // process_count, drop_remainder=True)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(2).as_numpy_iterator()


def check_split(data_config, split: str) -> None:
  """Opens `split` of the config's dataset as `load_split` would, so that a split the evals need fails now, in one
  line, and not after training (IDX files are read whole: they are small; tfds only looks the split up)."""
  if data_config.name == PHOTOS_NAME:
    if split not in PHOTO_SPLITS:
      raise DataError(f"data.name='{PHOTOS_NAME}' has splits {', '.join(PHOTO_SPLITS)}, not '{split}'")
  elif not data_config.path:
    _tfds_builder(data_config.name, split, getattr(data_config, "tfds_data_dir", "") or None)
  else:
    load_idx_split(data_config.path, split, data_config.name)


def load_train_data(data_config) -> ImageSplit | TfdsTrainData:
  """The training data the config names: in memory for the scikit-image photos and IDX files, streamed per
  process for tfds (`TfdsTrainData`)."""
  if data_config.name == PHOTOS_NAME or data_config.path:
    return load_split(data_config, data_config.train_split, data_config.max_train_examples)
  return TfdsTrainData.from_config(data_config, data_config.max_train_examples)


# ----------------------------------------------------------------------------------------------------- in memory


def train_stream(split: ImageSplit, **kwargs):
  """This process's rows of the global batches of `split` ({'image', 'label'}), from `start_step` on: see
  `ssljax.data.arrays.stream`."""
  return arrays.stream({"image": split.images, "label": split.labels}, **kwargs)


def eval_batches(split: ImageSplit, batch_size: int):
  """Fixed-order batches ({'image'}) over a whole split; the last one is padded and comes with its true size."""
  return arrays.eval_batches({"image": split.images}, batch_size)
