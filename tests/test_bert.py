"""BERT pre-training: the masked-LM loss, on-device masking, next-sentence pairs, a tiny run end to end with
fine-tuning and the fill demo, and bad input."""

import json
import os
import shutil
import subprocess
import sys

import jax
import launcher
import numpy as np
import pytest

from ssljax import losses
from ssljax.data import lm, wordpiece
from ssljax.methods import bert

ROOT = launcher.ROOT


def test_masked_lm_matches_a_float64_reference():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 4, 11)) * 3
  labels = rng.integers(0, 11, (3, 4))
  weights = (rng.random((3, 4)) < 0.7).astype(np.float64)
  loss, accuracy = losses.masked_lm(logits.astype(np.float32), labels, weights.astype(np.float32))
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(logp, labels[..., None], -1)[..., 0]
  assert float(loss) == pytest.approx(np.sum(weights * nll) / weights.sum(), rel=1e-6)
  assert float(accuracy) == pytest.approx(np.sum(weights * (logits.argmax(-1) == labels)) / weights.sum())
  grad = jax.grad(lambda x: losses.masked_lm(x, labels, weights)[0])(logits.astype(np.float32))
  softmax = np.exp(logp)
  expected = (softmax - np.eye(11)[labels]) * weights[..., None] / weights.sum()
  np.testing.assert_allclose(grad, expected, atol=1e-6)
  with pytest.raises(ValueError, match="must be"):
    losses.masked_lm(logits[0], labels, weights)


def test_masking_picks_ordinary_tokens_at_bert_rates():
  rng = np.random.default_rng(1)
  tokens = rng.integers(5, 1000, (400, 64)).astype(np.int32)
  lengths = rng.integers(3, 64, 400)
  tokens[np.arange(64)[None, :] >= lengths[:, None]] = wordpiece.PAD_ID
  tokens[:, 0] = wordpiece.CLS_ID
  tokens[np.arange(400), lengths - 1] = wordpiece.SEP_ID
  inputs, positions, labels, weights = jax.device_get(
    bert.mask_tokens(jax.random.PRNGKey(0), tokens, vocab_size=1000, max_predictions=8)
  )
  ordinary = (tokens >= 5).sum(1)
  np.testing.assert_array_equal(weights.sum(1), np.clip(np.round(0.15 * ordinary), 1, 8))
  chosen = weights > 0
  rows = np.repeat(np.arange(400)[:, None], 8, 1)
  assert np.all(tokens[rows[chosen], positions[chosen]] >= 5)  # never [CLS], [SEP] or padding
  np.testing.assert_array_equal(labels[chosen], tokens[rows[chosen], positions[chosen]])
  assert all(len(set(p[c].tolist())) == c.sum() for p, c in zip(positions, chosen))  # distinct positions
  new = inputs[rows[chosen], positions[chosen]]
  masked, kept = np.mean(new == wordpiece.MASK_ID), np.mean(new == labels[chosen])
  assert abs(masked - 0.8) < 0.03 and abs(kept - 0.1) < 0.03 and abs(1 - masked - kept - 0.1) < 0.03
  untouched = np.ones_like(tokens, bool)
  untouched[rows[chosen], positions[chosen]] = False
  np.testing.assert_array_equal(inputs[untouched], tokens[untouched])
  again = jax.device_get(bert.mask_tokens(jax.random.PRNGKey(0), tokens, vocab_size=1000, max_predictions=8))
  np.testing.assert_array_equal(again[0], inputs)  # keyed: the same key masks the same way
  with pytest.raises(ValueError, match="max_predictions=65 exceeds the 64 tokens"):
    bert.mask_tokens(jax.random.PRNGKey(0), tokens, vocab_size=1000, max_predictions=65)


def test_next_segment_pairs_are_bert_shaped_and_true_pairs_are_contiguous():
  # Token ids are positions in the text, so contiguity can be read off the ids.
  sizes = np.random.default_rng(2).integers(1, 40, 300)
  docs = lm.TokenizedDocs(
    np.arange(5, 5 + sizes.sum(), dtype=np.int32),
    np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
    np.repeat(np.arange(3), 100).astype(np.int32),
    ("a", "b", "c"),
  )
  ex = lm.next_segment_examples(docs, max_len=48, seed=0, cls_id=2, sep_id=3)
  tokens, segments, is_next = ex["tokens"], ex["segments"], ex["is_next"]
  assert tokens.shape[1] == 48 and 0.4 < is_next.mean() < 0.6
  source_of = np.repeat(docs.source, sizes)
  for row, seg, nxt in zip(tokens, segments, is_next):
    real = row[row != 0]
    seps = np.flatnonzero(real == 3)
    assert real[0] == 2 and len(seps) == 2 and seps[1] == len(real) - 1
    np.testing.assert_array_equal(seg[: len(real)], np.r_[np.zeros(seps[0] + 1), np.ones(len(real) - seps[0] - 1)])
    a, b = real[1 : seps[0]], real[seps[0] + 1 : -1]
    assert len(a) and len(b) and np.all(np.diff(a) == 1) or len(a) == 1
    if nxt:  # B follows A in the same source (truncation may drop tokens between them)
      assert 1 <= b[0] - a[-1] <= 48 and source_of[a[-1] - 5] == source_of[b[0] - 5]
  random_b = tokens[is_next == 0]
  seps = [np.flatnonzero(r == 3)[0] for r in random_b]
  assert np.mean([r[s + 1] == r[s - 1] + 1 for r, s in zip(random_b, seps)]) < 0.05


# ----------------------------------------------------------------------------------------
# End to end on the tiny preset.

TINY = "configs/bert.py:tiny"


# Fine-tuning reads the params, not the other way round: the resumed run skips it. It starts from the reference's
# tokenizer (WordPiece training breaks ties in hash-map order, huggingface/tokenizers#1794).
tiny_run, test_evals_are_the_same_on_one_device, test_resumes_exactly_after_sigkill = launcher.end_to_end(
  TINY, kill_at=20, evals_off=("evals.finetune=False",), copy=("tokenizer",)
)


def test_tiny_run_reports_pretraining_and_finetuning_against_both_baselines(tiny_run):
  """The end-to-end run reports every number. It does not show learning: 40 steps leave the MLM on its unigram
  plateau (held-out perplexity 276 at step 0, 316 at step 40; NSP at chance), which the biases start on.
  `test_the_product_step_learns_a_batch_by_heart` is the learning test, and the `cpu` preset's README figures."""
  workdir, out = tiny_run
  results = json.loads((workdir / "eval.json").read_text())
  vocab = len((workdir / "tokenizer" / "vocab.txt").read_text().splitlines())
  # The unigram start is far under the uniform model's perplexity (the vocabulary size); a head or a mask out
  # of step with the tokens would not be.
  assert 1.0 < results["mlm/perplexity"] < 0.7 * vocab
  for name in ("mlm/accuracy", "nsp/accuracy"):
    assert 0.0 <= results[name] <= 1.0, name
  for split in ("finetune", "finetune_25pct"):
    for prefix in ("", "baseline/scratch/", "baseline/bow/"):
      assert 0.0 <= results[f"{prefix}{split}/top1"] <= 1.0
  assert "pairs:" in out and "bag of words" in out


def test_load_embeds_strings_whatever_else_is_in_the_batch(tiny_run):
  import ssljax

  workdir, _ = tiny_run
  run = ssljax.load(workdir)
  texts = ["And God said, Let there be light.", "Call me Ishmael. " * 8, "It is a truth universally acknowledged."]
  together = run.embed(texts)
  alone = np.concatenate([run.embed([t]) for t in texts])
  assert together.shape == (3, run.params["encoder"]["token_embed"]["embedding"].shape[1])
  # Padding to the longest text changes nothing (the attention mask holds), and the texts differ.
  np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)
  assert np.abs(together[0] - together[2]).max() > 1e-3
  module, variables = run.encoder()
  assert set(variables["params"]) == set(run.params["encoder"])


def test_the_product_step_learns_a_batch_by_heart():
  """The real step (masking, both heads, AdamW) drives MLM and NSP losses on a fixed batch far down."""
  from ssljax import config as config_lib
  from ssljax import optim, train

  config = config_lib.load_config_file(os.path.join(ROOT, "configs", "bert.py:tiny"))
  config.data.vocab_size, config.bert.dropout, config.optim.learning_rate = 64, 0.0, 3e-3
  rng = np.random.default_rng(0)
  tokens = rng.integers(5, 64, (8, 32)).astype(np.int32)
  tokens[:, 0], tokens[:, 15], tokens[:, 31] = wordpiece.CLS_ID, wordpiece.SEP_ID, wordpiece.SEP_ID
  batch = {
    "tokens": tokens,
    "segments": (np.arange(32) > 15).astype(np.int32)[None].repeat(8, 0),
    "is_next": np.array([0, 1] * 4, np.int32),
  }
  params, method_state = bert.init(config, jax.random.PRNGKey(0), batch, data=None)
  tx, schedule = optim.make_optimizer(config.optim, batch_size=8, total_steps=150, steps_per_epoch=150)
  state = train.TrainState(
    step=np.zeros((), np.int32),
    params=params,
    opt_state=tx.init(params),
    method_state=method_state,
    rng=jax.random.PRNGKey(1),
  )
  step = jax.jit(train.make_train_step(bert.METHOD, config, tx, schedule))
  history = []
  for _ in range(150):
    state, metrics = step(state, batch)
    history.append(jax.device_get(metrics))
  assert history[-1]["mlm_loss"] < 0.5 * history[0]["mlm_loss"]
  # Each step masks afresh, and a mask that hides what NSP memorized costs that one step ~0.5-0.9 nats: the
  # median of the last steps says whether the batch is learned, one step's value is a draw.
  last = history[-10:]
  assert np.median([m["nsp_loss"] for m in last]) < 0.2 and np.median([m["nsp_accuracy"] for m in last]) == 1.0


def _demo(*args):
  return subprocess.run(
    [sys.executable, "-m", "ssljax.demo", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
  )


def test_fill_demo_prints_predictions_and_refuses_a_foreign_tokenizer(tiny_run, tmp_path):
  workdir, _ = tiny_run
  proc = _demo("fill", "--workdir", str(workdir), "--top", "3", "And God said, Let there be [MASK].")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "[MASK] 1:" in proc.stdout and len(proc.stdout.splitlines()[1].split(",")) >= 3
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  tok = wordpiece.train(["some other text entirely"] * 20, vocab_size=50)
  tok.save(str(copy / "tokenizer"))
  proc = _demo("fill", "--workdir", str(copy), "a [MASK] b")
  assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
  assert "do not belong together" in proc.stderr
  proc = _demo("fill", "--workdir", str(workdir), "no mask here")
  assert proc.returncode == 2 and "no [MASK]" in proc.stderr


def test_a_sequence_longer_than_the_model_is_one_line(tmp_path):
  rc, _, err = launcher.run_cli(TINY, tmp_path / "w", "data.max_len=600")
  assert rc == 2 and err.strip().count("\n") == 0 and "data.max_len=600" in err
  assert not os.path.exists(tmp_path / "w" / "checkpoints")
