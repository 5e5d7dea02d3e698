"""Zero-shot classification and cross-modal retrieval on embeddings of a shared image-text space (CLIP).

Zero-shot: each class name is written into every prompt template, the prompts' text embeddings are normalized and
averaged, and the normalized average is that class's weight vector (CLIP's prompt ensembling, open_clip's
`build_zero_shot_classifier`); an image goes to the class of highest cosine similarity.

Retrieval: image -> text ranks every distinct caption of the split for each image, text -> image every image for
each distinct caption; recall@k is the share of queries with a right answer among their top k (an image's right
caption is its own; a caption's right images are those it describes, any of which counts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def l2_normalize(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def prompts(class_names: Sequence[str], templates: Sequence[str]) -> list[str]:
  """Every template filled with every class name, class by class: C * T strings."""
  for t in templates:
    if t.count("{}") != 1:
      raise ValueError(f"zero-shot template {t!r} must hold exactly one '{{}}' for the class name")
  return [t.format(name) for name in class_names for t in templates]


def classifier(embed_texts: Callable[[list[str]], np.ndarray], class_names, templates) -> np.ndarray:
  """(C, D) unit rows: per class, the normalized mean of its normalized prompt embeddings."""
  texts = prompts(class_names, templates)
  e = l2_normalize(embed_texts(texts)).reshape(len(class_names), len(templates), -1)
  return l2_normalize(e.mean(axis=1))


def predict(image_embeddings: np.ndarray, weights: np.ndarray) -> np.ndarray:
  """The class of highest cosine similarity for each image."""
  return np.argmax(l2_normalize(image_embeddings) @ weights.T, axis=1)


def retrieval(image_embeddings, text_embeddings, text_of_image, ks: Sequence[int] = (1, 5, 10)) -> dict:
  """Recall@k both ways. `text_embeddings` are the distinct captions; `text_of_image[i]` is image i's caption.

  Returns {'i2t_r@k': ..., 't2i_r@k': ...} for each k."""
  sims = l2_normalize(image_embeddings) @ l2_normalize(text_embeddings).T  # (N images, M texts)
  text_of_image = np.asarray(text_of_image)
  out = {}
  # Rank of the right caption: how many captions score strictly higher.
  right = sims[np.arange(len(sims)), text_of_image]
  i2t_rank = (sims > right[:, None]).sum(axis=1)
  # For each caption, the best rank any of its images reaches among all images.
  order = np.argsort(-sims, axis=0, kind="stable")  # (N, M): images by similarity, per text
  hits = text_of_image[order] == np.arange(sims.shape[1])[None, :]
  t2i_rank = np.argmax(hits, axis=0)
  described = np.zeros(sims.shape[1], bool)
  described[text_of_image] = True  # a caption no image has is no query
  for k in ks:
    out[f"i2t_r@{k}"] = float(np.mean(i2t_rank < k))
    out[f"t2i_r@{k}"] = float(np.mean(t2i_rank[described] < k))
  return out


def distinct_texts(captions: Sequence[str]) -> tuple[list[str], np.ndarray]:
  """(the distinct captions in first-seen order, the index of each input's caption among them)."""
  index: dict[str, int] = {}
  of = np.array([index.setdefault(c, len(index)) for c in captions], np.int64)
  return list(index), of
