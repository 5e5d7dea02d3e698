"""Image-caption pairs for CLIP, in memory: the offline emoji set (`ssljax.data.emoji`), Fashion-MNIST with captions
made from its labels, TFRecords of (JPEG, caption), or a tfds image-text dataset (`coco_captions`).

Each image has one or more captions; training reads a random one of them each time it sees the image, and
retrieval asks for the first. Where the source has labels (the emoji's group and subgroup, Fashion-MNIST's class),
they come with names that zero-shot classification turns into prompts.
"""

from __future__ import annotations

import dataclasses
import glob
import os

import numpy as np

from ssljax.data import DataError
from ssljax.data import images as image_data

# Fashion-MNIST captions: what training reads. The zero-shot templates of the config are other sentences.
FASHION_TEMPLATES = (
  "a photo of a {}.",
  "a black and white photo of a {}.",
  "a small grayscale image of a {}.",
  "a {} on a plain dark background.",
  "a low resolution picture of a {}.",
  "a {} seen from the front.",
  "product shot of a {}.",
  "{}",
)
FASHION_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")


@dataclasses.dataclass(frozen=True)
class PairSet:
  images: np.ndarray  # (N, S, S, C) uint8
  captions: tuple[tuple[str, ...], ...]  # per image, its captions; the first is the one retrieval asks for
  labels: dict  # label set name -> (N,) int32, for zero-shot classification and probes (may be empty)
  class_names: dict  # label set name -> the names its ids stand for, as prompts spell them

  def __len__(self) -> int:
    return len(self.images)


def _prompt_name(name: str) -> str:
  """'Smileys & Emotion' -> 'smileys and emotion', 'face-smiling' -> 'face smiling': class names as text."""
  return " ".join(name.replace("&", "and").replace("-", " ").split()).lower()


def emoji_captions(name: str, tts: str, keywords) -> tuple[str, ...]:
  """An emoji's captions: its name (first: what retrieval asks for), its CLDR short name when that differs, its
  keywords, and both together. (The name also written into four sentences, measured on the cpu preset at 20
  epochs: retrieval i2t R@1 0.315 against 0.287, zero-shot group 0.253 against 0.270, subgroup 0.073 against
  0.137; so the captions stay the data's own words.)"""
  out = [name]
  if tts and tts != name:
    out.append(tts)
  if keywords:
    out += [", ".join(keywords), f"{name}: {', '.join(keywords)}"]
  return tuple(dict.fromkeys(out))


def _emoji(data_config, split: str) -> PairSet:
  from ssljax.data import emoji

  e = emoji.load(
    data_config.path,
    split,
    image_size=data_config.image_size,
    heldout_fraction=data_config.heldout_fraction,
    seed=data_config.split_seed,
  )
  captions = tuple(emoji_captions(n, t, k) for n, t, k in zip(e.names, e.tts, e.keywords))
  return PairSet(
    e.images,
    captions,
    {"group": e.groups, "subgroup": e.subgroups},
    {
      "group": tuple(map(_prompt_name, e.group_names)),
      "subgroup": tuple(map(_prompt_name, e.subgroup_names)),
    },
  )


def _fashion(data_config, split: str, limit: int) -> PairSet:
  s = image_data.load_split(data_config, split, limit)
  captions = tuple(tuple(t.format(FASHION_NAMES[y]) for t in FASHION_TEMPLATES) for y in s.labels)
  return PairSet(s.images, captions, {"class": s.labels}, {"class": FASHION_NAMES})


def _tfrecords(pattern: str, image_size: int, limit: int) -> PairSet:
  """Examples with a JPEG (or PNG) `image` and a `caption` (one string, or several) feature, resized to a square
  `image_size` as the image evals do."""
  import tensorflow as tf

  files = sorted(glob.glob(pattern)) if any(ch in pattern for ch in "*?[") else [pattern]
  files = [f for f in files if os.path.isfile(f)]
  if not files:
    raise DataError(f"data.path='{pattern}': no TFRecord files (expected examples with 'image' and 'caption')")
  spec = {"image": tf.io.FixedLenFeature([], tf.string), "caption": tf.io.VarLenFeature(tf.string)}
  images, captions = [], []
  try:
    for record in tf.data.TFRecordDataset(files).take(limit or -1):
      example = tf.io.parse_single_example(record, spec)
      image = tf.io.decode_image(example["image"], channels=3, expand_animations=False)
      image = tf.image.resize(image, (image_size, image_size), antialias=True)
      images.append(np.clip(np.round(image.numpy()), 0, 255).astype(np.uint8))
      captions.append(tuple(c.decode("utf-8") for c in tf.sparse.to_dense(example["caption"]).numpy()))
  except tf.errors.OpError as e:
    raise DataError(
      f"data.path='{pattern}': not TFRecords of 'image' and 'caption': {str(e).splitlines()[0]}"
    ) from None
  return PairSet(np.stack(images), tuple(captions), {}, {})


def _tfds(data_config, split: str, limit: int) -> PairSet:
  """A tfds dataset with an `image` and captions (`captions/text`, as coco_captions, or a `caption` string)."""
  import tensorflow as tf

  builder = image_data._tfds_builder(data_config.name, split, data_config.tfds_data_dir or None)
  ds = builder.as_dataset(split=split, shuffle_files=False)
  if limit:
    ds = ds.take(limit)
  images, captions = [], []
  for ex in ds.as_numpy_iterator():
    text = ex["captions"]["text"] if "captions" in ex else np.atleast_1d(ex["caption"])
    image = tf.image.resize(ex["image"], (data_config.image_size, data_config.image_size), antialias=True)
    images.append(np.clip(np.round(image.numpy()), 0, 255).astype(np.uint8))
    captions.append(tuple(t.decode("utf-8") for t in text))
  return PairSet(np.stack(images), tuple(captions), {}, {})


def load(data_config, split: str, limit: int = 0) -> PairSet:
  """The pairs of `split` ('train' or the eval split): `data.name` 'emoji' (a directory `data.path` built by
  `python -m ssljax.data.emoji`), 'fashion_mnist' (IDX files in `data.path`), 'tfrecord' (`data.path` the training
  files, `data.eval_path` the held-out ones: a file or a glob), or a tfds name. Refuses an image without a caption,
  or with an empty one, naming it."""
  name = data_config.name
  if name == "emoji":
    pairs = _emoji(data_config, split)
  elif name == "fashion_mnist" and data_config.path:
    pairs = _fashion(data_config, split, limit)
  elif name == "tfrecord":
    pattern = data_config.path if split == data_config.train_split else data_config.eval_path
    pairs = _tfrecords(pattern, data_config.image_size, limit)
  else:
    pairs = _tfds(data_config, split, limit)
  if limit and name == "emoji":
    pairs = PairSet(
      pairs.images[:limit],
      pairs.captions[:limit],
      {k: v[:limit] for k, v in pairs.labels.items()},
      pairs.class_names,
    )
  for i, texts in enumerate(pairs.captions):
    if not texts or not all(t.strip() for t in texts):
      raise DataError(f"data.name='{name}' split '{split}': image {i} has an empty caption ({list(texts)!r})")
  if len(pairs) == 0:
    raise DataError(f"data.name='{name}' split '{split}' holds no image-caption pairs")
  return pairs
