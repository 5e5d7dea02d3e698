import gzip

import numpy as np
import pytest

from ssljax.data import images

FMNIST = "/usr/share/datasets/fashion-mnist"


class _Data:
  path, name = FMNIST, "fashion_mnist"


def test_reads_fashion_mnist_idx():
  train = images.load_split(_Data, "train")
  test = images.load_split(_Data, "test", limit=100)
  assert train.images.shape == (60000, 28, 28, 1) and train.images.dtype == np.uint8
  assert np.bincount(train.labels).tolist() == [6000] * 10
  assert test.images.shape == (100, 28, 28, 1) and train.class_names[9] == "Ankle boot"


def test_idx_roundtrip_and_truncation(tmp_path):
  arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
  (tmp_path / "a.gz").write_bytes(gzip.compress(header + arr.tobytes()))
  np.testing.assert_array_equal(images.read_idx(str(tmp_path / "a.gz")), arr)
  (tmp_path / "b").write_bytes(header + arr.tobytes()[:-1])
  with pytest.raises(images.DataError, match="truncated"):
    images.read_idx(str(tmp_path / "b"))


def test_missing_dataset_says_how_to_get_it(tmp_path):
  class Missing:
    path, name = str(tmp_path / "nowhere"), "fashion_mnist"

  with pytest.raises(images.DataError, match="make data"):
    images.load_split(Missing, "train")


def test_stream_is_a_function_of_the_step():
  split = images.load_split(_Data, "train", limit=1000)
  spe = images.steps_per_epoch(1000, 64)  # 15 steps, 40 examples dropped each epoch
  full = images.train_stream(split, batch_size=64, seed=3, start_step=0)
  batches = [next(full) for _ in range(2 * spe + 3)]
  resumed = images.train_stream(split, batch_size=64, seed=3, start_step=spe + 2)
  for step in range(spe + 2, 2 * spe + 3):
    np.testing.assert_array_equal(next(resumed)["image"], batches[step]["image"])
  # An epoch visits distinct examples, and epochs are shuffled differently.
  first = np.concatenate([b["label"] for b in batches[:spe]])
  assert len(first) == spe * 64
  assert not np.array_equal(batches[0]["image"], batches[spe]["image"])
  other_seed = next(images.train_stream(split, batch_size=64, seed=4, start_step=0))
  assert not np.array_equal(other_seed["image"], batches[0]["image"])


def test_processes_split_the_global_batch():
  split = images.load_split(_Data, "train", limit=512)
  whole = next(images.train_stream(split, batch_size=64, seed=0, start_step=5))
  parts = [
    next(images.train_stream(split, batch_size=64, seed=0, start_step=5, process_index=p, process_count=4))
    for p in range(4)
  ]
  np.testing.assert_array_equal(np.concatenate([p["image"] for p in parts]), whole["image"])
  with pytest.raises(images.DataError, match="not divisible"):
    images.train_stream(split, batch_size=63, seed=0, start_step=0, process_count=2)


def test_eval_batches_cover_the_split_once():
  split = images.load_split(_Data, "test", limit=300)
  seen = [b["image"][:valid] for b, valid in images.eval_batches(split, 128)]
  assert [len(s) for s in seen] == [128, 128, 44]
  np.testing.assert_array_equal(np.concatenate(seen), split.images)


# ------------------------------------------------------------------------- crops of the scikit-image colour photos


class _Photos:
  name, path, image_size = "skimage_photos", "", 24


def test_photo_crops_are_seeded_uint8_rgb_and_all_different():
  split = images.load_split(_Photos, "train", limit=90)
  assert split.images.shape == (90, 24, 24, 3) and split.images.dtype == np.uint8
  assert split.num_classes == 9 and "astronaut" in split.class_names
  assert np.bincount(split.labels).tolist() == [10] * 9  # photos take turns
  assert len({crop.tobytes() for crop in split.images}) == 90
  assert split.images[..., 0].std() > 10 and np.abs(split.images[..., 0].astype(int) - split.images[..., 2]).mean() > 5
  uncached = images.load_photo_split.__wrapped__
  np.testing.assert_array_equal(uncached("train", 90, 24, seed=0).images, split.images)
  assert not np.array_equal(uncached("train", 90, 24, seed=1).images, split.images)
  held_out = images.load_split(_Photos, "test", limit=90)
  assert not np.array_equal(held_out.images, split.images)
  assert len(images.load_split(_Photos, "test").labels) == images.PHOTO_CROPS["test"]
  with pytest.raises(images.DataError, match="skimage_photos.*'validation'"):
    images.load_split(_Photos, "validation")
