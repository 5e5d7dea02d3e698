"""The streamed tfds training source (`images.TfdsTrainData`) on a real prepared tfds dataset of variable-size JPEGs:
the global batch does not depend on the process count, resume reads what an uninterrupted run reads, the output
has a fixed shape, and misconfigurations are one-line errors."""

import functools
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from ssljax.data import images

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "ssljax_stream_test_jpegs"
TRAIN, TEST, SIZE = 100, 30, 16
SHARDS, BATCH = 4, 8  # 25 examples a shard, 2 of them in every batch: 12 steps an epoch, 1 left over per shard
SPE = 12


def _colour(i: int) -> tuple[int, int, int]:
  return (i * 37 % 256, i * 91 % 256, 40 + i % 5 * 40)  # distinct for i < 256


@functools.cache
def _builder_class():
  import tensorflow_datasets as tfds  # lazy: collecting the suite should not import tensorflow

  class SsljaxStreamTestJpegs(tfds.core.GeneratorBasedBuilder):
    """Constant-colour JPEGs of random height and width in [20, 60), five classes."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(
        builder=self,
        supervised_keys=("image", "label"),
        features=tfds.features.FeaturesDict(
          {
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(names=["a", "b", "c", "d", "e"]),
          }
        ),
      )

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(TRAIN, 0), "test": self._generate_examples(TEST, 1)}

    def _generate_examples(self, n, seed):
      rng = np.random.default_rng(seed)
      for i in range(n):
        h, w = rng.integers(20, 60, 2)
        yield i, {"image": np.full((h, w, 3), _colour(i), np.uint8), "label": i % 5}

  return SsljaxStreamTestJpegs


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  import tensorflow_datasets as tfds

  tfds.disable_progress_bar()
  path = str(tmp_path_factory.mktemp("tfds"))
  # Three files, so the shards' slices start and end inside files.
  _builder_class()(data_dir=path).download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=3))
  return path


def _data_config(data_dir, **overrides):
  d = dict(
    name=NAME,
    path="",
    train_split="train",
    eval_split="test",
    image_size=SIZE,
    max_train_examples=0,
    max_eval_examples=0,
    tfds_data_dir=data_dir,
    num_shards=SHARDS,
    shuffle_buffer=24,
  )
  d.update(overrides)
  return types.SimpleNamespace(**d)


def _batches(source, start_step, steps, process_index=0, process_count=1):
  stream = source.stream(
    batch_size=BATCH, seed=7, start_step=start_step, process_index=process_index, process_count=process_count
  )
  return [next(stream) for _ in range(steps)]


# Process 1 is a fresh interpreter without the builder class: it reads the prepared files by name, as a pod worker
# reads imagenet2012 from TFDS_DATA_DIR. (Process 0 is this one: a second interpreter would cost another
# TensorFlow import.)
_PROCESS_1 = f"""
import sys, types
import numpy as np
from ssljax.data import images
data_dir, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = types.SimpleNamespace(name={NAME!r}, path="", train_split="train", image_size={SIZE}, max_train_examples=0,
                               tfds_data_dir=data_dir, num_shards={SHARDS}, shuffle_buffer=24)
stream = images.load_train_data(config).stream(batch_size={BATCH}, seed=7, start_step=0, process_index=1,
                                               process_count=2)
rows = [next(stream) for _ in range(steps)]
np.savez(out, image=np.stack([r["image"] for r in rows]), label=np.stack([r["label"] for r in rows]))
"""


def test_two_processes_read_the_single_process_batches(data_dir, tmp_path):
  steps = 2 * SPE + 3  # across two epoch boundaries
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.Popen(
    [sys.executable, "-c", _PROCESS_1, data_dir, str(tmp_path / "p1.npz"), str(steps)],
    env=env,
    cwd=ROOT,
    stderr=subprocess.PIPE,
    text=True,
  )
  source = images.load_train_data(_data_config(data_dir))
  whole = _batches(source, 0, steps)
  first = _batches(images.load_train_data(_data_config(data_dir)), 0, steps, process_index=0, process_count=2)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-2000:]
  second = np.load(tmp_path / "p1.npz")
  for key in ("image", "label"):
    assert second[key].shape[1] == BATCH // 2
    np.testing.assert_array_equal(
      np.concatenate([np.stack([b[key] for b in first]), second[key]], axis=1), np.stack([b[key] for b in whole])
    )
  # Four processes (in this one, one shard each) cut the same batches again.
  quarters = [_batches(source, SPE - 2, 4, p, 4) for p in range(4)]
  for i, batch in enumerate(whole[SPE - 2 : SPE + 2]):
    np.testing.assert_array_equal(np.concatenate([q[i]["image"] for q in quarters]), batch["image"])

  # An epoch visits distinct examples; the next epoch visits them in another order.
  def keys(batches):
    return [b["image"][j].tobytes() for b in batches for j in range(BATCH)]

  epoch0, epoch1 = keys(whole[:SPE]), keys(whole[SPE : 2 * SPE])
  assert len(set(epoch0)) == SPE * BATCH and epoch0 != epoch1
  assert len(set(epoch0) | set(epoch1)) <= SHARDS * 25


def test_resume_reads_the_batches_of_an_uninterrupted_run(data_dir):
  source = images.load_train_data(_data_config(data_dir))
  whole = _batches(source, 0, SPE + 5)
  for start in (SPE - 3, SPE):  # inside an epoch and at its boundary
    for got, want in zip(_batches(source, start, SPE + 5 - start), whole[start:]):
      np.testing.assert_array_equal(got["image"], want["image"])
      np.testing.assert_array_equal(got["label"], want["label"])
  other_seed = next(source.stream(batch_size=BATCH, seed=8, start_step=0))
  assert not np.array_equal(other_seed["image"], whole[0]["image"])


def test_variable_size_jpegs_become_fixed_size_uint8(data_dir):
  source = images.load_train_data(_data_config(data_dir))
  assert isinstance(source, images.TfdsTrainData) and not isinstance(source, images.ImageSplit)
  assert source.num_classes == 5 and source.class_names[4] == "e"
  assert source.num_examples == TRAIN and source.steps_per_epoch(BATCH) == SPE
  assert source.example_batch(BATCH)["image"].shape == (BATCH, SIZE, SIZE, 3)
  colours = np.array([_colour(i) for i in range(TRAIN)])
  for batch in _batches(source, 0, 3):
    assert batch["image"].shape == (BATCH, SIZE, SIZE, 3) and batch["image"].dtype == np.uint8
    assert batch["label"].shape == (BATCH,) and batch["label"].dtype == np.int32
    # Resized, not garbled: every image is its example's constant colour (up to JPEG's rounding).
    for image, label in zip(batch["image"].astype(int), batch["label"]):
      nearest = np.abs(colours - image.reshape(-1, 3).mean(0)).max(1).argmin()
      assert np.abs(image - colours[nearest]).max() <= 6 and nearest % 5 == label


def test_eval_split_is_decoded_resized_and_limited(data_dir):
  config = _data_config(data_dir)
  test = images.load_split(config, "test")
  assert test.images.shape == (TEST, SIZE, SIZE, 3) and test.images.dtype == np.uint8
  assert test.labels.dtype == np.int32 and test.class_names == ("a", "b", "c", "d", "e")
  first = images.load_split(config, "test", limit=7)
  np.testing.assert_array_equal(first.images, test.images[:7])
  np.testing.assert_array_equal(first.labels, test.labels[:7])
  assert len(images.load_split(config, "train[:10%]").labels) == 10


def test_max_train_examples_and_split_slices_limit_the_stream(data_dir):
  assert images.load_train_data(_data_config(data_dir, max_train_examples=50)).num_examples == 48
  sliced = images.load_train_data(_data_config(data_dir, train_split="train[50%:]"))
  assert sliced.num_examples == 48 and sliced.steps_per_epoch(BATCH) == 6


def test_misconfigurations_are_one_line_errors(data_dir):
  source = images.load_train_data(_data_config(data_dir))
  cases = [
    (
      lambda: source.stream(batch_size=BATCH, seed=0, start_step=0, process_count=3),
      r"data.num_shards=4 is not divisible by the 3 processes",
    ),
    (lambda: source.steps_per_epoch(6), r"batch_size=6 is not divisible by data.num_shards=4"),
    (lambda: source.steps_per_epoch(4 * 26), r"takes 26 examples from each of the 4 shards"),
    (
      lambda: images.load_train_data(_data_config(data_dir, name="ssljax_no_such_dataset")),
      r"tfds could not load 'ssljax_no_such_dataset' split 'train'.*tfds build ssljax_no_such_dataset",
    ),
    (
      lambda: images.load_train_data(_data_config(data_dir, train_split="validation")),
      r"'ssljax_stream_test_jpegs' split 'validation'.*TFDS_DATA_DIR",
    ),
    (lambda: images.load_split(_data_config(data_dir), "validation"), r"split 'validation'"),
    (lambda: images.load_train_data(_data_config(data_dir, train_split="train+test")), r"one split or one slice"),
    (lambda: images.load_train_data(_data_config(data_dir, num_shards=101)), r"num_shards=101 does not fit"),
  ]
  for fn, pattern in cases:
    with pytest.raises(images.DataError, match=pattern) as info:
      fn()
    assert "\n" not in str(info.value)


def test_vision_methods_stream_tfds_and_keep_idx_in_memory(data_dir):
  from ssljax import config as config_lib
  from ssljax.methods import vision

  config = config_lib.get_config("configs/simclr.py:tiny")
  assert isinstance(vision.load_train_data(config), images.ImageSplit)  # IDX files
  config.data.name, config.data.path, config.data.tfds_data_dir = NAME, "", data_dir
  config.data.image_size, config.data.max_train_examples, config.data.num_shards = SIZE, 0, SHARDS
  data = vision.load_train_data(config)
  assert isinstance(data, images.TfdsTrainData) and data.steps_per_epoch(config.batch_size) == 25 // 8
