"""WordPiece tokenizer (BERT's subword vocabulary): trained on the cased corpus, saved beside the checkpoint.

Training and encoding run in Hugging Face `tokenizers` (Rust, parallel); `ssljax.data.lm` calls the encoder
from its tf.data pipeline. The saved directory holds `tokenizer.json` (everything needed to encode) and a
BERT-style `vocab.txt` (one token per line, the id is the line number), which other tools read too.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence

import numpy as np

from ssljax import storage
from ssljax.data import DataError

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)  # ids 0..4, in this order: models may rely on it
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(len(SPECIAL_TOKENS))
FILES = ("tokenizer.json", "vocab.txt")


class WordPiece:
  """A trained WordPiece vocabulary. `ids` of the special tokens are attributes: `pad_id`, `cls_id`, ..."""

  def __init__(self, tokenizer):
    self._tok = tokenizer
    vocab = tokenizer.get_vocab()
    wrong = [f"{t} (id {vocab.get(t)})" for i, t in enumerate(SPECIAL_TOKENS) if vocab.get(t) != i]
    if wrong:
      raise DataError(f"tokenizer must have {', '.join(SPECIAL_TOKENS)} as ids 0-4; not so for {', '.join(wrong)}")
    self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = range(len(SPECIAL_TOKENS))
    self.vocab_size = tokenizer.get_vocab_size()

  @property
  def vocab(self) -> list[str]:
    """Tokens by id."""
    by_id = sorted(self._tok.get_vocab().items(), key=lambda kv: kv[1])
    return [token for token, _ in by_id]

  @property
  def fingerprint(self) -> str:
    """sha256 of the vocabulary, to tell a checkpoint's tokenizer from another."""
    return hashlib.sha256("\n".join(self.vocab).encode()).hexdigest()[:16]

  def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
    """Token ids of each text, without special tokens."""
    return [np.asarray(e.ids, np.int32) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

  def encode(self, text: str) -> np.ndarray:
    return self.encode_batch([text])[0]

  def tokens(self, text: str) -> list[str]:
    return self._tok.encode(text, add_special_tokens=False).tokens

  def decode(self, ids: Iterable[int]) -> str:
    return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

  def save(self, directory: str) -> None:
    """Writes both files next to each other, each atomically (a crash leaves no half-written vocabulary)."""
    directory = storage.path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with storage.open_atomic(directory / "tokenizer.json", "w") as f:
      f.write(self._tok.to_str())
    with storage.open_atomic(directory / "vocab.txt", "w") as f:
      f.write("\n".join(self.vocab) + "\n")


def pad_rows(rows: Sequence[Sequence[int]]) -> np.ndarray:
  """Rows of token ids of different lengths -> one (N, longest) int32 array, [PAD] after each row."""
  out = np.full((len(rows), max(map(len, rows), default=1)), PAD_ID, np.int32)
  for i, row in enumerate(rows):
    out[i, : len(row)] = row
  return out


def load(directory: str) -> WordPiece:
  from tokenizers import Tokenizer

  path = storage.path(directory) / "tokenizer.json"
  if not path.is_file():
    raise DataError(f"no tokenizer in {directory}: {path} is missing")
  try:
    return WordPiece(Tokenizer.from_str(path.read_text()))
  except Exception as e:  # the Rust side raises its own exception type
    raise DataError(f"{path} is not a tokenizer file: {str(e).splitlines()[0]}") from None


def train(texts: Iterable[str], *, vocab_size: int, min_frequency: int = 2, lowercase: bool = False) -> WordPiece:
  """A WordPiece vocabulary of at most `vocab_size` tokens, special tokens first.

  BERT's text cleanup and pre-tokenization (whitespace and punctuation split, CJK characters apart); cased
  unless `lowercase`, accents kept (BERT-cased does the same). Continuation pieces start with '##'.
  """
  from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

  if vocab_size <= len(SPECIAL_TOKENS) + 1:
    raise ValueError(f"vocab_size={vocab_size} leaves no room beyond the {len(SPECIAL_TOKENS)} special tokens")
  tok = Tokenizer(models.WordPiece(unk_token=UNK, continuing_subword_prefix="##"))
  tok.normalizer = normalizers.BertNormalizer(
    clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=lowercase
  )
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.decoder = decoders.WordPiece(prefix="##")
  trainer = trainers.WordPieceTrainer(
    vocab_size=vocab_size,
    min_frequency=min_frequency,
    special_tokens=list(SPECIAL_TOKENS),
    continuing_subword_prefix="##",
    show_progress=False,
  )
  tok.train_from_iterator(texts, trainer=trainer)
  return WordPiece(tok)


def load_or_train(
  directory: str, texts: Sequence[str], *, vocab_size: int, save: bool = True, lowercase: bool = False
) -> WordPiece:
  """The tokenizer saved in `directory` (a resumed run), else one trained on `texts` and saved there.

  The saved one is what makes a run reproducible: WordPiece training may break ties between equally frequent
  merges differently from one process to the next (huggingface/tokenizers#1794), so a resumed run, another
  host, or the demo must read the file rather than train again.
  """
  if (storage.path(directory) / "tokenizer.json").is_file():
    tok = load(directory)
    if tok.vocab_size != vocab_size:
      raise DataError(
        f"the tokenizer in {directory} has {tok.vocab_size} tokens but data.vocab_size="
        f"{vocab_size}: use the same vocab_size or a new workdir"
      )
    return tok
  tok = train(texts, vocab_size=vocab_size, lowercase=lowercase)
  if save:
    tok.save(directory)
  return tok


def for_run(
  workdir: str | None, texts: Sequence[str], *, vocab_size: int, lowercase: bool = False, save: bool = True
) -> WordPiece:
  """A run's tokenizer: `workdir/tokenizer` if it is there, else trained on `texts` and saved there by the process
  that `save`s (process 0); the others wait for it (`sharding.agree`, which also hands them its error, so none
  waits forever for a file that will not come), then read the file. Without a workdir, trained and kept in memory."""
  from ssljax import sharding

  if not workdir:
    return train(texts, vocab_size=vocab_size, lowercase=lowercase)
  directory = os.fspath(storage.path(workdir) / "tokenizer")
  trained_here = lambda: load_or_train(directory, texts, vocab_size=vocab_size, lowercase=lowercase) if save else None
  tok = sharding.agree(trained_here, "training the tokenizer")
  if tok is None:
    tok = load_or_train(directory, texts, vocab_size=vocab_size, save=False, lowercase=lowercase)
  return tok
