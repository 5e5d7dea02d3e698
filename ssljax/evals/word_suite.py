"""The word-vector eval suite a word2vec run ends with: analogies, word similarity, a POS probe, nearest
neighbours, the exported vectors and a PCA picture of countries and capitals."""

from __future__ import annotations

import collections
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


# A part of speech counts for the check below with this many labelled words: enough for the POS probe to hold
# some out, and more than the one-letter "words" that noise decodes to (200 kB of random bytes: ~20 nouns, 1 verb).
MIN_WORDS_PER_POS = 10


def check(config, words) -> None:
  """Before training: the eval files exist, and the vocabulary holds at least `MIN_WORDS_PER_POS` words of each of
  two parts of speech of the POS probe's list (a corpus of another language, or of noise, fails here, not after
  training)."""
  e = config.evals
  for key in ("analogies", "wordsim353", "simlex999", "pos"):
    _existing(e[key], key)
  labels = word_evals.read_pos_labels(e.pos)
  per_pos = collections.Counter(labels[w] for w in words if w in labels)
  if sum(n >= MIN_WORDS_PER_POS for n in per_pos.values()) < 2:
    counts = ", ".join(f"{n} {pos}" for pos, n in per_pos.most_common()) or "none"
    raise DataError(
      f"data.path={config.data.path}: its {len(words)}-word vocabulary holds few of the words evals.pos labels "
      f"({counts}; two parts of speech need {MIN_WORDS_PER_POS} each); the word evals need English text"
    )


def scores(config, vectors: np.ndarray, words: list, *, verbose: bool = True) -> dict:
  """Analogies, word similarity and the POS probe of `vectors` (rows of `words`), under eval.json's names."""
  e = config.evals
  analogy = word_evals.analogy_accuracy(
    vectors, words, _existing(e.analogies, "analogies"), restrict_vocab=e.restrict_vocab, batch_size=256
  )
  results = {
    "analogy/total": analogy["total"],
    "analogy/semantic": analogy["semantic"],
    "analogy/syntactic": analogy["syntactic"],
  }
  if verbose:
    print(
      f"analogies: {analogy['correct']}/{analogy['questions']} correct, {analogy['oov_questions']} questions "
      f"out of the {e.restrict_vocab} most frequent words, {analogy['malformed_lines']} malformed lines skipped",
      flush=True,
    )
  for key in ("wordsim353", "simlex999"):
    sim = word_evals.similarity_spearman(vectors, words, _existing(e[key], key))
    results[f"{key}/spearman"] = sim["spearman"]
    if verbose:
      print(
        f"{key}: {sim['pairs']} pairs, {sim['oov_pairs']} with unknown words, "
        f"{sim['malformed_lines']} malformed lines skipped",
        flush=True,
      )
  pos = word_evals.pos_probe(vectors, words, _existing(e.pos, "pos"), seed=config.seed)
  results["pos_probe/top1"] = pos["top1"]
  results["pos_probe/majority_baseline"] = pos["majority_baseline"]
  return {k: float(v) for k, v in results.items()}


def evaluate(
  config, *, workdir: str, vectors: np.ndarray, words, baseline_vectors=None, writer=None, step: int = 0
) -> dict:
  """The suite for trained `vectors`; with `baseline_vectors` (the run's initial ones) the same scores under
  'baseline/random_init/', the floor every number of the trained vectors is read against."""
  e = config.evals
  words = list(words)
  is_main = jax.process_index() == 0  # every process computes the same numbers; one writes files
  # Export first: the vectors are the product; a failing eval file must not cost them.
  if is_main:
    text.write_word2vec_format(os.path.join(workdir, "vectors.txt"), words, vectors, binary=False)
    text.write_word2vec_format(os.path.join(workdir, "vectors.bin"), words, vectors, binary=True)
  results = scores(config, vectors, words)
  if baseline_vectors is not None:
    random_init = scores(config, np.asarray(baseline_vectors, np.float32), words, verbose=False)
    results.update({f"baseline/random_init/{k}": v for k, v in random_init.items() if "majority" not in k})

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
  return results
