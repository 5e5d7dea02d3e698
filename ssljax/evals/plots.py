"""Figures for inspecting learned representations: t-SNE maps, nearest-neighbour grids, and side-by-side image
columns (original / input / output of reconstruction, inpainting and colorization models; `write_side_by_side`
saves them into a run's workdir and TensorBoard).

Each function saves a PNG and returns `(path, image)`, where `image` is the saved PNG read back as
an (H, W, 4) uint8 array, ready for a TensorBoard image summary.

Example:
  >>> idx, _ = nearest_neighbors(test_feats[:8], train_feats, k=8)
  >>> neighbors_plot(test_images[:8], {"SimCLR": train_images[idx]}, "nn.png")
"""

from __future__ import annotations

import io
import os

import matplotlib

matplotlib.use("Agg")  # headless: file output only, safe on servers and in tests
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from ssljax import storage  # noqa: E402

__all__ = [
  "confusion_plot",
  "neighbors_plot",
  "perplexity_by_source",
  "retrieval_grid",
  "side_by_side",
  "step_accuracy_plot",
  "tsne_plot",
  "write_side_by_side",
]

_MAX_LEGEND_CLASSES = 20  # beyond this a legend hides the plot and no colour map separates them


def _save(fig: plt.Figure, path) -> tuple[str, np.ndarray]:
  target = storage.path(path)
  target.parent.mkdir(parents=True, exist_ok=True)
  png = io.BytesIO()
  try:
    fig.savefig(png, format="png", dpi=100, bbox_inches="tight", facecolor="white")
  finally:
    plt.close(fig)
  # Whole or not at all, locally or on gs://: an interrupted run leaves no half-written PNG under the real name.
  with storage.open_atomic(target, "wb") as f:
    f.write(png.getvalue())
  # Decoded from the bytes written, so the returned array is exactly what the file holds.
  png.seek(0)
  image = plt.imread(png, format="png")
  return os.fspath(path), np.round(image * 255).astype(np.uint8)


def tsne_plot(
  features, labels, path, *, class_names=None, title: str = "", max_points: int = 2000, seed: int = 0
) -> tuple[str, np.ndarray]:
  """2-D t-SNE map of features, one colour per class.

  Args:
    features: (N, D) array.
    labels: (N,) int class ids.
    path: where to write the PNG; parent folders are created.
    class_names: optional names indexed by class id, shown in the legend.
    title: figure title.
    max_points: a seeded random subset of at most this many rows is embedded (t-SNE is O(N^2)).
    seed: seeds the subset and t-SNE.

  Returns:
    (path, (H, W, 4) uint8 image of the saved PNG).
  """
  features, labels = np.asarray(features, np.float32), np.asarray(labels)
  if features.ndim != 2 or labels.shape != (len(features),):
    raise ValueError(f"Need (N, D) features and (N,) labels; got {features.shape}, {labels.shape}.")
  if len(features) < 3:
    raise ValueError(f"t-SNE needs at least 3 points, got {len(features)}.")
  rng = np.random.default_rng(seed)
  if len(features) > max_points:
    keep = np.sort(rng.choice(len(features), max_points, replace=False))
    features, labels = features[keep], labels[keep]
  tsne = TSNE(
    n_components=2, init="pca", random_state=seed, perplexity=min(30.0, len(features) - 1.0)
  )  # sklearn needs perplexity < N
  # One OpenMP thread: the Barnes-Hut steps are too short to amortise thread wake-ups, and the
  # threads spin against JAX's for the same cores. On 2 shared cores, 2000 points took 14 s
  # this way against 32 s with two threads (100 points: 0.4 s against 6 s).
  with threadpool_limits(1, user_api="openmp"):
    embedding = tsne.fit_transform(features)

  classes = np.unique(labels)
  cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20" if len(classes) <= 20 else "turbo")
  fig, ax = plt.subplots(figsize=(6, 6))
  for i, c in enumerate(classes):
    color = cmap(i) if len(classes) <= 20 else cmap(i / max(len(classes) - 1, 1))
    name = class_names[c] if class_names is not None else str(c)
    ax.scatter(*embedding[labels == c].T, s=6, alpha=0.8, color=color, label=name, linewidths=0)
  ax.set_box_aspect(1)
  ax.set_xticks([])
  ax.set_yticks([])
  if title:
    ax.set_title(title)
  if len(classes) <= _MAX_LEGEND_CLASSES:
    ax.legend(
      loc="upper left",
      bbox_to_anchor=(1.01, 1.0),
      frameon=False,
      markerscale=3,
      fontsize=9,
      ncols=1 if len(classes) <= 12 else 2,
    )
  return _save(fig, path)


def _to_display(images: np.ndarray) -> np.ndarray:
  """uint8 [0, 255] or float [0, 1] images -> float [0, 1], single channels squeezed."""
  images = np.asarray(images)
  images = images / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
  images = np.clip(images, 0.0, 1.0)
  return images[..., 0] if images.shape[-1] == 1 else images


def _show(ax: plt.Axes, image: np.ndarray, border: str | None) -> None:
  ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
  # Ticks off but spines kept, so a spine can serve as the border.
  ax.set_xticks([])
  ax.set_yticks([])
  for spine in ax.spines.values():
    spine.set_visible(border is not None)
    if border is not None:
      spine.set_color(border)
      spine.set_linewidth(3)


def side_by_side(columns: dict, path, *, title: str = "") -> tuple[str, np.ndarray]:
  """One row per example, one column per named image set, e.g. {'original': x, 'masked': m, 'reconstruction': r}.

  Args:
    columns: name -> (N, H, W, C) images, uint8 [0, 255] or float [0, 1], the same N for every name.
    path: where to write the PNG.
    title: figure title.

  Returns:
    (path, (H, W, 4) uint8 image of the saved PNG).
  """
  names = list(columns)
  sets = [_to_display(columns[name]) for name in names]
  rows = {len(images) for images in sets}
  if not names or len(rows) != 1:
    raise ValueError(f"every column needs the same number of images, got {dict(zip(names, map(len, sets)))}")
  n = rows.pop()
  fig, axes = plt.subplots(n, len(names), figsize=(1.6 * len(names), 1.6 * n), squeeze=False)
  for col, (name, images) in enumerate(zip(names, sets)):
    axes[0, col].set_title(name, fontsize=9)
    for row in range(n):
      _show(axes[row, col], images[row], None)
  if title:
    fig.suptitle(title, fontsize=10)
  return _save(fig, path)


def write_side_by_side(columns: dict, workdir, name: str, *, title: str = "", writer=None, step: int = 0):
  """`side_by_side` saved as `workdir/<name>.png` and, given a metrics writer (`ssljax.metrics`), logged as the
  TensorBoard image `name` at `step`: the picture a method's `evaluate` adds (MAE's reconstructions, inpainting's
  and colorization's held-out results).

  Returns:
    (path, (H, W, 4) uint8 image of the saved PNG).
  """
  path, image = side_by_side(columns, os.path.join(workdir, f"{name}.png"), title=title)
  if writer is not None:
    writer.write_image(step, name, image)
  return path, image


def neighbors_plot(
  query_images,
  neighbor_images_by_name: dict,
  path,
  *,
  title: str = "",
  query_labels=None,
  neighbor_labels_by_name: dict | None = None,
) -> tuple[str, np.ndarray]:
  """Grid of query images and their nearest training images, one block of rows per encoder.

  Args:
    query_images: (Q, H, W, C) uint8 or float in [0, 1]; C is 1 (shown in gray) or 3.
    neighbor_images_by_name: {encoder name: (Q, K, H, W, C)}, neighbours most similar first,
      e.g. {'SimCLR': ..., 'random init': ...}.
    path: where to write the PNG; parent folders are created.
    title: figure title.
    query_labels: optional (Q,) labels; with `neighbor_labels_by_name` ({name: (Q, K)}) a
      neighbour whose label differs from its query's gets a red border.

  Returns:
    (path, (H, W, 4) uint8 image of the saved PNG).
  """
  queries = np.asarray(query_images)
  if queries.ndim != 4 or queries.shape[-1] not in (1, 3):
    raise ValueError(f"query_images must be (Q, H, W, C) with C in (1, 3), got {queries.shape}.")
  if not neighbor_images_by_name:
    raise ValueError("neighbor_images_by_name must name at least one encoder.")
  num_queries = len(queries)
  neighbors = {name: np.asarray(n) for name, n in neighbor_images_by_name.items()}
  num_neighbors = next(iter(neighbors.values())).shape[1]
  for name, n in neighbors.items():
    if n.shape != (num_queries, num_neighbors, *queries.shape[1:]):
      raise ValueError(
        f"neighbor_images_by_name[{name!r}] must have shape "
        f"{(num_queries, num_neighbors, *queries.shape[1:])}, got {n.shape}."
      )
  mark_errors = query_labels is not None and neighbor_labels_by_name is not None
  if mark_errors:
    query_labels = np.asarray(query_labels)
    neighbor_labels_by_name = {k: np.asarray(v) for k, v in neighbor_labels_by_name.items()}

  cell = 1.0  # inches per image
  fig = plt.figure(
    figsize=(cell * (num_neighbors + 1), (cell * num_queries + 0.4) * len(neighbors) + (0.4 if title else 0))
  )
  blocks = np.atleast_1d(fig.subfigures(len(neighbors), 1))
  queries = _to_display(queries)
  for block, (name, images) in zip(blocks, neighbors.items()):
    block.suptitle(name, fontsize=11, fontweight="bold")
    axes = block.subplots(num_queries, num_neighbors + 1, squeeze=False, gridspec_kw=dict(wspace=0.08, hspace=0.08))
    images = _to_display(images)
    for q in range(num_queries):
      _show(axes[q, 0], queries[q], border=None)
      for j in range(num_neighbors):
        wrong = mark_errors and neighbor_labels_by_name[name][q, j] != query_labels[q]
        _show(axes[q, j + 1], images[q, j], border="red" if wrong else None)
    axes[0, 0].set_title("query", fontsize=8)
    for j in range(num_neighbors):
      axes[0, j + 1].set_title(f"{j + 1}", fontsize=8)
  if title:
    fig.suptitle(title, fontsize=12, y=1.02)
  return _save(fig, path)


def perplexity_by_source(perplexities: dict[str, dict[str, float]], path, *, title: str = ""):
  """Horizontal bars: one group per source (hardest at the top), one bar per model, log-scaled perplexity.

  `perplexities` maps a model's name to {source: perplexity}; the first model orders the sources."""
  models = list(perplexities)
  sources = sorted(perplexities[models[0]], key=perplexities[models[0]].get)
  fig, ax = plt.subplots(figsize=(8, 0.32 * len(sources) * len(models) + 1.2))
  height = 0.8 / len(models)
  for k, name in enumerate(models):
    values = [perplexities[name].get(s, np.nan) for s in sources]
    ax.barh(np.arange(len(sources)) + k * height, values, height=height, label=name)
  ax.set_yticks(np.arange(len(sources)) + 0.4 - height / 2)
  ax.set_yticklabels(sources)
  ax.set_xscale("log")
  ax.set_xlabel("validation perplexity per WordPiece token (log scale)")
  ax.legend(loc="lower right")
  ax.set_title(title)
  return _save(fig, path)


def step_accuracy_plot(accuracies: dict[str, np.ndarray], path, *, chance: float, title: str = ""):
  """CPC: how often the prediction k steps ahead picks its true encoding, against k, one line per model, with
  chance (one over the number of candidates) as a dashed line."""
  fig, ax = plt.subplots(figsize=(6, 4))
  for name, values in accuracies.items():
    ks = np.arange(1, len(values) + 1)
    ax.plot(ks, values, marker="o", label=name)
  ax.axhline(chance, color="gray", linestyle="--", label="chance")
  ax.set_xlabel("steps ahead k")
  ax.set_ylabel("held-out accuracy")
  ax.set_xticks(np.arange(1, max(len(v) for v in accuracies.values()) + 1))
  ax.set_ylim(0, 1)
  ax.legend()
  ax.set_title(title)
  return _save(fig, path)


def confusion_plot(labels, predictions, class_names, path, *, title: str = ""):
  """A row-normalized confusion matrix (rows: true class, columns: predicted), classes in `class_names` order."""
  n = len(class_names)
  counts = np.zeros((n, n))
  np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
  rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
  size = max(5.0, 0.45 * n + 2)
  fig, ax = plt.subplots(figsize=(size, size))
  ax.imshow(rates, cmap="viridis", vmin=0, vmax=1)
  ax.set_xticks(np.arange(n))
  ax.set_yticks(np.arange(n))
  ax.set_xticklabels(class_names, rotation=90, fontsize=8)
  ax.set_yticklabels(class_names, fontsize=8)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  if n <= 12:
    for i in range(n):
      for j in range(n):
        ax.text(
          j, i, f"{rates[i, j]:.2f}", ha="center", va="center", color="w" if rates[i, j] < 0.5 else "k", fontsize=7
        )
  ax.set_title(title)
  return _save(fig, path)


def retrieval_grid(images, captions_by_image: list[list[tuple[str, bool]]], path, *, title: str = ""):
  """A row per image: the image, then its top captions, each marked when it is the image's own."""
  rows = len(images)
  fig, axes = plt.subplots(rows, 2, figsize=(9, 1.3 * rows), gridspec_kw={"width_ratios": [1, 6]})
  axes = np.atleast_2d(axes)
  for r in range(rows):
    _show(axes[r, 0], _to_display(images[r : r + 1])[0], None)
    axes[r, 1].axis("off")
    for i, (caption, correct) in enumerate(captions_by_image[r]):
      mark = "\u2713 " if correct else "   "
      axes[r, 1].text(
        0.0,
        0.85 - 0.2 * i,
        f"{i + 1}. {mark}{caption}",
        fontsize=8,
        color="green" if correct else "black",
        transform=axes[r, 1].transAxes,
        va="top",
      )
  if title:
    fig.suptitle(title, fontsize=11)
  return _save(fig, path)
