"""Tests for ssljax.evals.words: gensim-exact analogy and word-similarity scores, the POS probe,
nearest neighbours and the countries-and-capitals plot."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
from gensim.models import KeyedVectors
from gensim.test.utils import datapath

from ssljax.evals.words import (
  COUNTRY_CAPITAL_PAIRS,
  analogy_accuracy,
  nearest_neighbors,
  pos_probe,
  read_analogies,
  read_pos_labels,
  read_word_pairs,
  similarity_spearman,
  words_pca_plot,
)

# Six concepts, each with a male and a female word: vector = e_concept + e_male or + e_female.
_CONCEPTS = [
  ("man", "woman"),
  ("king", "queen"),
  ("boy", "girl"),
  ("father", "mother"),
  ("son", "daughter"),
  ("husband", "wife"),
]


def _write(tmp_path, name: str, text: str) -> str:
  path = tmp_path / name
  path.write_text(text, encoding="utf-8")
  return str(path)


def _gender_vocab() -> tuple[np.ndarray, list[str]]:
  """b - a + c = d holds exactly for "male_i female_i male_j female_j", all norms equal."""
  n = len(_CONCEPTS)
  words, rows = [], []
  for i, pair in enumerate(_CONCEPTS):
    for gender, word in enumerate(pair):
      v = np.zeros(n + 2, np.float32)
      v[i] = v[n + gender] = 1.0
      words.append(word)
      rows.append(v)
  return np.array(rows), words


def _gender_questions(*, wrong: bool = False) -> str:
  # With `wrong`, d is the male word of concept j: the model answers the female one.
  return "".join(f"{mi} {fi} {mj} {mj if wrong else fj}\n" for mi, fi in _CONCEPTS for mj, fj in _CONCEPTS if mi != mj)


def _reference_analogies(vectors, words, sections, restrict_vocab, case_insensitive=True):
  """Plain-Python float64 3CosAdd: (correct, attempted, oov) per section."""
  key = (lambda w: w.upper()) if case_insensitive else (lambda w: w)
  vocab = {}
  for i, w in enumerate(words[:restrict_vocab]):
    vocab.setdefault(key(w), i)

  def unit(i):
    v = [float(x) for x in vectors[i]]
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]

  units = [unit(i) for i in range(min(restrict_vocab, len(words)))]
  counts = []
  for _, questions in sections:
    correct = attempted = oov = 0
    for question in questions:
      if any(key(w) not in vocab for w in question):
        oov += 1
        continue
      a, b, c, d = (vocab[key(w)] for w in question)
      query = [ub - ua + uc for ua, ub, uc in zip(units[a], units[b], units[c])]
      qnorm = math.sqrt(sum(x * x for x in query))
      best, best_sim = None, -math.inf
      for j, u in enumerate(units):
        if vocab[key(words[j])] in (a, b, c):  # gensim skips other case variants of a, b, c too
          continue
        sim = sum(x * y for x, y in zip(u, query)) / qnorm
        if sim > best_sim:
          best, best_sim = j, sim
      attempted += 1
      correct += best is not None and vocab[key(words[best])] == d
    counts.append((correct, attempted, oov))
  return counts


def test_exact_analogies_all_correct_and_wrong_answers_none(tmp_path):
  vectors, words = _gender_vocab()
  path = _write(
    tmp_path, "q.txt", ": family\n" + _gender_questions() + ": gram-family-wrong\n" + _gender_questions(wrong=True)
  )
  result = analogy_accuracy(vectors, words, path)
  assert result["sections"] == {"family": 1.0, "gram-family-wrong": 0.0}
  assert (result["semantic"], result["syntactic"], result["total"]) == (1.0, 0.0, 0.5)
  assert (result["correct"], result["questions"], result["oov_questions"]) == (30, 60, 0)
  assert result["malformed_lines"] == 0


def test_semantic_and_syntactic_split_by_gram_prefix(tmp_path):
  vectors, words = _gender_vocab()
  right, wrong = _gender_questions(), _gender_questions(wrong=True)
  # gensim's rule, not position: a 'gram' section first, a semantic one after the syntactic ones.
  path = _write(
    tmp_path,
    "q.txt",
    f": gram1-x\n{wrong}: family\n{right}: grammar\n{wrong}: gram3-y\n{right}: capital-empty\n: zzz\n{right}",
  )
  result = analogy_accuracy(vectors, words, path)
  assert result["semantic"] == 1.0  # family + zzz
  assert result["syntactic"] == pytest.approx(30 / 90)  # gram1-x + grammar + gram3-y
  assert result["sections"]["capital-empty"] == 0.0  # no question: gensim's 0.0, not NaN
  assert result["total"] == pytest.approx(90 / 150)


def test_input_words_are_excluded(tmp_path):
  # a and c almost equal, so b - a + c is almost b: b is the nearest word, d the second.
  c = np.array([np.cos(0.1), np.sin(0.1), 0.0])
  d = np.array([0.0, 1.0, 0.3])
  vectors = np.array([[1, 0, 0], [0, 1, 0], c, d, [0, 0, 1], [-1, 0, 0]], np.float32)
  words = ["a", "b", "c", "d", "e", "f"]
  unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
  sims = unit @ (unit[1] - unit[0] + unit[2])
  assert list(np.argsort(-sims)[:2]) == [1, 3]  # the setup: b first, d second
  path = _write(tmp_path, "q.txt", ": s\na b c d\n")
  assert analogy_accuracy(vectors, words, path)["total"] == 1.0


def test_restrict_vocab_limits_questions_and_candidates(tmp_path):
  rng = np.random.default_rng(3)
  vectors = rng.normal(size=(20, 8)).astype(np.float32)
  words = [f"w{i}" for i in range(20)]
  unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
  # The last word points exactly along b - a + c of the question w0 w1 w2 ?.
  vectors[19] = unit[1] - unit[0] + unit[2]
  sims = unit[:19] @ vectors[19]
  sims[:3] = -np.inf
  answer = f"w{int(np.argmax(sims))}"  # the best answer among the first 19 words
  path = _write(tmp_path, "q.txt", f": s\nw0 w1 w2 {answer}\nw0 w1 w2 w19\n")
  restricted = analogy_accuracy(vectors, words, path, restrict_vocab=19)
  assert (restricted["correct"], restricted["questions"], restricted["oov_questions"]) == (1, 1, 1)
  full = analogy_accuracy(vectors, words, path, restrict_vocab=20)
  # w19 now answers both questions: the first becomes wrong, the second right.
  assert (full["correct"], full["questions"], full["oov_questions"]) == (1, 2, 0)


def test_case_insensitive_uses_first_variant(tmp_path):
  vectors, words = _gender_vocab()
  # A rarer 'Boy' with the vector of 'father': used as c, it would make 'mother' the answer.
  vectors = np.concatenate([vectors, vectors[[words.index("father")]]])
  words = words + ["Boy"]
  path = _write(tmp_path, "q.txt", ": s\nMAN Woman Boy GIRL\nman woman Boy girl\n")
  result = analogy_accuracy(vectors, words, path)
  assert (result["correct"], result["questions"]) == (2, 2)  # Boy -> boy, the first variant
  exact = analogy_accuracy(vectors, words, path, case_insensitive=False)
  assert (exact["correct"], exact["questions"], exact["oov_questions"]) == (0, 1, 1)


def test_case_insensitive_upper_cases_as_gensim(tmp_path):
  vectors, words = _gender_vocab()
  words[words.index("boy")] = "STRASSE"
  # 'straße'.upper() == 'STRASSE', while lower() keeps 'straße' apart from 'strasse'.
  path = _write(tmp_path, "q.txt", ": s\nman woman straße girl\n")
  assert analogy_accuracy(vectors, words, path)["correct"] == 1


def test_malformed_lines_are_counted_and_bad_files_rejected(tmp_path):
  vectors, words = _gender_vocab()
  path = _write(
    tmp_path,
    "q.txt",
    ": s\nman woman boy girl\nman woman boy\n\nman woman boy girl king\n:gram-t\nking queen boy girl\n",
  )
  sections, malformed = read_analogies(path)
  assert malformed == 3
  assert sections == [("s", [("man", "woman", "boy", "girl")]), ("gram-t", [("king", "queen", "boy", "girl")])]
  result = analogy_accuracy(vectors, words, path)
  assert (result["malformed_lines"], result["questions"], result["total"]) == (3, 2, 1.0)

  with pytest.raises(FileNotFoundError, match="nope.txt"):
    read_analogies(tmp_path / "nope.txt")
  with pytest.raises(ValueError, match="headless.txt"):
    read_analogies(_write(tmp_path, "headless.txt", "man woman boy girl\n"))
  with pytest.raises(ValueError, match="empty.txt"):
    read_analogies(_write(tmp_path, "empty.txt", ": s\nman woman\n"))


def test_analogies_match_float64_reference(tmp_path):
  rng = np.random.default_rng(0)
  vectors = rng.normal(size=(60, 16)).astype(np.float32)
  words = [f"w{i}" for i in range(58)] + ["W3", "w3x"]  # a case variant of w3, after it
  unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
  lines = []
  for name in ["capital-a", "family-b", "gram1-c"]:
    lines.append(f": {name}")
    for n in range(12):
      if n % 2:  # any four words, some beyond restrict_vocab=55
        lines.append(" ".join(words[i] for i in rng.choice(60, 4, replace=False)))
        continue
      # About half right: d is the best answer among the first 55 words, by float64 argmax.
      a, b, c = rng.choice(55, 3, replace=False)
      sims = unit[:55].astype(np.float64) @ (unit[b] - unit[a] + unit[c]).astype(np.float64)
      sims[[a, b, c]] = -np.inf
      d = rng.choice([int(np.argmax(sims)), int(rng.integers(55))])
      lines.append(" ".join(words[i] for i in (a, b, c, d)))
  path = _write(tmp_path, "q.txt", "\n".join(lines) + "\n")
  sections, _ = read_analogies(path)
  for restrict_vocab in (55, 60):
    result = analogy_accuracy(vectors, words, path, restrict_vocab=restrict_vocab)
    reference = _reference_analogies(vectors, words, sections, restrict_vocab)
    assert result["correct"] == sum(r[0] for r in reference) > 0
    assert result["questions"] == sum(r[1] for r in reference)
    assert result["oov_questions"] == sum(r[2] for r in reference)
    assert (result["oov_questions"] > 0) == (restrict_vocab == 55)
    for (name, _), (correct, attempted, _) in zip(sections, reference):
      assert result["sections"][name] == pytest.approx(correct / attempted)
    sem_correct, sem_attempted = map(sum, zip(*[r[:2] for r in reference[:2]]))
    assert result["semantic"] == pytest.approx(sem_correct / sem_attempted)
    assert result["syntactic"] == pytest.approx(reference[2][0] / reference[2][1])


@pytest.fixture(scope="module")
def structured_vocab():
  """~2100 words: the questions-words vocabulary lowercased, words of the pair files, fillers and
  capitalised near-copies of some words, in a random (frequency) order.

  Along each analogy section's word pairs, y = x + r_section + noise, so gensim gets about 40% of
  the questions right; the near-copies make a case variant of a, b or c the nearest word often,
  which gensim skips only among its top 5.
  """
  rng = np.random.default_rng(0)
  dim = 32
  sections, _ = read_analogies(datapath("questions-words.txt"))
  vecs = {}
  for _, questions in sections:
    relation = rng.normal(size=dim)
    for x, y in dict.fromkeys((a.lower(), b.lower()) for a, b, _, _ in questions):
      if x in vecs and y in vecs:
        continue
      if x in vecs:
        vecs[y] = vecs[x] + relation + 1.5 * rng.normal(size=dim)
      elif y in vecs:
        vecs[x] = vecs[y] - relation + 1.5 * rng.normal(size=dim)
      else:
        vecs[x] = rng.normal(size=dim)
        vecs[y] = vecs[x] + relation + 1.5 * rng.normal(size=dim)
  for name in ("wordsim353.tsv", "simlex999.txt"):
    pairs, _ = read_word_pairs(datapath(name))
    for n, (a, b, _) in enumerate(pairs):
      if n % 4:  # most pairs known, some not
        for w in (a.lower(), b.lower()):
          vecs.setdefault(w, rng.normal(size=dim))
  words = list(vecs) + [f"filler{i}" for i in range(2000 - len(vecs))]
  vectors = np.array([vecs[w] if w in vecs else rng.normal(size=dim) for w in words], np.float32)
  copies = np.arange(0, 400, 4)
  words += [words[i].capitalize() for i in copies]
  vectors = np.concatenate([vectors, vectors[copies] + 0.01 * rng.normal(size=(len(copies), dim)).astype(np.float32)])
  order = rng.permutation(len(words))
  vectors, words = vectors[order], [words[i] for i in order]
  keyed = KeyedVectors(dim)
  keyed.add_vectors(words, vectors)
  return vectors, words, keyed


@pytest.mark.parametrize("case_insensitive", [True, False])
def test_analogies_match_gensim(structured_vocab, case_insensitive):
  vectors, words, keyed = structured_vocab
  path = datapath("questions-words.txt")
  score, sections = keyed.evaluate_word_analogies(path, restrict_vocab=1500, case_insensitive=case_insensitive)
  result = analogy_accuracy(vectors, words, path, restrict_vocab=1500, case_insensitive=case_insensitive)
  total = sections.pop()
  assert result["total"] == score
  assert 0.2 < score < 0.8  # a mix of right and wrong answers, so agreement means something
  assert result["correct"] == len(total["correct"])
  assert result["questions"] == len(total["correct"]) + len(total["incorrect"])
  assert result["sections"] == {
    s["section"]: (
      len(s["correct"]) / (len(s["correct"]) + len(s["incorrect"])) if s["correct"] or s["incorrect"] else 0.0
    )
    for s in sections
  }
  semantic = [s for s in sections if not s["section"].startswith("gram")]
  assert len(semantic) == 5
  sem_correct = sum(len(s["correct"]) for s in semantic)
  assert result["semantic"] == sem_correct / sum(len(s["correct"]) + len(s["incorrect"]) for s in semantic)


@pytest.mark.parametrize("name", ["wordsim353.tsv", "simlex999.txt"])
def test_word_pairs_match_gensim(structured_vocab, name):
  vectors, words, keyed = structured_vocab
  pearson, spearman, oov_ratio = keyed.evaluate_word_pairs(datapath(name))
  result = similarity_spearman(vectors, words, datapath(name))
  assert result["spearman"] == pytest.approx(spearman.statistic, abs=1e-6)
  assert result["pearson"] == pytest.approx(pearson.statistic, abs=1e-6)
  assert result["oov_ratio"] == pytest.approx(oov_ratio, abs=1e-12)
  assert result["pairs"] > 20 and result["oov_pairs"] > 20
  assert result["malformed_lines"] == 0


def _average_ranks(x) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return np.array([np.sum(x < v) + (np.sum(x == v) + 1) / 2 for v in x])


def test_spearman_matches_float64_reference_with_ties(tmp_path):
  rng = np.random.default_rng(1)
  vectors = rng.normal(size=(12, 6)).astype(np.float32)
  words = [f"w{i}" for i in range(12)]
  pairs = [
    (0, 1, 3.0),
    (2, 3, 3.0),
    (4, 5, 7.5),
    (0, 1, 1.0),
    (6, 7, 3.0),
    (8, 9, 0.5),
    (10, 11, 7.5),
    (1, 4, 2.0),
    (3, 3, 9.0),
    (5, 10, 2.0),
  ]  # ties in both columns
  lines = ["# a comment", "# w0\tw1\t5"]
  lines += [f"{'W' if n % 3 == 0 else 'w'}{a}\tw{b}\t{s}" for n, (a, b, s) in enumerate(pairs)]
  lines += ["w0\tunknown\t4.0", "w0\tw1", "w0\tw1\tmuch", "w0\tw1\t1\textra", ""]
  path = _write(tmp_path, "pairs.tsv", "\n".join(lines) + "\n")

  result = similarity_spearman(vectors, words, path)
  v = vectors.astype(np.float64)
  model = [v[a] @ v[b] / np.linalg.norm(v[a]) / np.linalg.norm(v[b]) for a, b, _ in pairs]
  gold = [s for _, _, s in pairs]
  expected = np.corrcoef(_average_ranks(gold), _average_ranks(model))[0, 1]
  assert result["spearman"] == pytest.approx(expected, abs=1e-6)
  assert result["pearson"] == pytest.approx(np.corrcoef(gold, model)[0, 1], abs=1e-6)
  assert (result["pairs"], result["oov_pairs"]) == (10, 1)
  assert result["oov_ratio"] == pytest.approx(100 / 11)
  assert result["malformed_lines"] == 4  # the three bad lines and the blank one
  # Case-sensitive, the W-prefixed pairs are unknown.
  exact = similarity_spearman(vectors, words, path, case_insensitive=False)
  assert (exact["pairs"], exact["oov_pairs"]) == (6, 5)


def test_word_pair_files_checked(tmp_path):
  with pytest.raises(FileNotFoundError, match="missing.tsv"):
    read_word_pairs(tmp_path / "missing.tsv")
  with pytest.raises(ValueError, match="bad.tsv"):
    read_word_pairs(_write(tmp_path, "bad.tsv", "# only a comment\nw0 w1 5\n"))
  pairs, malformed = read_word_pairs(_write(tmp_path, "ok.tsv", "a\tb\t1.5\na b 2\n"))
  assert (pairs, malformed) == ([("a", "b", 1.5)], 1)
  vectors = np.eye(3, dtype=np.float32)
  result = similarity_spearman(vectors, ["x", "y", "z"], tmp_path / "ok.tsv")
  assert (result["pairs"], result["oov_pairs"], result["oov_ratio"]) == (0, 1, 100.0)
  assert math.isnan(result["spearman"])


def _pos_setup(tmp_path):
  """360 labelled words in a 400-word vocabulary (60% noun, 25% verb, 15% adj), in a file with
  a header, unlabelled vocabulary words and labelled words outside the vocabulary."""
  rng = np.random.default_rng(0)
  words = [f"word{i}" for i in range(400)]
  labels = rng.choice(["noun", "verb", "adj"], size=400, p=[0.6, 0.25, 0.15])
  lines = ["word\tpos"] + [f"{w}\t{p}" for w, p in zip(words[:360], labels)]
  lines += [f"other{i}\tadv" for i in range(30)]
  path = _write(tmp_path, "pos.tsv", "\n".join(lines) + "\n")
  return path, words, labels[:360]


def test_pos_probe_decodable_vs_random(tmp_path):
  path, words, labels = _pos_setup(tmp_path)
  assert read_pos_labels(path) == {**dict(zip(words[:360], labels)), **{f"other{i}": "adv" for i in range(30)}}
  rng = np.random.default_rng(1)
  classes = ["adj", "noun", "verb"]
  class_ids = np.array([classes.index(p) for p in labels] + [0] * 40)
  decodable = rng.normal(size=(400, 16)) + 5.0 * np.eye(16)[class_ids]
  result = pos_probe(decodable, words, path, seed=0)
  assert result["classes"] == classes and result["words"] == 360
  assert result["test_words"] == pytest.approx(0.3 * 360, abs=2)
  assert result["majority_baseline"] == pytest.approx(np.mean(labels == "noun"), abs=0.05)
  assert result["top1"] >= 0.95 > result["majority_baseline"]

  noise = pos_probe(rng.normal(size=(400, 16)), words, path, seed=0)
  assert noise["majority_baseline"] == result["majority_baseline"]  # same seeded split
  assert abs(noise["top1"] - noise["majority_baseline"]) < 0.15


def test_pos_files_checked(tmp_path):
  path, words, _ = _pos_setup(tmp_path)
  with pytest.raises(FileNotFoundError, match="none.tsv"):
    read_pos_labels(tmp_path / "none.tsv")
  with pytest.raises(ValueError, match="header.tsv"):
    read_pos_labels(_write(tmp_path, "header.tsv", "word\tpos\n"))
  # max_words=1: a single labelled word, so a single label.
  with pytest.raises(ValueError, match="pos.tsv"):
    pos_probe(np.zeros((400, 4)), words, path, max_words=1)


def test_nearest_neighbors():
  vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0], [2, 0.1]], np.float32)
  words = ["a", "b", "c", "d", "e"]
  result = nearest_neighbors(vectors, words, ["a", "zzz", "c"], k=2)
  assert list(result) == ["a", "c"]  # unknown queries left out
  assert [w for w, _ in result["a"]] == ["e", "b"]  # cosine, not distance; the query excluded
  assert result["a"][0][1] == pytest.approx(2 / math.hypot(2, 0.1))
  assert len(nearest_neighbors(vectors, words, ["d"], k=10)["d"]) == 4


def test_words_pca_plot(tmp_path):
  rng = np.random.default_rng(0)
  words = [w for pair in COUNTRY_CAPITAL_PAIRS for w in pair][:-1] + ["the", "of"]  # no cairo
  vectors = rng.normal(size=(len(words), 20))
  path, image = words_pca_plot(vectors, words, tmp_path / "sub" / "pca.png", title="PCA")
  assert path == str(tmp_path / "sub" / "pca.png")
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 4
  assert min(image.shape[:2]) >= 200 and image[..., :3].std() > 0
  np.testing.assert_array_equal(np.round(plt.imread(path) * 255).astype(np.uint8), image)
  assert not plt.get_fignums()  # the figure is closed

  four = ["china", "beijing", "japan", "tokyo"]
  with pytest.raises(ValueError, match="lisbon"):
    words_pca_plot(vectors[:4], four, tmp_path / "x.png", pairs=[("china", "beijing"), ("portugal", "lisbon")])
  assert not (tmp_path / "x.png").exists()
  path, _ = words_pca_plot(vectors[:4], four, tmp_path / "two.png", pairs=[("china", "beijing"), ("japan", "tokyo")])
  assert path.endswith("two.png")
