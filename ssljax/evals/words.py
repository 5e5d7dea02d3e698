"""Word-embedding evaluations as gensim users know them: analogies, word similarity, neighbours.

`vectors` is a float (V, D) array and `words` the V strings it embeds, most frequent first (index 0
is the most frequent word), as in gensim's `KeyedVectors.index_to_key`.

- `analogy_accuracy`: Google's questions-words.txt (Mikolov et al. 2013,
  https://arxiv.org/abs/1301.3781) answered by 3CosAdd, counted exactly as gensim 4.4.0's
  `KeyedVectors.evaluate_word_analogies` counts, but batched into matrix products.
- `similarity_spearman`: WordSim-353 / SimLex-999 style pair files, as gensim's
  `KeyedVectors.evaluate_word_pairs`.
- `pos_probe`: a linear probe (`ssljax.evals.linear.linear_probe`) from word vector to part of
  speech.
- `nearest_neighbors` and `words_pca_plot` (countries and capitals, Mikolov et al. 2013,
  https://arxiv.org/abs/1310.4546, Fig. 2) for looking at the vectors.

Example:
  >>> result = analogy_accuracy(vectors, words, "questions-words.txt", restrict_vocab=30000)
  >>> result["total"], result["semantic"], result["syntactic"]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: file output only, safe on servers and in tests
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from ssljax.evals.linear import linear_probe  # noqa: E402
from ssljax.evals.plots import _save  # noqa: E402

__all__ = [
  "COUNTRY_CAPITAL_PAIRS",
  "analogy_accuracy",
  "nearest_neighbors",
  "pos_probe",
  "read_analogies",
  "read_pos_labels",
  "read_word_pairs",
  "similarity_spearman",
  "words_pca_plot",
]

# Mikolov et al. 2013 (arXiv:1310.4546) Fig. 2 shows these kinds of pairs; all are in the
# capital-common-countries section of questions-words.txt.
COUNTRY_CAPITAL_PAIRS: tuple[tuple[str, str], ...] = (
  ("china", "beijing"),
  ("japan", "tokyo"),
  ("france", "paris"),
  ("russia", "moscow"),
  ("italy", "rome"),
  ("germany", "berlin"),
  ("spain", "madrid"),
  ("greece", "athens"),
  ("turkey", "ankara"),
  ("poland", "warsaw"),
  ("portugal", "lisbon"),
  ("egypt", "cairo"),
)


def _check_vectors(vectors, words) -> tuple[np.ndarray, list[str]]:
  vectors, words = np.asarray(vectors, np.float32), list(words)
  if vectors.ndim != 2 or len(vectors) != len(words):
    raise ValueError(f"Need (V, D) vectors and V words; got vectors of shape {vectors.shape} and {len(words)} words.")
  return vectors, words


def _row_norms(x: np.ndarray) -> np.ndarray:
  # A zero row keeps norm 1 so it scores cosine 0 with everything instead of NaN.
  norms = np.linalg.norm(x, axis=1)
  return np.where(norms > 0, norms, 1).astype(x.dtype)


def _key_fn(case_insensitive: bool) -> Callable[[str], str]:
  # gensim upper-cases (not lower-cases); the two differ for a few characters such as 'ß'.
  return str.upper if case_insensitive else (lambda w: w)


def _first_index(words: Sequence[str], key: Callable[[str], str]) -> dict[str, int]:
  """key(word) -> index of its first (most frequent) occurrence, as gensim's `ok_vocab`."""
  index: dict[str, int] = {}
  for i, w in enumerate(words):
    index.setdefault(key(w), i)
  return index


def _limit(restrict_vocab: int | None, size: int) -> int:
  return size if restrict_vocab is None else min(max(restrict_vocab, 0), size)


def _require_file(path, what: str) -> str:
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{what} file {path!r} does not exist.")
  return path


def nearest_neighbors(vectors, words, queries: Sequence[str], k: int = 10) -> dict[str, list[tuple[str, float]]]:
  """Cosine nearest neighbours of each query word, the query itself excluded.

  Args:
    vectors: (V, D) float array.
    words: the V words, most frequent first.
    queries: words to look up; those not in `words` are left out of the result.
    k: neighbours per query (fewer when the vocabulary is smaller than k + 1).

  Returns:
    {query: [(word, cosine similarity), ...]}, most similar first.
  """
  vectors, words = _check_vectors(vectors, words)
  index = _first_index(words, lambda w: w)
  found = [q for q in dict.fromkeys(queries) if q in index]
  k = min(k, len(words) - 1)
  if not found or k < 1:
    return {q: [] for q in found}
  unit = vectors / _row_norms(vectors)[:, None]
  rows = np.array([index[q] for q in found])
  sims = unit[rows] @ unit.T
  sims[np.arange(len(rows)), rows] = -np.inf  # the query itself
  result = {}
  for q, s in zip(found, sims):
    top = np.argpartition(-s, k - 1)[:k]  # k < V, and the query's -inf sorts last
    top = top[np.argsort(-s[top], kind="stable")]
    result[q] = [(words[j], float(s[j])) for j in top]
  return result


def read_analogies(path) -> tuple[list[tuple[str, list[tuple[str, str, str, str]]]], int]:
  """Parses an analogy file in the format of Google's questions-words.txt.

  A line starting with ':' opens a section named by the rest of the line; every other line is a
  question of 4 whitespace-separated words. A line without exactly 4 words (blank ones included)
  is skipped and counted, as gensim skips and logs it.

  Args:
    path: the file, UTF-8.

  Returns:
    ([(section name, [(a, b, c, d), ...]), ...] in file order, number of malformed lines).

  Raises:
    FileNotFoundError: no such file.
    ValueError: a line before the first section header, or no question at all.
  """
  path = _require_file(path, "Analogy")
  sections: list[tuple[str, list[tuple[str, str, str, str]]]] = []
  malformed = 0
  # Binary lines decoded one by one, as gensim reads the file: only '\n' ends a line.
  with open(path, "rb") as f:
    for line_no, raw in enumerate(f, 1):
      line = raw.decode("utf-8")
      if line.startswith(":"):
        # lstrip(': ') is gensim's: it drops every leading ':' and space.
        sections.append((line.lstrip(": ").strip(), []))
        continue
      if not sections:
        raise ValueError(f"{path}:{line_no}: a question before the first ': section' header.")
      question = line.split()
      if len(question) != 4:
        malformed += 1
        continue
      sections[-1][1].append(tuple(question))
  if not any(questions for _, questions in sections):
    raise ValueError(f"{path} holds no analogy question (lines of 4 words after a ': section' header).")
  return sections, malformed


def _accuracy(correct: int, attempted: int) -> float:
  return correct / attempted if attempted else 0.0  # gensim's convention for an empty section


def _answer_batch(vectors, unit, norms, group, ia, ib, ic) -> np.ndarray:
  """Group id (index of the first case variant) of gensim's predicted word for each question; -1
  when nothing is left to predict. `vectors`, `norms` and `group` cover the restricted vocab."""
  # The query as gensim's most_similar(positive=[b, c], negative=[a]) builds it: unit vectors summed
  # in this order in float32, then divided by the total weight 3 and normalised in float64.
  query = ((unit[ib] + unit[ic]) - unit[ia]).astype(np.float64) / 3.0
  qnorm = np.linalg.norm(query, axis=1, keepdims=True)
  query = (query / np.where(qnorm > 0, qnorm, 1.0)).astype(np.float32)
  sims = query @ vectors.T
  sims /= norms  # in place: one (batch, vocab) block in memory, not two
  rows = np.arange(len(ia))
  for idx in (ia, ib, ic):
    sims[rows, idx] = -np.inf
  best = np.argmax(sims, axis=1)
  predicted = group[best]
  nothing_left = np.isneginf(sims[rows, best])
  predicted[nothing_left] = -1
  # gensim also skips a candidate whose upper-cased key equals a, b or c (another case variant of
  # an input word); it looks for one among the 5 best only, else keeps the 5th. Rare: exact path.
  clash = ~nothing_left & ((predicted == ia) | (predicted == ib) | (predicted == ic))
  for r in np.flatnonzero(clash):
    order = np.argsort(-sims[r], kind="stable")
    top5 = [j for j in order[:8] if j not in (ia[r], ib[r], ic[r])][:5]
    for j in top5:
      predicted[r] = group[j]
      if group[j] not in (ia[r], ib[r], ic[r]):
        break
  return predicted


def analogy_accuracy(
  vectors, words, path, restrict_vocab: int | None = 30000, case_insensitive: bool = True, *, batch_size: int = 1024
) -> dict:
  """Analogy accuracy by 3CosAdd, counted as gensim 4.4.0's `evaluate_word_analogies` counts.

  For a question "a b c d" the prediction is the word of the first `restrict_vocab` whose cosine
  with unit(b) - unit(a) + unit(c) is largest, a, b and c excluded; it is correct if it is d. A
  question with a word outside the first `restrict_vocab` words is skipped (counted as oov). With
  `case_insensitive` words compare upper-cased and each key takes the vector of its first (most
  frequent) case variant, as in gensim.

  Args:
    vectors: (V, D) float array.
    words: the V words, most frequent first.
    path: analogy file in questions-words.txt format (see `read_analogies`).
    restrict_vocab: only this many most frequent words are known and candidates; None: all.
    case_insensitive: compare words upper-cased.
    batch_size: questions per similarity matrix product; bounds memory, not the result.

  Returns:
    {'total', 'semantic', 'syntactic': accuracies (correct / questions attempted, 0.0 if none),
    'correct', 'questions' (attempted), 'oov_questions', 'malformed_lines': counts,
    'sections': {section name: accuracy}}. Semantic sections are those whose name does not start
    with 'gram' (the first five of questions-words.txt); sections of equal name are pooled.
  """
  vectors, words = _check_vectors(vectors, words)
  sections, malformed = read_analogies(path)
  key = _key_fn(case_insensitive)
  restricted = vectors[: _limit(restrict_vocab, len(words))]
  ok_vocab = _first_index(words[: len(restricted)], key)
  group = np.array([ok_vocab[key(w)] for w in words[: len(restricted)]], np.int64)

  ids, section_of, oov = [], [], 0
  for s, (_, questions) in enumerate(sections):
    for question in questions:
      keys = [key(w) for w in question]
      if all(k in ok_vocab for k in keys):
        ids.append([ok_vocab[k] for k in keys])
        section_of.append(s)
      else:
        oov += 1
  ids = np.array(ids, np.int64).reshape(-1, 4)
  section_of = np.array(section_of, np.int64)

  correct = np.zeros(len(ids), bool)
  if len(ids):
    norms = _row_norms(restricted)
    unit = restricted / norms[:, None]
    for start in range(0, len(ids), batch_size):
      a, b, c, d = ids[start : start + batch_size].T
      predicted = _answer_batch(restricted, unit, norms, group, a, b, c)
      correct[start : start + batch_size] = predicted == d

  names = [name for name, _ in sections]
  right = np.bincount(section_of[correct], minlength=len(names))
  asked = np.bincount(section_of, minlength=len(names))
  by_name: dict[str, list[int]] = {}
  for name, r, n in zip(names, right, asked):
    counts = by_name.setdefault(name, [0, 0])
    counts[0] += int(r)
    counts[1] += int(n)
  semantic = [not name.startswith("gram") for name in names]
  sem_right, sem_asked = int(right[semantic].sum()), int(asked[semantic].sum())
  total_right, total_asked = int(right.sum()), int(asked.sum())
  return {
    "total": _accuracy(total_right, total_asked),
    "semantic": _accuracy(sem_right, sem_asked),
    "syntactic": _accuracy(total_right - sem_right, total_asked - sem_asked),
    "correct": total_right,
    "questions": total_asked,
    "oov_questions": oov,
    "malformed_lines": malformed,
    "sections": {name: _accuracy(r, n) for name, (r, n) in by_name.items()},
  }


def read_word_pairs(path, *, delimiter: str = "\t") -> tuple[list[tuple[str, str, float]], int]:
  """Parses a word-similarity file (WordSim-353, SimLex-999) as gensim's `evaluate_word_pairs`.

  Lines starting with '#' are comments. Every other line must split on `delimiter` into exactly
  word, word, score (a float); one that does not (blank ones included) is skipped and counted.
  Words are kept as written, surrounding spaces included, as gensim keeps them.

  Args:
    path: the file, UTF-8.
    delimiter: field separator.

  Returns:
    ([(word1, word2, score), ...] in file order, number of malformed lines).

  Raises:
    FileNotFoundError: no such file.
    ValueError: no valid pair in the file.
  """
  path = _require_file(path, "Word-pair")
  pairs, malformed = [], 0
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.startswith("#"):
        continue
      fields = line.split(delimiter)
      try:
        if len(fields) != 3:
          raise ValueError
        pairs.append((fields[0], fields[1], float(fields[2])))
      except ValueError:
        malformed += 1
  if not pairs:
    raise ValueError(f"{path} holds no word pair (lines 'word{delimiter}word{delimiter}score').")
  return pairs, malformed


def similarity_spearman(
  vectors, words, path, case_insensitive: bool = True, *, restrict_vocab: int | None = 300000, delimiter: str = "\t"
) -> dict:
  """Spearman (and Pearson) correlation of cosine similarity with human scores, as gensim's
  `evaluate_word_pairs`.

  Args:
    vectors: (V, D) float array.
    words: the V words, most frequent first.
    path: word-pair file (see `read_word_pairs`).
    case_insensitive: compare words upper-cased; a key takes its first case variant's vector.
    restrict_vocab: words beyond the first this many count as unknown (gensim's default);
      None: none do.
    delimiter: field separator of the file.

  Returns:
    {'spearman', 'pearson': correlations over the pairs of known words (NaN when fewer than two,
    where gensim raises), 'pairs': pairs used, 'oov_pairs': pairs skipped for an unknown word,
    'oov_ratio': their percentage of the valid pairs, as gensim reports it, 'malformed_lines'}.
  """
  vectors, words = _check_vectors(vectors, words)
  pairs, malformed = read_word_pairs(path, delimiter=delimiter)
  key = _key_fn(case_insensitive)
  ok_vocab = _first_index(words[: _limit(restrict_vocab, len(words))], key)
  known = [
    (ok_vocab[key(a)], ok_vocab[key(b)], score) for a, b, score in pairs if key(a) in ok_vocab and key(b) in ok_vocab
  ]
  oov = len(pairs) - len(known)
  result = {
    "spearman": float("nan"),
    "pearson": float("nan"),
    "pairs": len(known),
    "oov_pairs": oov,
    "oov_ratio": 100.0 * oov / len(pairs),
    "malformed_lines": malformed,
  }
  if len(known) < 2:
    return result
  ia, ib, gold = (np.array(column) for column in zip(*known))
  # float32 unit vectors, as gensim's similarity() computes them, so ties among model scores match.
  unit = vectors / _row_norms(vectors)[:, None]
  model = np.einsum("ij,ij->i", unit[ia], unit[ib])
  result["spearman"] = float(stats.spearmanr(gold, model).statistic)
  result["pearson"] = float(stats.pearsonr(gold.astype(np.float64), model.astype(np.float64)).statistic)
  return result


def read_pos_labels(path) -> dict[str, str]:
  """Reads a 'word<TAB>pos' file with a 'word<TAB>pos' header line.

  Args:
    path: the file, UTF-8; lines that are not two tab-separated fields are ignored.

  Returns:
    {word: part of speech}; a word listed twice keeps its first label.

  Raises:
    FileNotFoundError: no such file.
    ValueError: no 'word<TAB>pos' line.
  """
  path = _require_file(path, "Part-of-speech")
  labels: dict[str, str] = {}
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f):
      fields = line.rstrip("\r\n").split("\t")
      if len(fields) != 2 or not fields[0] or not fields[1]:
        continue
      if line_no == 0 and fields == ["word", "pos"]:
        continue
      labels.setdefault(fields[0], fields[1])
  if not labels:
    raise ValueError(f"{path} holds no 'word<TAB>pos' line.")
  return labels


def pos_probe(vectors, words, path, *, seed: int = 0, test_fraction: float = 0.3, max_words: int | None = None) -> dict:
  """Linear-probe accuracy of predicting a word's part of speech from its vector.

  The labelled words found in the vocabulary are split by label (stratified) into train and test;
  `linear_probe` standardises the vectors and picks its L2 strength on the train words.

  Args:
    vectors: (V, D) float array.
    words: the V words, most frequent first.
    path: 'word<TAB>pos' file (see `read_pos_labels`).
    seed: seeds the train/test split and the probe's validation split.
    test_fraction: share of each label's words held out for testing.
    max_words: only the first this many vocabulary words are probed.

  Returns:
    {'top1': probe test accuracy, 'majority_baseline': test accuracy of always answering the most
    frequent train label, 'words': labelled words probed, 'train_words', 'test_words',
    'classes': sorted labels (class i of the probe is classes[i]), 'l2': chosen L2 strength}.
  """
  vectors, words = _check_vectors(vectors, words)
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
  labels = read_pos_labels(path)
  vocab = words if max_words is None else words[:max_words]
  rows = [i for i in _first_index(vocab, lambda w: w).values() if words[i] in labels]
  classes = sorted({labels[words[i]] for i in rows})
  if len(classes) < 2:
    raise ValueError(
      f"{path}: the vocabulary holds {len(rows)} labelled words with "
      f"{len(classes)} distinct labels; a probe needs at least 2."
    )
  class_id = {c: i for i, c in enumerate(classes)}
  x = vectors[rows]
  y = np.array([class_id[labels[words[i]]] for i in rows])

  test = np.zeros(len(y), bool)
  rng = np.random.default_rng(seed)
  for c in range(len(classes)):
    members = np.flatnonzero(y == c)
    # Every label keeps a train word, so the probe can learn it.
    size = min(int(round(test_fraction * len(members))), len(members) - 1)
    test[rng.permutation(members)[:size]] = True
  if not test.any():
    raise ValueError(f"{path}: only {len(y)} labelled words in the vocabulary; none left to test.")
  probe = linear_probe(x[~test], y[~test], x[test], y[test], num_classes=len(classes), seed=seed)
  # Ties go to the lower class index, as np.argmax breaks them.
  majority = int(np.argmax(np.bincount(y[~test], minlength=len(classes))))
  return {
    "top1": probe["top1"],
    "majority_baseline": float(np.mean(y[test] == majority)),
    "words": len(y),
    "train_words": int((~test).sum()),
    "test_words": int(test.sum()),
    "classes": classes,
    "l2": probe["l2"],
  }


def words_pca_plot(
  vectors,
  words,
  path,
  *,
  pairs: Sequence[tuple[str, str]] | None = None,
  title: str = "Countries and their capitals (PCA of word vectors)",
) -> tuple[str, np.ndarray]:
  """2-D PCA of country and capital vectors, an arrow from each country to its capital.

  The figure of Mikolov et al. 2013 (arXiv:1310.4546, Fig. 2): if the vectors encode "capital
  of", the arrows run roughly parallel. The PCA is fitted to the plotted vectors only.

  Args:
    vectors: (V, D) float array.
    words: the V words, most frequent first.
    path: where to write the PNG; parent folders are created.
    pairs: (country, capital) word pairs; `COUNTRY_CAPITAL_PAIRS` by default. Pairs with a word
      not in `words` are dropped.
    title: figure title.

  Returns:
    (path, (H, W, 4) uint8 image of the saved PNG).

  Raises:
    ValueError: fewer than 2 pairs have both words in the vocabulary.
  """
  vectors, words = _check_vectors(vectors, words)
  pairs = list(COUNTRY_CAPITAL_PAIRS if pairs is None else pairs)
  index = _first_index(words, lambda w: w)
  kept = [(a, b) for a, b in pairs if a in index and b in index]
  if len(kept) < 2:
    missing = sorted({w for pair in pairs for w in pair if w not in index})
    raise ValueError(
      f"words_pca_plot needs at least 2 (country, capital) pairs in the vocabulary, "
      f"found {len(kept)} of {len(pairs)}; missing words: "
      f"{', '.join(missing[:20])}."
    )
  x = vectors[[index[w] for pair in kept for w in pair]].astype(np.float64)
  x -= x.mean(0)
  _, _, vt = np.linalg.svd(x, full_matrices=False)
  points = x @ vt[:2].T
  if points.shape[1] < 2:  # 1-D vectors: nothing to spread along a second axis
    points = np.pad(points, ((0, 0), (0, 2 - points.shape[1])))
  countries, capitals = points[0::2], points[1::2]

  fig, ax = plt.subplots(figsize=(7, 6))
  for (country, capital), p, q in zip(kept, countries, capitals):
    ax.annotate("", xy=q, xytext=p, arrowprops=dict(arrowstyle="->", color="0.55", lw=0.8, shrinkA=3, shrinkB=3))
    ax.annotate(country, p, textcoords="offset points", xytext=(4, 3), fontsize=9)
    ax.annotate(capital, q, textcoords="offset points", xytext=(4, 3), fontsize=9)
  ax.scatter(*countries.T, s=18, color="tab:blue", label="country", zorder=3)
  ax.scatter(*capitals.T, s=18, color="tab:red", label="capital", zorder=3)
  ax.margins(0.15)  # room for the labels of the outermost points
  ax.set_xlabel("PC 1")
  ax.set_ylabel("PC 2")
  ax.legend(loc="best", frameon=False, fontsize=9)
  if title:
    ax.set_title(title)
  return _save(fig, path)
