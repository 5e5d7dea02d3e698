"""word2vec: corpus reading and sampling tables, the sparse on-device step, and a tiny run end to end."""

import gzip
import heapq
import json
import lzma
import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import launcher
import numpy as np
import pytest

from ssljax import config as config_lib
from ssljax import losses, sharding
from ssljax.data import DataError, text
from ssljax.methods import word2vec

ROOT = launcher.ROOT
TINY = "configs/word2vec.py:tiny"


# ----------------------------------------------------------------------------------------
# Corpus and tables.


def test_read_corpus_keeps_frequent_words_and_line_starts(tmp_path):
  path = tmp_path / "c.txt"
  path.write_text("a b c a\n\nb a d\nz\n")
  corpus = text.read_corpus(str(path), min_count=2)
  assert corpus.vocab.words == ("a", "b") and list(corpus.vocab.counts) == [3, 2]
  assert list(corpus.tokens) == [0, 1, 0, 1, 0]  # rare words are dropped before windowing
  assert list(corpus.line_starts) == [True, False, False, True, False]
  assert corpus.raw_tokens == 8 and corpus.undecodable_lines == 0


@pytest.mark.parametrize("suffix, opener", [(".xz", lzma.open), (".gz", gzip.open)])
def test_compressed_and_multiple_files_read_the_same(tmp_path, suffix, opener):
  body = b"the cat sat on the mat\nthe dog sat\n"
  (tmp_path / "plain.txt").write_bytes(body)
  with opener(tmp_path / f"packed{suffix}", "wb") as f:
    f.write(body)
  plain = text.read_corpus(str(tmp_path / "plain.txt"), min_count=1)
  packed = text.read_corpus(str(tmp_path / f"packed{suffix}"), min_count=1)
  np.testing.assert_array_equal(plain.tokens, packed.tokens)
  both = text.read_corpus(f"{tmp_path}/plain.txt,{tmp_path}/packed{suffix}", min_count=1)
  assert len(both.tokens) == 2 * len(plain.tokens) and both.vocab.counts[0] == 2 * plain.vocab.counts[0]


def test_undecodable_bytes_are_replaced_and_counted(tmp_path):
  path = tmp_path / "c.txt"
  path.write_bytes(b"caf\xe9 a a\nb a\n\xff\xfe b\n")
  corpus = text.read_corpus(str(path), min_count=1)
  assert corpus.undecodable_lines == 2
  assert "caf\ufffd" in corpus.vocab.words


@pytest.mark.parametrize(
  "content, words",
  [
    ("", "has no words"),
    ("  \n\n", "has no words"),
    ("one two three\n", "min_count=5 keeps 0 distinct words"),
  ],
)
def test_bad_corpora_are_refused_by_name(tmp_path, content, words):
  path = tmp_path / "c.txt"
  path.write_text(content)
  with pytest.raises(DataError, match=words):
    text.read_corpus(str(path), min_count=5)
  with pytest.raises(DataError, match="no such file"):
    text.read_corpus(str(tmp_path / "missing.txt"), min_count=5)


def test_keep_probabilities_follow_word2vec_formula():
  counts = np.array([100_000, 5_000, 200, 3])
  keep = text.keep_probabilities(counts, 1e-3)
  t = 1e-3 * counts.sum()
  want = np.minimum((np.sqrt(counts / t) + 1) * t / counts, 1.0)
  np.testing.assert_allclose(keep, want, rtol=1e-6)
  assert keep[0] < 0.2 and keep[-1] == 1.0
  assert np.all(text.keep_probabilities(counts, 0.0) == 1.0)


def test_negatives_follow_unigram_to_three_quarters():
  counts = np.array([1000, 300, 50, 10, 1, 7, 7, 200])
  accept, alias = text.negative_alias_table(counts)
  want = counts**0.75 / np.sum(counts**0.75)
  # The table's exact distribution: column i gives i with accept[i] and alias[i] with the rest.
  implied = (accept + np.bincount(alias, weights=1.0 - accept, minlength=len(counts))) / len(counts)
  np.testing.assert_allclose(implied, want, rtol=1e-6)
  # And the sampler on device draws from it.
  draws = np.asarray(
    word2vec.draw_negatives(
      jax.random.PRNGKey(0), {"negative_accept": jnp.asarray(accept), "negative_alias": jnp.asarray(alias)}, (400_000,)
    )
  )
  np.testing.assert_allclose(np.bincount(draws, minlength=len(counts)) / len(draws), want, atol=3e-3)


def _huffman_cost(counts):
  heap = list(map(int, counts))
  heapq.heapify(heap)
  cost = 0
  while len(heap) > 1:
    merged = heapq.heappop(heap) + heapq.heappop(heap)
    cost += merged
    heapq.heappush(heap, merged)
  return cost


def test_huffman_codes_are_optimal_prefix_codes():
  counts = np.random.default_rng(1).integers(1, 1000, 300)
  codes, points, lengths = text.huffman_tree(counts)
  strings = ["".join(map(str, codes[i, : lengths[i]])) for i in range(len(counts))]
  assert len(set(strings)) == len(strings)
  ordered = sorted(strings)
  assert not any(b.startswith(a) for a, b in zip(ordered, ordered[1:]))  # prefix-free
  assert sum(2.0**-lengths) == pytest.approx(1.0)  # a full binary tree
  assert int(np.sum(counts * lengths)) == _huffman_cost(counts)  # Huffman-optimal
  assert np.all(points[:, 0] == len(counts) - 2)  # every path starts at the root
  assert points.max() <= len(counts) - 2 and points.min() >= 0


# ----------------------------------------------------------------------------------------
# The step.


def _setup(tmp_path, lines, **overrides):
  path = tmp_path / "c.txt"
  path.write_text("\n".join(lines) + "\n")
  # Two lanes of 8 tokens per update: a 16-token batch is one update, a 64-token batch four.
  overrides = {"batch_size": 16, "word2vec.lanes": 2, "word2vec.update_tokens": 8, **overrides}
  args = [f"data.path={path}", "data.min_count=1", *[f"{k}={v}" for k, v in overrides.items()]]
  config = config_lib.get_config(TINY, args)
  data = word2vec.load_train_data(config)
  params, state = word2vec.init(config, jax.random.PRNGKey(0), None, data=data)
  # A high rate, so a few steps on one batch show learning.
  step = jax.jit(lambda p, s, b, r: word2vec.update(p, s, b, r, 0.1, config, 0))
  return config, data, params, state, step


@pytest.mark.parametrize("mode, loss", [("skipgram", "ns"), ("cbow", "ns"), ("skipgram", "hs"), ("cbow", "hs")])
def test_step_changes_only_rows_it_touched_and_lowers_the_loss(tmp_path, mode, loss):
  lines = ["the cat sat on the mat", "a dog ate the bone"] * 4 + ["zebra yak"]
  config, data, params, state, step = _setup(
    tmp_path, lines, **{"word2vec.mode": mode, "word2vec.loss": loss, "data.sample": 0.0}
  )
  batch = jax.tree.map(jnp.asarray, data.batch(0, 16))
  assert "zebra" not in [data.corpus.vocab.words[i] for i in np.asarray(batch["tokens"])]
  zebra = data.corpus.vocab.index()["zebra"]
  new, _, metrics = step(params, state, batch, jax.random.PRNGKey(1))
  assert metrics["kept_fraction"] == 1.0
  # The output table starts at zero, so the first step moves only output rows (as in gensim).
  np.testing.assert_array_equal(new["input"], params["input"])
  losses = [float(metrics["loss"])]
  new, _, metrics = step(new, state, batch, jax.random.PRNGKey(2))
  changed = np.any(np.asarray(new["input"]) != np.asarray(params["input"]), axis=1)
  assert changed.any() and not changed[zebra]  # a word outside the batch keeps its input vector
  for _ in range(30):
    new, _, metrics = step(new, state, batch, jax.random.PRNGKey(1))
    losses.append(float(metrics["loss"]))
  assert losses[-1] < 0.85 * losses[0]


def test_no_pairs_across_lines_or_padding(tmp_path):
  # One word per line: no (centre, context) pair exists, so nothing may change.
  config, data, params, state, step = _setup(
    tmp_path, ["alpha", "beta", "gamma", "delta", "eps", "zeta"] * 2, **{"data.sample": 0.0}
  )
  batch = jax.tree.map(jnp.asarray, data.batch(0, 16))  # 12 tokens and 4 padding slots
  assert int((batch["tokens"] < 0).sum()) == 4
  new, _, metrics = step(params, state, batch, jax.random.PRNGKey(0))
  np.testing.assert_array_equal(new["input"], params["input"])
  np.testing.assert_array_equal(new["output"], params["output"])
  assert float(metrics["loss"]) == 0.0


def test_subsampling_drops_frequent_words(tmp_path):
  lines = ["the " * 30 + "some rare words are here"] * 2
  config, data, params, state, step = _setup(tmp_path, lines, **{"data.sample": 1e-3, "batch_size": 64})
  _, _, metrics = step(params, state, jax.tree.map(jnp.asarray, data.batch(0, 64)), jax.random.PRNGKey(0))
  assert 0.02 < float(metrics["kept_fraction"]) < 0.2  # expected about 0.06 = sum(count * keep) / total


@pytest.mark.parametrize("mode", ["skipgram", "cbow"])
def test_hand_written_gradients_match_autodiff_of_the_losses(mode):
  rng = np.random.default_rng(0)
  t, window, m, dim = 12, 2, 4, 5
  input_rows = jnp.asarray(rng.normal(size=(t, dim)), jnp.float32)
  output_rows = jnp.asarray(rng.normal(size=(t, m, dim)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 2, (t, m)), jnp.float32)
  ctx_mask = jnp.asarray(rng.random((t, 2 * window)) < 0.6)
  out_mask = jnp.asarray(rng.random((t, m)) < 0.8)
  loss, d_input, factors = word2vec.word2vec_gradients(
    input_rows, output_rows, labels, ctx_mask, out_mask, mode=mode, window=window
  )
  d_output = word2vec.outer_sum(*factors)
  offsets = word2vec._offsets(window)

  def reference(input_rows, output_rows):
    contexts = jnp.stack([word2vec._shift(input_rows, d) for d in offsets], axis=1)
    fn = losses.sgns if mode == "skipgram" else losses.cbow_ns
    return fn(contexts, output_rows, labels, input_mask=ctx_mask, output_mask=out_mask).sum()

  ref_loss, (ref_input, ref_output) = jax.value_and_grad(reference, argnums=(0, 1))(input_rows, output_rows)
  if mode == "cbow":  # word2vec's rule: each context word gets the full error of the mean, not 1/count of it
    contexts_grad = jax.grad(
      lambda c: losses.cbow_ns(c, output_rows, labels, input_mask=ctx_mask, output_mask=out_mask).sum()
    )(jnp.stack([word2vec._shift(input_rows, d) for d in offsets], axis=1))
    contexts_grad = contexts_grad * jnp.maximum(ctx_mask.sum(1), 1)[:, None, None]
    ref_input = sum(word2vec._shift(contexts_grad[:, c], -d) for c, d in enumerate(offsets))
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  np.testing.assert_allclose(d_input, ref_input, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(d_output, ref_output, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["skipgram", "cbow"])
def test_step_is_the_same_on_one_two_and_eight_devices(tmp_path, mode):
  lines = ["the cat sat on the mat and the dog ate the bone"] * 20
  config, data, params, state, _ = _setup(
    tmp_path, lines, **{"word2vec.mode": mode, "batch_size": 128, "word2vec.lanes": 8, "data.sample": 1e-2}
  )
  results = []
  for n in (1, 2, 8):
    mesh = sharding.make_mesh(n)
    repl, batched = sharding.replicated(mesh), sharding.batch_sharded(mesh)
    step = jax.jit(
      lambda p, s, b, r: word2vec.update(p, s, b, r, 0.1, config, 0),
      in_shardings=(repl, repl, batched, repl),
      out_shardings=repl,
    )
    with jax.set_mesh(mesh):
      p = params
      for i in range(3):
        p, _, metrics = step(p, state, sharding.global_batch(data.batch(i, 128), mesh), jax.random.PRNGKey(i))
    results.append((jax.device_get(p), float(metrics["loss"])))
  assert results[0][1] > 0
  for p, loss in results[1:]:
    assert loss == pytest.approx(results[0][1], rel=1e-6)
    for name in ("input", "output"):
      np.testing.assert_allclose(p[name], results[0][0][name], rtol=1e-5, atol=1e-7)


def test_stream_position_is_a_function_of_the_step(tmp_path):
  _, data, _, _, _ = _setup(tmp_path, ["a b c d e f g"] * 10)
  batches = data.stream(batch_size=16, seed=0, start_step=3)
  np.testing.assert_array_equal(next(batches)["tokens"], data.batch(3, 16)["tokens"])
  halves = [data.batch(5, 16, p, 2)["tokens"] for p in (0, 1)]
  np.testing.assert_array_equal(np.concatenate(halves), data.batch(5, 16)["tokens"])


def test_bad_word2vec_config_is_named(tmp_path):
  path = tmp_path / "c.txt"
  path.write_text("a b c\n")
  for override, words in (
    ("word2vec.mode=glove", "word2vec.mode='glove'"),
    ("word2vec.loss=nce", "word2vec.loss='nce'"),
    ("data.min_count=1", "fewer than the 6"),
    ("batch_size=100", "batch_size=100 is not a multiple of word2vec.lanes"),
  ):
    config = config_lib.get_config(TINY, [f"data.path={path}", override])
    with pytest.raises(ValueError, match=words):
      word2vec.METHOD.check_config(config)  # the config's own faults, before the corpus is read
      word2vec.load_train_data(config)  # the corpus's: too few words for the negatives


# ----------------------------------------------------------------------------------------
# End to end on the tiny preset.


def run_cli(workdir, *overrides, wait=True):
  return launcher.run_cli(TINY, workdir, *overrides, wait=wait)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("w2v")
  rc, out, err = launcher.run_cli(TINY, workdir, env=launcher.devices_env(launcher.EVAL_DEVICES))
  assert rc == 0, err[-3000:]
  return workdir, out


def test_tiny_run_reports_the_word_evals_above_the_random_init_vectors(tiny_run):
  workdir, out = tiny_run
  results = json.loads((workdir / "eval.json").read_text())
  for name in ("analogy/total", "analogy/semantic", "analogy/syntactic", "wordsim353/spearman", "simlex999/spearman"):
    assert np.isfinite(results[name]) and np.isfinite(results["baseline/random_init/" + name]), name
  # The initial vectors carry no part of speech: their probe sits at the majority class.
  floor = results["baseline/random_init/pos_probe/top1"]
  assert abs(floor - results["pos_probe/majority_baseline"]) < 0.05, results
  assert "words/s" in out and "analogy/total" in out and "vocabulary" in out
  lines = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  # Learning: the loss per pair falls well below its value at the zero-initialised output table.
  assert lines[-1]["loss"] < 0.9 * lines[0]["loss"]


def test_evals_are_the_same_on_one_device(tiny_run, tmp_path):
  workdir, _ = tiny_run
  launcher.assert_same_evals_on_one_device(workdir, TINY, scratch=tmp_path)


def test_exported_vectors_load_in_gensim(tiny_run):
  from gensim.models import KeyedVectors

  workdir, _ = tiny_run
  as_text = KeyedVectors.load_word2vec_format(str(workdir / "vectors.txt"))
  as_binary = KeyedVectors.load_word2vec_format(str(workdir / "vectors.bin"), binary=True)
  assert as_text.index_to_key == as_binary.index_to_key and len(as_text) > 100
  np.testing.assert_allclose(as_text.vectors, as_binary.vectors, rtol=1e-5, atol=1e-7)
  corpus = text.read_corpus(os.path.join(ROOT, "tests", "data", "tiny_corpus.txt"), min_count=2)
  assert as_binary.index_to_key == list(corpus.vocab.words)


def test_load_embeds_words_as_the_exported_vectors(tiny_run):
  from gensim.models import KeyedVectors

  import ssljax

  workdir, _ = tiny_run
  exported = KeyedVectors.load_word2vec_format(str(workdir / "vectors.bin"), binary=True)
  run = ssljax.load(workdir)
  words = exported.index_to_key[:5]
  np.testing.assert_allclose(run.embed(words), exported[words], rtol=1e-6, atol=1e-7)
  # A phrase is the mean of its known words; a word outside the vocabulary is left out.
  phrase = run.embed([f"{words[0]} {words[1]} notawordofthecorpus"])[0]
  np.testing.assert_allclose(phrase, exported[words[:2]].mean(0), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="no word of 'zzzq' is in the run's vocabulary"):
    run.embed(["zzzq"])


def test_word2vec_resumes_exactly_after_sigkill(tmp_path, tiny_run):
  workdir, _ = tiny_run
  reference = json.loads((workdir / "summary.json").read_text())
  proc = run_cli(tmp_path, wait=False)
  launcher.wait_for_checkpoint(tmp_path, 100, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  rc, _, err = run_cli(tmp_path)
  assert rc == 0, err[-3000:]
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert 100 <= summary["resumed_from"] < summary["steps"]
  assert summary["params_sha256"] == reference["params_sha256"]


def test_missing_corpus_is_one_line(tmp_path):
  proc = subprocess.run(
    [
      sys.executable,
      "launch/run.py",
      "--config",
      TINY,
      "--workdir",
      str(tmp_path / "w"),
      "--config.data.path=/nonexistent/corpus.txt",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 2
  assert proc.stderr.strip().count("\n") == 0 and "/nonexistent/corpus.txt" in proc.stderr
  assert not (tmp_path / "w" / "checkpoints").exists()
