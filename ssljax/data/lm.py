"""Cased text for language models: documents of paragraphs, a held-out split, WordPiece ids, and batches.

A source is one plain-text file (`.txt`, `.txt.xz`, `.txt.gz`): paragraphs separated by blank lines, in
document order (BERT's next-sentence pairs need that order; the fine-tuning task asks which source a paragraph
comes from). Every `valid_every`-th paragraph of each source is held out, so the validation text covers every
source and nothing of it is trained on, the tokenizer included.

Tokenization runs in a tf.data pipeline (batches of paragraphs through the Rust WordPiece encoder, in
parallel); the ids of a split then live in one int32 array with paragraph offsets, and training batches are
seeded permutations of fixed-length chunks of it, so batch `s` is a function of `s` alone.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re

import numpy as np

from ssljax.data import DataError, wordpiece
from ssljax.data import text as text_data

HOW_TO_GET = (
  "point --config.data.path at a directory of plain-text files (.txt, .txt.xz, .txt.gz; paragraphs "
  "separated by blank lines), e.g. the 20 sources `make corpus` leaves in data/text/raw"
)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")


@dataclasses.dataclass(frozen=True)
class Documents:
  sources: tuple[str, ...]  # one name per source file
  paragraphs: tuple[tuple[str, ...], ...]  # per source, in document order, whitespace collapsed
  undecodable_bytes: int = 0  # bytes that were not UTF-8 (replaced with U+FFFD)

  def all_paragraphs(self) -> list[str]:
    return [p for ps in self.paragraphs for p in ps]


def source_files(path: str) -> list[str]:
  """A directory (its .txt / .txt.xz / .txt.gz files), or files and globs separated by commas."""
  if os.path.isdir(path):
    files = sorted(f for ext in ("*.txt", "*.txt.xz", "*.txt.gz") for f in glob.glob(os.path.join(path, ext)))
    if not files:
      raise DataError(f"data.path={path}: no .txt, .txt.xz or .txt.gz files in it; {HOW_TO_GET}")
    return files
  if not path:
    raise DataError(f"data.path is empty; {HOW_TO_GET}")
  for part in filter(None, (p.strip() for p in path.split(","))):
    if not any(c in part for c in "*?[") and not os.path.isfile(part):
      raise DataError(f"data.path: {part}: no such file or directory; {HOW_TO_GET}")
  try:
    return text_data.corpus_paths(path)
  except DataError:
    raise DataError(f"data.path={path}: no file matches; {HOW_TO_GET}") from None


def _source_name(path: str) -> str:
  name = os.path.basename(path)
  for ext in (".xz", ".gz", ".bz2"):
    name = name.removesuffix(ext)
  return name.removesuffix(".txt")


def read_documents(path: str, *, max_paragraphs: int = 0) -> Documents:
  """Reads every source; `max_paragraphs` > 0 keeps the first N paragraphs of each (tests, small presets)."""
  names, paragraphs, bad = [], [], 0
  for f in source_files(path):
    with text_data._open(f) as fh:
      raw = fh.read()
    try:
      text = raw.decode("utf-8")
    except UnicodeDecodeError:  # decoded with replacement, counted and reported, as word2vec's reader does
      text = raw.decode("utf-8", errors="replace")
      bad += text.count("\ufffd") - raw.decode("utf-8", errors="ignore").count("\ufffd")
    ps = tuple(p for p in (" ".join(block.split()) for block in _PARAGRAPH_BREAK.split(text)) if p)
    if not ps:
      raise DataError(f"{f} is empty: a source needs at least one paragraph; remove it or fill it")
    names.append(_source_name(f))
    paragraphs.append(ps[:max_paragraphs] if max_paragraphs else ps)
  if len(set(names)) != len(names):
    raise DataError(f"data.path={path}: two sources share a name ({', '.join(sorted(names))})")
  return Documents(tuple(names), tuple(paragraphs), bad)


def split(docs: Documents, valid_every: int) -> tuple[Documents, Documents]:
  """(train, valid): paragraph k of each source is held out when k % valid_every == valid_every - 1."""
  if valid_every < 2:
    raise DataError(f"data.valid_every={valid_every} must be >= 2 (1 would hold out everything)")
  train = tuple(tuple(p for k, p in enumerate(ps) if k % valid_every != valid_every - 1) for ps in docs.paragraphs)
  valid = tuple(tuple(p for k, p in enumerate(ps) if k % valid_every == valid_every - 1) for ps in docs.paragraphs)
  if not any(valid):
    raise DataError(f"data.valid_every={valid_every} holds out nothing: every source has fewer paragraphs")
  return Documents(docs.sources, train, docs.undecodable_bytes), Documents(docs.sources, valid, 0)


@dataclasses.dataclass(frozen=True)
class TokenizedDocs:
  """A split's WordPiece ids: paragraph i is ids[offsets[i]:offsets[i + 1]], from source `source[i]`."""

  ids: np.ndarray  # (N,) int32, no special tokens
  offsets: np.ndarray  # (P + 1,) int64
  source: np.ndarray  # (P,) int32 index into `sources`
  sources: tuple[str, ...]

  @property
  def num_paragraphs(self) -> int:
    return len(self.source)

  def paragraph(self, i: int) -> np.ndarray:
    return self.ids[self.offsets[i] : self.offsets[i + 1]]

  def paragraphs(self) -> list[np.ndarray]:
    return np.split(self.ids, self.offsets[1:-1])


def tokenize(docs: Documents, tokenizer: wordpiece.WordPiece, *, batch_paragraphs: int = 2048) -> TokenizedDocs:
  """All paragraphs through the tokenizer in a tf.data pipeline, in order."""
  import tensorflow as tf  # lazy: tensorflow is heavy

  texts = docs.all_paragraphs()
  source = np.repeat(np.arange(len(docs.sources), dtype=np.int32), [len(ps) for ps in docs.paragraphs])

  def encode(batch):
    ids = tokenizer.encode_batch([b.decode("utf-8") for b in batch])
    return (np.concatenate(ids) if ids else np.zeros(0, np.int32)), np.asarray([len(i) for i in ids], np.int64)

  ds = tf.data.Dataset.from_tensor_slices(tf.constant(texts, tf.string)).batch(batch_paragraphs)
  ds = ds.map(
    lambda b: tf.numpy_function(encode, [b], (tf.int32, tf.int64), stateful=False),
    num_parallel_calls=tf.data.AUTOTUNE,
    deterministic=True,
  )
  ids, lengths = [], []
  for i, n in ds.as_numpy_iterator():
    ids.append(i)
    lengths.append(n)
  lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  return TokenizedDocs(np.concatenate(ids) if ids else np.zeros(0, np.int32), offsets, source, docs.sources)


def stream_with_boundaries(docs: TokenizedDocs, *, cls_id: int, sep_id: int) -> np.ndarray:
  """The split as one stream: [CLS] paragraph [SEP] [CLS] paragraph [SEP] ... ([SEP] ends a paragraph)."""
  lengths = np.diff(docs.offsets)
  out = np.empty(len(docs.ids) + 2 * len(lengths), np.int32)
  starts = docs.offsets[:-1] + 2 * np.arange(len(lengths))  # where each paragraph's [CLS] goes
  out[starts] = cls_id
  out[starts + lengths + 1] = sep_id
  body = np.ones(len(out), bool)
  body[starts] = False
  body[starts + lengths + 1] = False
  out[body] = docs.ids
  return out


def _epoch_batches(
  num_rows: int, gather, *, batch_size: int, seed: int, start_step: int, process_index: int, process_count: int
):
  """Global batch s of epoch e is rows perm_e[s * batch_size:(s + 1) * batch_size], perm_e seeded by
  (seed, e); process p takes its contiguous slice. `gather(rows)` builds the batch dict in TensorFlow."""
  import tensorflow as tf  # lazy: tensorflow is heavy

  if batch_size % process_count:
    raise DataError(f"batch_size={batch_size} is not divisible by the {process_count} processes")
  spe, local = _steps_per_epoch(num_rows, batch_size), batch_size // process_count
  first_epoch, skip = divmod(start_step, spe)

  def epoch_batches(epoch):
    perm = tf.random.experimental.stateless_shuffle(tf.range(num_rows, dtype=tf.int64), seed=tf.stack([seed, epoch]))
    rows = tf.reshape(perm[: spe * batch_size], [spe, batch_size])
    return tf.data.Dataset.from_tensor_slices(rows[:, process_index * local : (process_index + 1) * local])

  ds = tf.data.Dataset.counter(first_epoch).flat_map(epoch_batches).skip(skip)
  ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.prefetch(2).as_numpy_iterator()


def _steps_per_epoch(num_rows: int, batch_size: int) -> int:
  if num_rows < batch_size:
    raise DataError(
      f"the training text makes {num_rows} examples, fewer than batch_size={batch_size}: "
      "use more text or a smaller batch_size"
    )
  return num_rows // batch_size


@dataclasses.dataclass(frozen=True)
class ChunkStream:
  """Training batches of `length + 1` consecutive stream tokens (inputs and their next-token targets).

  Chunk c is tokens [c * length, c * length + length + 1): consecutive chunks share one token, so every token
  of the stream is a target once per epoch.
  """

  tokens: np.ndarray  # (N,) int32
  length: int

  @property
  def num_examples(self) -> int:
    return (len(self.tokens) - 1) // self.length

  def steps_per_epoch(self, batch_size: int) -> int:
    return _steps_per_epoch(self.num_examples, batch_size)

  def example_batch(self, batch_size: int) -> dict:
    return {"tokens": np.zeros((batch_size, self.length + 1), np.int32)}

  def stream(self, *, batch_size: int, seed: int, start_step: int, process_index: int = 0, process_count: int = 1):
    import tensorflow as tf

    tokens, length = tf.constant(self.tokens), self.length

    def gather(chunks):
      index = chunks[:, None] * length + tf.range(length + 1, dtype=tf.int64)[None, :]
      return {"tokens": tf.gather(tokens, index)}

    return _epoch_batches(
      self.num_examples,
      gather,
      batch_size=batch_size,
      seed=seed,
      start_step=start_step,
      process_index=process_index,
      process_count=process_count,
    )


@dataclasses.dataclass(frozen=True)
class RowStream:
  """Training batches of rows of fixed-size example arrays (all with the same first dimension)."""

  arrays: dict  # name -> (N, ...) array

  @property
  def num_examples(self) -> int:
    return len(next(iter(self.arrays.values())))

  def steps_per_epoch(self, batch_size: int) -> int:
    return _steps_per_epoch(self.num_examples, batch_size)

  def example_batch(self, batch_size: int) -> dict:
    return {k: np.zeros((batch_size,) + v.shape[1:], v.dtype) for k, v in self.arrays.items()}

  def stream(self, *, batch_size: int, seed: int, start_step: int, process_index: int = 0, process_count: int = 1):
    import tensorflow as tf

    arrays = {k: tf.constant(v) for k, v in self.arrays.items()}
    return _epoch_batches(
      self.num_examples,
      lambda rows: {k: tf.gather(v, rows) for k, v in arrays.items()},
      batch_size=batch_size,
      seed=seed,
      start_step=start_step,
      process_index=process_index,
      process_count=process_count,
    )


def _pieces(docs: TokenizedDocs, max_piece: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Paragraphs cut into pieces of at most `max_piece` tokens: (start, end, source) per piece, in order."""
  starts, ends, sources = [], [], []
  for i in range(docs.num_paragraphs):
    a, b = int(docs.offsets[i]), int(docs.offsets[i + 1])
    cuts = list(range(a, b, max_piece)) or [a]
    starts += cuts
    ends += cuts[1:] + [b]
    sources += [int(docs.source[i])] * len(cuts)
  return np.asarray(starts), np.asarray(ends), np.asarray(sources)


def next_segment_examples(
  docs: TokenizedDocs,
  *,
  max_len: int,
  seed: int,
  cls_id: int,
  sep_id: int,
  pad_id: int = 0,
  short_seq_prob: float = 0.1,
) -> dict:
  """BERT's pre-training pairs: [CLS] A [SEP] B [SEP], filled up to `max_len`, B the text that follows A
  in its source for half the pairs and a segment from a random place in the corpus for the other half.

  As in BERT's create_pretraining_data, consecutive units of a source (here paragraphs, cut into pieces of at
  most (max_len - 3) / 2 tokens when longer) fill a chunk up to the target length, A is the chunk's first
  units, and units that a random B displaced are read again for the next pair. 10% of pairs aim shorter, so
  the model also sees short inputs. Returns int32 arrays tokens, segments (N, max_len), is_next (N,).
  """
  if max_len < 8:
    raise DataError(f"max_len={max_len} is too short for [CLS] A [SEP] B [SEP] pairs")
  rng = np.random.default_rng(seed)
  budget = max_len - 3
  starts, ends, sources = _pieces(docs, max(budget // 2, 1))
  n, ids = len(starts), docs.ids
  out_tokens, out_segments, out_next = [], [], []
  i = 0
  while i < n:
    target = budget if rng.random() >= short_seq_prob else int(rng.integers(2, budget + 1))
    chunk, length = [], 0
    while i < n and (not chunk or (length < target and sources[i] == sources[chunk[0]])):
      chunk.append(i)
      length += ends[i] - starts[i]
      i += 1
    if len(chunk) < 2 and (i >= n or sources[i] != sources[chunk[0]]):
      continue  # a lone unit at the end of a source: no true next to pair it with
    a_units = int(rng.integers(1, len(chunk))) if len(chunk) > 1 else 1
    a = np.concatenate([ids[starts[u] : ends[u]] for u in chunk[:a_units]])
    if rng.random() < 0.5:
      is_next = 0
      j = int(rng.integers(0, n))
      while j == chunk[-1] + 1 and n > 1:  # not the true next unit
        j = int(rng.integers(0, n))
      b_parts, b_len = [], 0
      while j < n and b_len < target - len(a):
        b_parts.append(ids[starts[j] : ends[j]])
        b_len += ends[j] - starts[j]
        j += 1
      b = np.concatenate(b_parts) if b_parts else ids[starts[0] : ends[0]]
      i -= len(chunk) - a_units  # the units B did not use come back
    else:
      is_next = 1
      if len(chunk) > 1:
        b = np.concatenate([ids[starts[u] : ends[u]] for u in chunk[a_units:]])
      else:  # B is the unit after the chunk, in the same source
        b = ids[starts[i] : ends[i]]
        i += 1
    while len(a) + len(b) > budget:  # trim the longer side, at a random end (BERT's truncate_seq_pair)
      if len(a) >= len(b):
        a = a[1:] if rng.random() < 0.5 else a[:-1]
      else:
        b = b[1:] if rng.random() < 0.5 else b[:-1]
    if not len(a) or not len(b):
      continue
    row = np.full(max_len, pad_id, np.int32)
    seg = np.zeros(max_len, np.int32)
    pair = np.concatenate([[cls_id], a, [sep_id], b, [sep_id]])
    row[: len(pair)] = pair
    seg[len(a) + 2 : len(pair)] = 1
    out_tokens.append(row)
    out_segments.append(seg)
    out_next.append(is_next)
  if not out_tokens:
    raise DataError("the text makes no sentence pairs: each source needs at least two paragraphs")
  return {"tokens": np.stack(out_tokens), "segments": np.stack(out_segments), "is_next": np.asarray(out_next, np.int32)}


@dataclasses.dataclass(frozen=True)
class TokenizedCorpus:
  tokenizer: wordpiece.WordPiece
  train: TokenizedDocs
  valid: TokenizedDocs
  undecodable_bytes: int


def load_corpus(data_config, workdir: str | None, *, save_tokenizer: bool = True) -> TokenizedCorpus:
  """Reads and splits the sources, loads the run's tokenizer from `workdir/tokenizer` or trains and saves
  it there (on the training split only), and tokenizes both splits."""
  docs = read_documents(data_config.path, max_paragraphs=data_config.max_paragraphs)
  train_docs, valid_docs = split(docs, data_config.valid_every)
  tok = wordpiece.for_run(
    workdir,
    train_docs.all_paragraphs(),
    vocab_size=data_config.vocab_size,
    lowercase=data_config.lowercase,
    save=save_tokenizer,
  )
  out = TokenizedCorpus(tok, tokenize(train_docs, tok), tokenize(valid_docs, tok), docs.undecodable_bytes)
  print(
    f"text: {len(docs.sources)} sources, {out.train.num_paragraphs} + {out.valid.num_paragraphs} paragraphs, "
    f"{len(out.train.ids)} + {len(out.valid.ids)} WordPiece tokens (train + valid), vocabulary "
    f"{tok.vocab_size}"
    + (f"; {docs.undecodable_bytes} bytes were not UTF-8 (replaced with U+FFFD)" if docs.undecodable_bytes else ""),
    flush=True,
  )
  return out


@dataclasses.dataclass(frozen=True)
class TextTrainData:
  """The engine's view of a text run: the batches it trains on, and the tokenized corpus its evals read."""

  corpus: TokenizedCorpus
  batches: ChunkStream | RowStream

  def steps_per_epoch(self, batch_size: int) -> int:
    return self.batches.steps_per_epoch(batch_size)

  def example_batch(self, batch_size: int) -> dict:
    return self.batches.example_batch(batch_size)

  def stream(self, **kwargs):
    return self.batches.stream(**kwargs)
