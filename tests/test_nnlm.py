"""The neural language models and their method: context rules, exact chunked scoring, GRU numerics, and a
tiny run end to end against the Kneser-Ney baseline."""

import json
import math
import os

import jax
import jax.numpy as jnp
import launcher
import numpy as np
import pytest

from ssljax import config as config_lib
from ssljax import sharding
from ssljax.data import lm, wordpiece
from ssljax.evals import ngram
from ssljax.methods import nnlm
from ssljax.models.nnlm import RecurrentLM, WindowLM

CLS, SEP, PAD = wordpiece.CLS_ID, wordpiece.SEP_ID, wordpiece.PAD_ID
TINY_FILE = os.path.join(launcher.ROOT, "configs", "nnlm.py:tiny")
MODELS = {
  "window": lambda: WindowLM(vocab_size=40, context=3, embed_dim=8, hidden_dim=16),
  "gru": lambda: RecurrentLM(vocab_size=40, embed_dim=8, hidden_dim=16, layers=2),
}


def _stream(rng, n=24):
  """Two paragraphs of random tokens (ids >= 5), each opened by [CLS] and closed by [SEP]."""
  a, b = rng.integers(5, 40, 9), rng.integers(5, 40, n - 13)
  return np.concatenate([[CLS], a, [SEP], [CLS], b, [SEP]]).astype(np.int32)[None]


@pytest.mark.parametrize("arch", list(MODELS))
def test_scoring_in_chunks_with_the_carry_equals_scoring_at_once(arch):
  model, tokens = MODELS[arch](), _stream(np.random.default_rng(0))
  params = model.init(jax.random.PRNGKey(0), tokens, train=False)
  whole, _ = model.apply(params, tokens, train=False)
  parts, carry = [], None
  for a, b in ((0, 5), (5, 6), (6, 17), (17, 24)):
    logits, aux = model.apply(params, tokens[:, a:b], carry, train=False)
    parts.append(logits)
    carry = aux["carry"]
  np.testing.assert_allclose(np.concatenate(parts, 1), whole, atol=1e-5)


@pytest.mark.parametrize("arch", list(MODELS))
def test_a_paragraph_is_predicted_from_its_own_tokens_only(arch):
  model, tokens = MODELS[arch](), _stream(np.random.default_rng(1))
  params = model.init(jax.random.PRNGKey(0), tokens, train=False)
  other = tokens.copy()
  other[0, 1:10] = np.random.default_rng(2).integers(5, 40, 9)  # a different first paragraph
  second = slice(11, 24)  # from the second [CLS] on
  a, _ = model.apply(params, tokens, train=False)
  b, _ = model.apply(params, other, train=False)
  np.testing.assert_allclose(a[0, second], b[0, second], atol=1e-6)
  assert not np.allclose(a[0, 1:10], b[0, 1:10])


@pytest.mark.parametrize("arch", list(MODELS))
def test_the_prediction_at_a_position_reads_the_token_there(arch):
  model, tokens = MODELS[arch](), _stream(np.random.default_rng(5))
  params = model.init(jax.random.PRNGKey(0), tokens, train=False)
  other = tokens.copy()
  other[0, 6] = 5 if tokens[0, 6] != 5 else 6
  a, _ = model.apply(params, tokens, train=False)
  b, _ = model.apply(params, other, train=False)
  np.testing.assert_allclose(a[0, :6], b[0, :6], atol=1e-6)  # the past does not see the future
  assert not np.allclose(a[0, 6], b[0, 6])


def test_gru_matches_a_float64_numpy_gru():
  model = RecurrentLM(vocab_size=40, embed_dim=8, hidden_dim=16, layers=1)
  tokens = np.random.default_rng(3).integers(5, 40, (2, 7)).astype(np.int32)
  params = model.init(jax.random.PRNGKey(1), tokens, train=False)["params"]
  _, aux = model.apply({"params": params}, tokens, train=False)
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
  sig = lambda x: 1 / (1 + np.exp(-x))
  x = p["embed"]["embedding"][tokens]
  wi, bi, wh = p["input_0"]["kernel"], p["input_0"]["bias"], p["gru_0"]["recurrent"]["kernel"]
  h, outs = np.zeros((2, 16)), []
  for t in range(7):
    xr, xz, xn = np.split(x[:, t] @ wi + bi, 3, -1)
    hr, hz, hn = np.split(h @ wh, 3, -1)
    r, u = sig(xr + hr), sig(xz + hz)
    h = (1 - u) * np.tanh(xn + r * hn) + u * h
    outs.append(h)
  np.testing.assert_allclose(aux["features"], np.stack(outs, 1), atol=1e-5)


def _docs(rng, sizes):
  ids = rng.integers(5, 40, sum(sizes)).astype(np.int32)
  return lm.TokenizedDocs(
    ids,
    np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
    np.arange(len(sizes), dtype=np.int32) % 2,
    ("even", "odd"),
  )


def test_held_out_perplexity_counts_each_token_and_paragraph_end_once():
  config = config_lib.load_config_file(TINY_FILE)
  config.nnlm.embed_dim, config.nnlm.hidden_dim, config.data.seq_len, config.evals.lanes = 8, 16, 5, 3
  docs = _docs(np.random.default_rng(4), [3, 17, 1, 8, 30, 2, 9])
  model = nnlm.build_model(config, 40)
  params = model.init(jax.random.PRNGKey(0), np.zeros((1, 4), np.int32), train=False)["params"]
  # Zero output weights: every token gets probability 1/V, so perplexity is exactly V.
  uniform = jax.tree.map(jnp.zeros_like, params)
  mesh = sharding.make_mesh()
  out = nnlm.perplexity(config, uniform, docs, mesh)
  assert out["targets"] == 70 + 7
  assert out["perplexity"] == pytest.approx(40, rel=1e-5)
  # The exact value from one unchunked pass over each paragraph.
  reference = 0.0
  for p in docs.paragraphs():
    seq = np.concatenate([[CLS], p, [SEP]]).astype(np.int32)[None]
    logits, _ = model.apply({"params": params}, seq[:, :-1], train=False)
    logits = np.asarray(logits[0], np.float64)
    logp = (
      logits
      - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
      - logits.max(-1, keepdims=True)
    )
    reference -= float(np.sum(np.take_along_axis(logp, seq[0, 1:, None], 1)))
  chunked = nnlm.perplexity(config, params, docs, mesh)["perplexity"]
  assert chunked == pytest.approx(math.exp(reference / 77), rel=1e-5)


# ----------------------------------------------------------------------------------------
# End to end on the tiny preset.

TINY = "configs/nnlm.py:tiny"


# The resumed run starts from the reference's tokenizer: WordPiece training is not deterministic across processes
# (ties between merges are broken in hash-map order; huggingface/tokenizers#1794), a saved one is reused exactly.
tiny_run, test_evals_are_the_same_on_one_device, test_resumes_exactly_after_sigkill = launcher.end_to_end(
  TINY, kill_at=50, evals_off=(), copy=("tokenizer",)
)


def test_tiny_run_learns_and_reports_both_perplexities(tiny_run):
  workdir, out = tiny_run
  results = json.loads((workdir / "eval.json").read_text())
  # The model starts at the unigram distribution (its output biases); after 100 small steps it must do clearly
  # better than a unigram model of the same training tokens, scored on the same held-out targets.
  corpus = lm.load_corpus(config_lib.load_config_file(TINY_FILE).data, str(workdir))
  unigram = ngram.fit_kneser_ney(corpus.train.paragraphs(), order=1, vocab_size=corpus.tokenizer.vocab_size)
  assert results["perplexity/valid"] < 0.8 * ngram.perplexity(unigram, corpus.valid.paragraphs())
  assert 1 < results["baseline/ngram/perplexity/valid"] < corpus.tokenizer.vocab_size
  lines = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  assert lines[-1]["loss"] < lines[0]["loss"] - 0.3
  assert "tok/s" in out and "Kneser-Ney" in out and "sample:" in out


def test_an_empty_source_is_one_line_and_nothing_is_written(tmp_path):
  data = tmp_path / "texts"
  data.mkdir()
  (data / "good.txt").write_text("Some text.\n\nMore text.\n")
  (data / "blank.txt").write_text("\n\n")
  rc, _, err = launcher.run_cli(TINY, tmp_path / "w", f"data.path={data}")
  assert rc == 2 and err.strip().count("\n") == 0 and "blank.txt is empty" in err
  assert not (tmp_path / "w" / "checkpoints").exists() and not (tmp_path / "w" / "tokenizer").exists()
