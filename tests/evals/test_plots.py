"""Tests for ssljax.evals.plots: files are valid PNGs and the returned images match them."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from ssljax.evals.plots import neighbors_plot, perplexity_by_source, side_by_side, tsne_plot

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path, image, min_side=100):
  with open(path, "rb") as f:
    assert f.read(8) == _PNG_SIGNATURE
  assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 4
  assert min(image.shape[:2]) >= min_side and max(image.shape[:2]) <= 4000
  on_disk = plt.imread(path)
  assert on_disk.shape == image.shape
  np.testing.assert_array_equal(np.round(on_disk * 255).astype(np.uint8), image)
  assert image[..., :3].std() > 0  # something was drawn
  assert not plt.get_fignums()  # figures are closed after saving


def test_tsne_plot_writes_png(tmp_path):
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, 150)
  features = rng.normal(size=(150, 16)) + 4 * np.eye(16)[labels]
  path, image = tsne_plot(
    features, labels, tmp_path / "sub" / "tsne.png", max_points=100, class_names=["zero", "one", "two"], title="t-SNE"
  )
  assert path == str(tmp_path / "sub" / "tsne.png")
  _check_png(path, image, min_side=300)


@pytest.mark.parametrize("channels, dtype", [(1, np.uint8), (3, np.float32)])
def test_neighbors_plot_writes_png(tmp_path, channels, dtype):
  rng = np.random.default_rng(1)
  queries, neighbors = rng.random((3, 8, 8, channels)), rng.random((3, 4, 8, 8, channels))
  if dtype == np.uint8:
    queries, neighbors = (queries * 255).astype(np.uint8), (neighbors * 255).astype(np.uint8)
  path, image = neighbors_plot(
    queries.astype(dtype),
    {"SimCLR": neighbors, "random init": neighbors[:, ::-1]},
    tmp_path / "nn.png",
    title="neighbours",
    query_labels=np.arange(3),
    neighbor_labels_by_name={"SimCLR": np.zeros((3, 4), int), "random init": np.ones((3, 4), int)},
  )
  _check_png(path, image)
  # Two blocks of three rows: taller than wide with five columns.
  assert image.shape[0] > image.shape[1]
  # Mislabelled neighbours are framed in pure red.
  red = (image[..., 0] > 200) & (image[..., 1] < 50) & (image[..., 2] < 50)
  assert red.sum() > 100


def test_neighbors_plot_rejects_mismatched_shapes(tmp_path):
  with pytest.raises(ValueError, match="SimCLR"):
    neighbors_plot(np.zeros((2, 8, 8, 1)), {"SimCLR": np.zeros((3, 4, 8, 8, 1))}, tmp_path / "nn.png")


def test_perplexity_by_source_writes_png(tmp_path):
  values = {"ours": {"a": 72.7, "b": 145.5, "c": 41.0}, "Kneser-Ney 5-gram": {"a": 102.2, "b": 165.7, "c": 51.9}}
  path, image = perplexity_by_source(values, tmp_path / "ppl.png", title="validation perplexity")
  _check_png(path, image)


def test_side_by_side_writes_one_column_per_set_and_nothing_partial(tmp_path):
  rng = np.random.default_rng(2)
  original = rng.random((4, 12, 12, 3)).astype(np.float32)
  path, image = side_by_side(
    {"original": original, "masked": original * 0.5, "output": (original * 255).astype(np.uint8)},
    tmp_path / "recon.png",
    title="MAE",
  )
  _check_png(path, image)
  assert image.shape[0] > image.shape[1]  # four rows, three columns
  assert sorted(p.name for p in tmp_path.iterdir()) == ["recon.png"]
  with pytest.raises(ValueError, match="same number of images"):
    side_by_side({"a": original, "b": original[:2]}, tmp_path / "bad.png")
