"""Plain-text corpora for word vectors: vocabulary, subsampling, negative-sampling and Huffman tables, and a
token stream whose batch `s` is a function of `s` alone.

The corpus is read once into one int32 array of word ids (lines keep their boundaries: windows never cross
them, as in gensim's LineSentence). The stream slices it; everything random (subsampling, reduced windows,
negatives) happens on device, keyed by the step. No tf.data here: the whole corpus is a 70 MB array, and
TensorFlow alone would triple the process's memory.
"""

from __future__ import annotations

import array
import bz2
import collections
import dataclasses
import glob
import gzip
import heapq
import itertools
import lzma
import os

import numpy as np

from ssljax import storage
from ssljax.data import DataError

HOW_TO_GET = (
  "point --config.data.path at plain-text file(s), one sentence or paragraph per line "
  "(comma-separated or a glob), or set data.path='' and data.name to a tfds text dataset"
)


@dataclasses.dataclass(frozen=True)
class Vocab:
  words: tuple[str, ...]  # by descending count, ties in order of first appearance (as gensim sorts)
  counts: np.ndarray  # (V,) int64

  def __len__(self) -> int:
    return len(self.words)

  def index(self) -> dict[str, int]:
    return {w: i for i, w in enumerate(self.words)}


@dataclasses.dataclass(frozen=True)
class Corpus:
  vocab: Vocab
  tokens: np.ndarray  # (N,) int32 word ids; words below min_count are dropped, as word2vec does
  line_starts: np.ndarray  # (N,) bool, True at the first kept token of each line
  raw_tokens: int  # before dropping rare words
  undecodable_lines: int  # lines with bytes that are not UTF-8 (decoded with U+FFFD)


def corpus_paths(path: str) -> list[str]:
  """`path` is a file, a glob, or several of either separated by commas."""
  out = []
  for part in filter(None, (p.strip() for p in path.split(","))):
    matches = sorted(glob.glob(part)) if any(c in part for c in "*?[") else [part]
    if not matches:
      raise DataError(f"data.path={part}: no file matches; {HOW_TO_GET}")
    for m in matches:
      if not os.path.isfile(m):
        raise DataError(f"data.path={m}: no such file; {HOW_TO_GET}")
    out += matches
  if not out:
    raise DataError(f"data.path is empty; {HOW_TO_GET}")
  return out


def _open(path: str):
  opener = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}.get(os.path.splitext(path)[1], open)
  return opener(path, "rb")


def _lines(paths: list[str], lowercase: bool, bad: list[int]):
  """Token lists, one per non-empty line; `bad[0]` counts lines that needed replacement characters."""
  for path in paths:
    with _open(path) as f:
      for raw in f:
        try:
          line = raw.decode("utf-8")
        except UnicodeDecodeError:
          line = raw.decode("utf-8", errors="replace")
          bad[0] += 1
        words = (line.lower() if lowercase else line).split()
        if words:
          yield words


def build_vocab(counter: collections.Counter, min_count: int, max_vocab: int = 0) -> Vocab:
  """Words seen at least `min_count` times, most frequent first (stable: Counter keeps first-seen order)."""
  items = [(w, c) for w, c in counter.items() if c >= min_count]
  items.sort(key=lambda wc: -wc[1])
  if max_vocab:
    items = items[:max_vocab]
  return Vocab(tuple(w for w, _ in items), np.asarray([c for _, c in items], np.int64))


def _kept_tokens_and_line_starts(ids: array.array, lengths: array.array) -> tuple[np.ndarray, np.ndarray]:
  """Ids of whole lines (-1 for rare words) -> the kept ids and a flag on each line's first kept one.
  Done per ~1M tokens, so no per-line arrays are ever made."""
  raw = np.frombuffer(ids, np.int32)
  line = np.repeat(np.arange(len(lengths), dtype=np.int32), np.frombuffer(lengths, np.int32))
  keep = raw >= 0
  kept_line = line[keep]
  starts = np.ones(len(kept_line), bool)
  starts[1:] = kept_line[1:] != kept_line[:-1]
  return raw[keep], starts


def read_corpus(
  path: str, *, min_count: int, max_vocab: int = 0, lowercase: bool = False, min_vocab: int = 2
) -> Corpus:
  """Two passes over the file(s): count words, then encode them as ids of the kept vocabulary."""
  paths = corpus_paths(path)
  bad = [0]
  counter: collections.Counter = collections.Counter()
  for words in _lines(paths, lowercase, bad):
    counter.update(words)
  raw_tokens = sum(counter.values())
  if not raw_tokens:
    raise DataError(f"data.path={path}: the corpus has no words; {HOW_TO_GET}")
  vocab = build_vocab(counter, min_count, max_vocab)
  if len(vocab) < min_vocab:
    raise DataError(
      f"data.min_count={min_count} keeps {len(vocab)} distinct words of {len(counter)} in "
      f"{path}; at least {min_vocab} are needed: lower min_count or use a larger corpus"
    )
  del counter
  ids, missing = vocab.index(), itertools.repeat(-1)
  bad = [0]
  chunks = []
  buffer, lengths = array.array("i"), array.array("i")
  for words in _lines(paths, lowercase, bad):
    buffer.extend(map(ids.get, words, missing))
    lengths.append(len(words))
    if len(buffer) >= 1 << 20:
      chunks.append(_kept_tokens_and_line_starts(buffer, lengths))
      buffer, lengths = array.array("i"), array.array("i")
  chunks.append(_kept_tokens_and_line_starts(buffer, lengths))
  tokens = np.concatenate([t for t, _ in chunks])
  line_starts = np.concatenate([s for _, s in chunks])
  return Corpus(vocab, tokens, line_starts, raw_tokens, bad[0])


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
  """word2vec's subsampling: keep a word of count c with probability (sqrt(c / t) + 1) * t / c, capped
  at 1, where t = sample * total count (gensim's formula; `sample <= 0` keeps everything)."""
  counts = np.asarray(counts, np.float64)
  if sample <= 0:
    return np.ones(len(counts), np.float32)
  threshold = sample * counts.sum()
  return np.minimum((np.sqrt(counts / threshold) + 1) * threshold / counts, 1.0).astype(np.float32)


def negative_alias_table(counts: np.ndarray, exponent: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
  """Walker's alias table of the unigram^exponent distribution (Vose's construction).

  A draw is two lookups: i uniform over the vocabulary, then i if u < accept[i] else alias[i]. A binary search
  of the cumulative distribution (gensim's way) is 17 dependent gathers per draw on a 100k vocabulary.
  """
  weights = np.asarray(counts, np.float64) ** exponent
  scaled = weights * (len(weights) / weights.sum())
  accept = np.ones(len(weights))
  alias = np.arange(len(weights), dtype=np.int32)
  small = [i for i in range(len(weights)) if scaled[i] < 1.0]
  large = [i for i in range(len(weights)) if scaled[i] >= 1.0]
  while small and large:
    s, l = small.pop(), large.pop()
    accept[s], alias[s] = scaled[s], l
    scaled[l] -= 1.0 - scaled[s]
    (small if scaled[l] < 1.0 else large).append(l)
  return accept.astype(np.float32), alias  # what is left over is 1 up to rounding: accept stays 1


def huffman_tree(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """word2vec's Huffman coding of the vocabulary for hierarchical softmax.

  Returns `codes` (V, L) uint8 bits from the root, `points` (V, L) int32 inner-node ids (0..V-2, the
  rows of the output table) on the path from the root, and `lengths` (V,) int32; L is the longest code.
  """
  n = len(counts)
  if n < 2:
    raise DataError("hierarchical softmax needs at least 2 words in the vocabulary")
  heap = [(int(c), i) for i, c in enumerate(counts)]
  heapq.heapify(heap)
  parent = np.zeros(2 * n - 1, np.int64)
  bit = np.zeros(2 * n - 1, np.uint8)
  for node in range(n, 2 * n - 1):
    (c1, a), (c2, b) = heapq.heappop(heap), heapq.heappop(heap)
    parent[a], parent[b], bit[b] = node, node, 1
    heapq.heappush(heap, (c1 + c2, node))
  root = 2 * n - 2
  paths = []
  for word in range(n):
    codes, points, node = [], [], word
    while node != root:
      codes.append(bit[node])
      points.append(parent[node] - n)  # inner nodes n..2n-2 -> output rows 0..n-2
      node = parent[node]
    paths.append((codes[::-1], points[::-1]))
  length = max(len(c) for c, _ in paths)
  codes = np.zeros((n, length), np.uint8)
  points = np.zeros((n, length), np.int32)
  lengths = np.zeros(n, np.int32)
  for word, (c, p) in enumerate(paths):
    codes[word, : len(c)], points[word, : len(p)], lengths[word] = c, p, len(c)
  return codes, points, lengths


@dataclasses.dataclass(frozen=True)
class TokenData:
  """The engine's view of a corpus: epochs of consecutive `batch_size`-token slices, in corpus order."""

  corpus: Corpus

  @property
  def num_examples(self) -> int:
    return len(self.corpus.tokens)

  def steps_per_epoch(self, batch_size: int) -> int:
    return -(-self.num_examples // batch_size)  # the last slice is padded

  def example_batch(self, batch_size: int) -> dict:
    return {"tokens": np.zeros(batch_size, np.int32), "line_starts": np.zeros(batch_size, bool)}

  def batch(self, step: int, batch_size: int, process_index: int = 0, process_count: int = 1) -> dict:
    """Process `process_index`'s contiguous share of global batch `step`; padding tokens are -1."""
    local = batch_size // process_count
    start = (step % self.steps_per_epoch(batch_size)) * batch_size + process_index * local
    tokens = np.full(local, -1, np.int32)
    starts = np.zeros(local, bool)
    piece = self.corpus.tokens[start : start + local]
    tokens[: len(piece)] = piece
    starts[: len(piece)] = self.corpus.line_starts[start : start + local]
    return {"tokens": tokens, "line_starts": starts}

  def stream(self, *, batch_size: int, seed: int, start_step: int, process_index: int = 0, process_count: int = 1):
    del seed  # corpus order, as word2vec; the randomness is on device
    if batch_size % process_count:
      raise DataError(f"batch_size={batch_size} is not divisible by the {process_count} processes")
    step = start_step
    while True:
      yield self.batch(step, batch_size, process_index, process_count)
      step += 1


def load_token_data(data_config) -> TokenData:
  """The corpus the config names: plain-text file(s) at `data.path`, or a tfds text dataset."""
  kwargs = dict(min_count=data_config.min_count, max_vocab=data_config.max_vocab, lowercase=data_config.lowercase)
  if data_config.path:
    return TokenData(read_corpus(data_config.path, **kwargs))
  return TokenData(_read_tfds_corpus(data_config, **kwargs))


def _read_tfds_corpus(data_config, **kwargs) -> Corpus:
  """Writes the tfds split's text feature to a plain-text file once, then reads it as any corpus."""
  import tempfile

  import tensorflow_datasets as tfds  # lazy: tensorflow is heavy

  try:
    ds = tfds.load(data_config.name, split=data_config.train_split)
  except Exception as e:  # tfds raises many types for "not there and cannot download"
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise DataError(f"tfds could not load '{data_config.name}' ({first[:160]}); {HOW_TO_GET}") from None
  with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
    for example in tfds.as_numpy(ds):
      f.write(example[data_config.text_feature].replace(b"\n", b" ") + b"\n")
  try:
    return read_corpus(f.name, **kwargs)
  finally:
    os.unlink(f.name)


def write_word2vec_format(path: str, words, vectors: np.ndarray, *, binary: bool) -> None:
  """The word2vec.c format every tool reads (gensim's `KeyedVectors.load_word2vec_format`): a header
  `V D`, then one word per line followed by its vector as text or as little-endian float32 bytes.

  Written whole or not at all (`storage.open_atomic`), so a file at `path` is always complete.
  """
  vectors = np.asarray(vectors, np.float32)
  if len(words) != len(vectors):
    raise ValueError(f"{len(words)} words but {len(vectors)} vectors")
  for word in words:
    if not word or any(c.isspace() for c in word):
      raise ValueError(f"word {word!r} is empty or has whitespace; the word2vec format cannot hold it")
  with storage.open_atomic(path, "wb") as f:
    f.write(f"{len(words)} {vectors.shape[1]}\n".encode())
    if binary:
      little = vectors.astype("<f4")
      for word, row in zip(words, little):
        f.write(word.encode("utf-8") + b" " + row.tobytes() + b"\n")
    else:
      for word, row in zip(words, vectors):
        f.write((word + " " + " ".join(f"{x:.6g}" for x in row) + "\n").encode("utf-8"))
