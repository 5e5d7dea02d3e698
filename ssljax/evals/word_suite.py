"""The word-vector eval suite a word2vec run ends with: analogies, word similarity, a POS probe, nearest
neighbours, the exported vectors and a PCA picture of countries and capitals."""

from __future__ import annotations

import os

import jax
import numpy as np

from ssljax.config import ConfigError
from ssljax.data import DataError, text
from ssljax.evals import words as word_evals


def _existing(path: str, key: str) -> str:
  if not os.path.isfile(path):
    raise ConfigError(f"evals.{key}={path}: no such file")
  return path


def check(config, words) -> None:
  """Before training: the eval files exist, and the vocabulary holds words of at least two parts of speech of the
  POS probe's list (a corpus of another language, or of noise, fails here, not after training)."""
  e = config.evals
  for key in ("analogies", "wordsim353", "simlex999", "pos"):
    _existing(e[key], key)
  labels = word_evals.read_pos_labels(e.pos)
  found = {labels[w] for w in words if w in labels}
  if len(found) < 2:
    known = sum(w in labels for w in words)
    raise DataError(
      f"data.path={config.data.path}: its {len(words)}-word vocabulary holds {known} of the words "
      f"evals.pos labels ({len(found)} parts of speech); the word evals need English text"
    )


def evaluate(config, *, workdir: str, vectors: np.ndarray, words, writer=None, step: int = 0) -> dict:
  e = config.evals
  words = list(words)
  is_main = jax.process_index() == 0  # every process computes the same numbers; one writes files
  # Export first: the vectors are the product; a failing eval file must not cost them.
  if is_main:
    text.write_word2vec_format(os.path.join(workdir, "vectors.txt"), words, vectors, binary=False)
    text.write_word2vec_format(os.path.join(workdir, "vectors.bin"), words, vectors, binary=True)

  analogy = word_evals.analogy_accuracy(
    vectors, words, _existing(e.analogies, "analogies"), restrict_vocab=e.restrict_vocab, batch_size=256
  )
  results = {
    "analogy/total": analogy["total"],
    "analogy/semantic": analogy["semantic"],
    "analogy/syntactic": analogy["syntactic"],
  }
  print(
    f"analogies: {analogy['correct']}/{analogy['questions']} correct, {analogy['oov_questions']} questions "
    f"out of the {e.restrict_vocab} most frequent words, {analogy['malformed_lines']} malformed lines skipped",
    flush=True,
  )
  for key in ("wordsim353", "simlex999"):
    sim = word_evals.similarity_spearman(vectors, words, _existing(e[key], key))
    results[f"{key}/spearman"] = sim["spearman"]
    print(
      f"{key}: {sim['pairs']} pairs, {sim['oov_pairs']} with unknown words, "
      f"{sim['malformed_lines']} malformed lines skipped",
      flush=True,
    )
  pos = word_evals.pos_probe(vectors, words, _existing(e.pos, "pos"), seed=config.seed)
  results["pos_probe/top1"] = pos["top1"]
  results["pos_probe/majority_baseline"] = pos["majority_baseline"]

  for word, neighbours in word_evals.nearest_neighbors(vectors, words, list(e.neighbors), k=8).items():
    print(f"  {word}: " + ", ".join(f"{w} {s:.2f}" for w, s in neighbours), flush=True)
  if e.plots and is_main:
    try:
      _, image = word_evals.words_pca_plot(
        vectors, words, os.path.join(workdir, "words_pca.png"), title=f"{config.method}: countries and capitals (PCA)"
      )
      if writer is not None:
        writer.write_image(step, "words_pca", image)
    except ValueError as err:  # a corpus without the words: say so, keep the numbers
      print(f"words_pca.png skipped: {err}", flush=True)
  return {k: float(v) for k, v in results.items()}
