"""Cased text for language models: sources, the held-out split, WordPiece, tf.data tokenization, batches."""

import lzma
import os

import numpy as np
import pytest

from ssljax.data import DataError, lm, wordpiece

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = os.path.join(ROOT, "tests", "data", "lm")


def _write(path, text, mode="w"):
  with (lzma.open if str(path).endswith(".xz") else open)(path, mode) as f:
    f.write(text)


def test_paragraphs_are_blank_line_separated_and_whitespace_collapsed(tmp_path):
  _write(tmp_path / "b.txt", "First  line\nwrapped here.\n\n\n  Second.\n \nThird\tone.\n")
  _write(tmp_path / "a.txt.xz", b"Alpha.\n\nBeta.", "wb")
  docs = lm.read_documents(str(tmp_path))
  assert docs.sources == ("a", "b")
  assert docs.paragraphs == (("Alpha.", "Beta."), ("First line wrapped here.", "Second.", "Third one."))
  assert docs.undecodable_bytes == 0


def test_undecodable_bytes_are_replaced_and_counted(tmp_path):
  (tmp_path / "a.txt").write_bytes(b"caf\xe9 ok\n\nfine \xff\xfe.\n")
  docs = lm.read_documents(str(tmp_path))
  assert docs.undecodable_bytes == 3 and docs.paragraphs[0][0] == "caf\ufffd ok"


@pytest.mark.parametrize(
  "make, words",
  [
    (lambda d: None, "no .txt"),
    (lambda d: (d / "empty.txt").write_text("\n \n\n"), "empty.txt is empty"),
  ],
)
def test_bad_sources_are_refused_by_name(tmp_path, make, words):
  make(tmp_path)
  with pytest.raises(DataError, match=words):
    lm.read_documents(str(tmp_path))
  with pytest.raises(DataError, match="/nonexistent"):
    lm.read_documents("/nonexistent/dir")


def test_every_kth_paragraph_of_each_source_is_held_out():
  docs = lm.Documents(("a", "b"), (tuple(f"a{i}" for i in range(25)), tuple(f"b{i}" for i in range(7))))
  train, valid = lm.split(docs, 5)
  assert valid.paragraphs == (("a4", "a9", "a14", "a19", "a24"), ("b4",))
  assert len(train.paragraphs[0]) == 20 and set(train.paragraphs[1]) == {f"b{i}" for i in range(7)} - {"b4"}
  with pytest.raises(DataError, match="valid_every=1"):
    lm.split(docs, 1)


@pytest.fixture(scope="module")
def small():
  train, valid = lm.split(lm.read_documents(SOURCES, max_paragraphs=200), 10)
  return train, valid, wordpiece.train(train.all_paragraphs(), vocab_size=500)


def test_wordpiece_is_cased_has_special_ids_and_survives_save_and_load(small, tmp_path):
  train, _, tok = small
  assert tok.vocab[:5] == list(wordpiece.SPECIAL_TOKENS) and tok.vocab_size <= 500
  assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
  assert tok.encode("The").tolist() != tok.encode("the").tolist()  # cased
  text = "And God saw the light, that it was good."
  assert tok.decode(tok.encode(text)) == text
  assert all(t.startswith("##") for t in tok.tokens("unbelievably")[1:])
  tok.save(str(tmp_path))
  again = wordpiece.load(str(tmp_path))
  assert again.fingerprint == tok.fingerprint
  assert [a.tolist() for a in again.encode_batch(train.paragraphs[0][:20])] == [
    a.tolist() for a in tok.encode_batch(train.paragraphs[0][:20])
  ]
  assert (tmp_path / "vocab.txt").read_text().splitlines() == tok.vocab
  (tmp_path / "tokenizer.json").write_text("{not json")
  with pytest.raises(DataError, match="tokenizer.json is not a tokenizer"):
    wordpiece.load(str(tmp_path))


def test_saved_tokenizer_is_reused_and_a_size_mismatch_refused(small, tmp_path):
  train, _, _ = small
  first = wordpiece.load_or_train(str(tmp_path), train.all_paragraphs(), vocab_size=400)
  (tmp_path / "marker").write_text("")
  again = wordpiece.load_or_train(str(tmp_path), ["other text"], vocab_size=400)
  assert again.fingerprint == first.fingerprint  # loaded, not retrained on the other text
  with pytest.raises(DataError, match="vocab_size=300"):
    wordpiece.load_or_train(str(tmp_path), train.all_paragraphs(), vocab_size=300)


def test_tf_data_tokenization_matches_the_tokenizer_and_keeps_paragraph_order(small):
  train, _, tok = small
  out = lm.tokenize(train, tok, batch_paragraphs=7)
  direct = tok.encode_batch(train.all_paragraphs())
  assert out.num_paragraphs == len(direct)
  for i in (0, 1, 50, len(direct) - 1):
    np.testing.assert_array_equal(out.paragraph(i), direct[i])
  np.testing.assert_array_equal(out.ids, np.concatenate(direct))
  assert np.bincount(out.source).tolist() == [len(p) for p in train.paragraphs]


def test_stream_marks_paragraph_boundaries(small):
  train, _, tok = small
  docs = lm.tokenize(train, tok)
  stream = lm.stream_with_boundaries(docs, cls_id=tok.cls_id, sep_id=tok.sep_id)
  assert len(stream) == len(docs.ids) + 2 * docs.num_paragraphs
  starts = np.flatnonzero(stream == tok.cls_id)
  assert len(starts) == docs.num_paragraphs and stream[0] == tok.cls_id and stream[-1] == tok.sep_id
  np.testing.assert_array_equal(stream[starts[3] + 1 : starts[4] - 1], docs.paragraph(3))


def test_chunk_batches_are_a_function_of_the_step_and_cover_the_epoch():
  chunks = lm.ChunkStream(np.arange(1001, dtype=np.int32), 10)  # 100 chunks
  assert chunks.steps_per_epoch(8) == 12
  it = chunks.stream(batch_size=8, seed=3, start_step=0)
  first = [next(it)["tokens"] for _ in range(15)]
  resumed = chunks.stream(batch_size=8, seed=3, start_step=13)
  np.testing.assert_array_equal(next(resumed)["tokens"], first[13])
  epoch = np.concatenate(first[:12])
  assert epoch.shape == (96, 11) and len(set(epoch[:, 0].tolist())) == 96
  np.testing.assert_array_equal(epoch[:, 1:] - epoch[:, :-1], 1)  # consecutive tokens
  assert set((epoch[:, 0] % 10).tolist()) == {0}
  # Two processes each take their half of the same global batch.
  halves = [
    next(chunks.stream(batch_size=8, seed=3, start_step=5, process_index=p, process_count=2))["tokens"]
    for p in range(2)
  ]
  np.testing.assert_array_equal(np.concatenate(halves), first[5])
  with pytest.raises(DataError, match="batch_size=200"):
    chunks.steps_per_epoch(200)


_TWO_PROCESS_SCRIPT = """
import hashlib, json, os, sys
os.environ.pop("XLA_FLAGS", None)  # one CPU device per process
import jax, ml_collections
from ssljax import sharding
from ssljax.data import lm
sharding.initialize_distributed()
if jax.process_index() == 1:  # must read process 0's file, never train its own
  lm.wordpiece.train = lambda *a, **k: sys.exit("process 1 trained a tokenizer instead of waiting for the file")
elif sys.argv[3] == "fail":  # process 0 fails while training: process 1 must not wait for the file forever
  def fail(*a, **k):
    raise lm.DataError("no paragraphs to train on")
  lm.wordpiece.train = fail
config = ml_collections.ConfigDict(dict(path=sys.argv[1], max_paragraphs=0, valid_every=10, vocab_size=300,
                                        lowercase=False))
corpus = lm.load_corpus(config, sys.argv[2], save_tokenizer=jax.process_index() == 0)
print(json.dumps({"process": jax.process_index(), "count": jax.process_count(),
                  "ids": hashlib.sha256(corpus.train.ids.tobytes()).hexdigest()}))
"""


@pytest.mark.parametrize("mode", ["ok", "fail"])
def test_two_processes_train_one_tokenizer_and_read_the_same_ids(tmp_path, mode):
  """Process 0 trains and saves the WordPiece vocabulary; process 1 waits for it, then reads that file
  (WordPiece training is not deterministic, so two trainings could disagree). When process 0 fails there,
  process 1 ends too, with process 0's error."""
  import json
  import socket
  import subprocess
  import sys

  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  procs = []
  for pid in range(2):
    env = dict(os.environ, SSLJAX_COORDINATOR=f"127.0.0.1:{port}", SSLJAX_NUM_PROCESSES="2", SSLJAX_PROCESS_ID=str(pid))
    procs.append(
      subprocess.Popen(
        [sys.executable, "-c", _TWO_PROCESS_SCRIPT, os.path.join(ROOT, "tests", "data", "lm"), str(tmp_path), mode],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
      )
    )
  results = [p.communicate(timeout=120) for p in procs]
  if mode == "fail":
    assert [p.returncode for p in procs] != [0, 0]
    assert results[0][1].strip().splitlines()[-1] == "ssljax.data.DataError: no paragraphs to train on"
    assert results[1][1].strip().splitlines()[-1] == (
      "ssljax.sharding.DistributedError: process 0 failed while training the tokenizer: no paragraphs to train on"
    )
    assert not (tmp_path / "tokenizer").exists()
    return
  outs = []
  for p, (out, err) in zip(procs, results):
    assert p.returncode == 0, err[-2000:]
    outs.append(json.loads(out.strip().splitlines()[-1]))
  assert [o["process"] for o in outs] == [0, 1] and {o["count"] for o in outs} == {2}
  assert outs[0]["ids"] == outs[1]["ids"]
  assert sorted(os.listdir(tmp_path / "tokenizer")) == ["tokenizer.json", "vocab.txt"]
