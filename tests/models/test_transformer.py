"""Tests for ssljax.models.transformer: BERT's encoder, pre-training heads and classifier.

Checked against hand-written float64 NumPy references rather than another library, so the tests say
what BERT computes: masked attention, the post-LN block, the tied MLM projection, published sizes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from ssljax.models.transformer import BERT_SIZES, BertClassifier, BertEncoder, BertForPretraining, bert_encoder

# threefry's samplers compile slowly on CPU; RBG keys compile in a blink (as in test_models.py).
KEY = jax.random.key(0, impl="unsafe_rbg")
VOCAB, MAX_LEN = 50, 16
TINY = dict(vocab_size=VOCAB, hidden=32, layers=2, heads=2, intermediate=64, max_len=MAX_LEN)
LENGTHS = (5, 7)  # Real tokens per sequence; the rest is padding.
MASKED = np.array([[1, 3, 4], [0, 2, 6]], np.int32)  # MLM positions, all at real tokens.


def _batch(t: int, seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Tokens, segments and mask padded to length t; real tokens are the same for every t and seed,
  padded positions hold arbitrary ids (a different draw per seed) that the mask must hide."""
  real = np.random.default_rng(0)
  junk = np.random.default_rng(seed)
  tokens = junk.integers(0, VOCAB, (len(LENGTHS), t))
  segments = junk.integers(0, 2, (len(LENGTHS), t))
  mask = np.zeros((len(LENGTHS), t), bool)
  for i, n in enumerate(LENGTHS):
    tokens[i, :n] = real.integers(0, VOCAB, n)
    segments[i, :n] = np.arange(n) >= n // 2
    mask[i, :n] = True
  return jnp.asarray(tokens, jnp.int32), jnp.asarray(segments, jnp.int32), jnp.asarray(mask)


@pytest.fixture(scope="module")
def pretraining():
  model = BertForPretraining(BertEncoder(**TINY))
  tokens, segments, mask = _batch(8, seed=1)
  variables = jax.jit(lambda: model.init(KEY, tokens, segments, mask, MASKED, train=False))()
  return model, variables


def _apply(model, variables, t, seed, **kw):
  tokens, segments, mask = _batch(t, seed)
  return jax.jit(lambda v: model.apply(v, tokens, segments, mask, MASKED, train=False, **kw))(variables)


def _np(x) -> np.ndarray:
  return np.asarray(x, np.float64)


def _layer_norm(x, p, eps=1e-12):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * _np(p["scale"]) + _np(p["bias"])


def _gelu(x):
  return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def _dense(x, p):
  return x @ _np(p["kernel"]) + _np(p["bias"])


def _attention(x, mask, p, heads):
  """Masked multi-head self-attention, float64: padded keys get no weight."""
  b, t, h = x.shape
  d = h // heads
  split = lambda y: y.reshape(b, t, heads, d)
  q, k, v = (split(_dense(x, p[name])) for name in ("query", "key", "value"))
  scores = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d)
  scores = np.where(mask[:, None, None, :], scores, -np.inf)
  w = np.exp(scores - scores.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  return _dense(np.einsum("bhqk,bkhd->bqhd", w, v).reshape(b, t, h), p["output"])


def test_outputs_at_real_positions_ignore_padding(pretraining):
  model, variables = pretraining
  (mlm, nsp), aux = _apply(model, variables, 8, seed=1)
  (mlm_long, nsp_long), aux_long = _apply(model, variables, 12, seed=2)  # Longer, other junk ids.
  for i, n in enumerate(LENGTHS):
    np.testing.assert_allclose(aux_long["tokens"][i, :n], aux["tokens"][i, :n], atol=1e-5)
  for key in ("pooled", "pre_logits"):
    np.testing.assert_allclose(aux_long[key], aux[key], atol=1e-5)
  np.testing.assert_allclose(mlm_long, mlm, atol=1e-5)
  np.testing.assert_allclose(nsp_long, nsp, atol=1e-5)
  assert mlm.shape == (2, MASKED.shape[1], VOCAB) and nsp.shape == (2, 2)
  assert aux["tokens"].shape == (2, 8, TINY["hidden"]) and aux["pooled"].shape == (2, TINY["hidden"])


def test_first_layer_matches_numpy_reference(pretraining):
  model, variables = pretraining
  tokens, segments, mask = _batch(8, seed=1)
  _, state = _apply(model, variables, 8, seed=1, capture_intermediates=True)
  inter = state["intermediates"]["encoder"]
  params = variables["params"]["encoder"]
  x = _np(inter["embed_norm"]["__call__"][0])  # The first block's input.
  mask = np.asarray(mask)

  attn = _attention(x, mask, params["blocks_0"]["attention"], TINY["heads"])
  np.testing.assert_allclose(inter["blocks_0"]["attention"]["__call__"][0], attn, atol=1e-5)

  p = params["blocks_0"]  # The rest of the post-LN block.
  y = _layer_norm(x + attn, p["attention_norm"])
  y = _layer_norm(y + _dense(_gelu(_dense(y, p["intermediate"])), p["output"]), p["output_norm"])
  np.testing.assert_allclose(inter["blocks_0"]["__call__"][0], y, atol=1e-5)

  # And the embeddings feeding it: token + segment + position, then LayerNorm.
  e = {k: _np(params[k]["embedding"]) for k in ("token_embed", "segment_embed", "position_embed")}
  emb = e["token_embed"][tokens] + e["segment_embed"][segments] + e["position_embed"][None, :8]
  np.testing.assert_allclose(x, _layer_norm(emb, params["embed_norm"]), atol=1e-5)


def test_mlm_logits_are_tied_to_token_embedding(pretraining):
  model, variables = pretraining
  (mlm, _), aux = _apply(model, variables, 8, seed=1)
  p = variables["params"]
  h = np.take_along_axis(_np(aux["tokens"]), MASKED[..., None], axis=1)
  h = _layer_norm(_gelu(_dense(h, p["mlm_transform"])), p["mlm_norm"])
  expected = h @ _np(p["encoder"]["token_embed"]["embedding"]).T + _np(p["mlm_bias"])
  np.testing.assert_allclose(mlm, expected, atol=1e-5)
  # No separate output matrix: the embedding table is the only (V, H) or (H, V) parameter.
  big = [path for path, x in jax.tree_util.tree_leaves_with_path(p) if VOCAB in x.shape and x.ndim == 2]
  assert [jax.tree_util.keystr(path) for path in big] == ["['encoder']['token_embed']['embedding']"]


def _count(model) -> int:
  tokens = jnp.zeros((1, 8), jnp.int32)
  shapes = jax.eval_shape(lambda: model.init(KEY, tokens, None, None, train=False))
  return sum(x.size for x in jax.tree.leaves(shapes["params"]))


@pytest.mark.parametrize(
  "size, published, exact",
  [
    ("mini", 11.2e6, 11_170_560),  # Turc et al. 2019 / google-research/bert.
    ("base", 110e6, 109_482_240),  # Devlin et al. 2019; exact = HF's BertModel (with pooler).
  ],
)
def test_published_parameter_counts(size, published, exact):
  n = _count(bert_encoder(size, 30522))
  assert abs(n - published) / published < 0.02, n
  assert n == exact


def test_sizes_table():
  assert {k: (v["layers"], v["hidden"]) for k, v in BERT_SIZES.items()} == {
    "tiny": (2, 128),
    "mini": (4, 256),
    "small": (4, 512),
    "medium": (8, 512),
    "base": (12, 768),
  }
  assert all(v["heads"] == v["hidden"] // 64 and v["intermediate"] == 4 * v["hidden"] for v in BERT_SIZES.values())
  enc = bert_encoder("small", 100, max_len=128, dropout=0.0)
  assert (enc.layers, enc.hidden, enc.heads, enc.max_len, enc.dropout) == (4, 512, 8, 128, 0.0)


def test_errors_name_the_bad_value():
  with pytest.raises(ValueError, match="sequence length 600 exceeds the model's max_len 512"):
    _count_at_length(bert_encoder("tiny", 100), 600)
  with pytest.raises(ValueError, match="'huge'"):
    bert_encoder("huge", 100)


def _count_at_length(model, t):
  jax.eval_shape(lambda: model.init(KEY, jnp.zeros((1, t), jnp.int32), None, None, train=False))


def test_dropout_only_in_training():
  model = BertClassifier(3, BertEncoder(**TINY))
  tokens, segments, mask = _batch(8, seed=1)
  variables = jax.jit(lambda: model.init(KEY, tokens, segments, mask, train=False))()

  @functools.partial(jax.jit, static_argnames="train")
  def run(rng, train):
    return model.apply(variables, tokens, segments, mask, train=train, rngs={"dropout": rng})[0]

  k1, k2 = jax.random.key(1, impl="unsafe_rbg"), jax.random.key(2, impl="unsafe_rbg")
  eval1, eval2 = run(k1, False), run(k2, False)
  np.testing.assert_array_equal(eval1, eval2)
  assert eval1.shape == (2, 3)
  train1, train2 = run(k1, True), run(k2, True)
  assert not np.allclose(train1, train2)
  assert not np.allclose(train1, eval1)
  np.testing.assert_array_equal(run(k1, True), train1)  # Same rng, same mask.


def test_bfloat16_compute_keeps_float32_params(pretraining):
  model, variables = pretraining
  bf16 = BertForPretraining(BertEncoder(**TINY, dtype=jnp.bfloat16))
  (mlm, nsp), aux = _apply(bf16, variables, 8, seed=1)  # The float32 tree serves both dtypes.
  (mlm32, _), _ = _apply(model, variables, 8, seed=1)
  assert aux["tokens"].dtype == jnp.bfloat16 and mlm.dtype == nsp.dtype == jnp.float32
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
  np.testing.assert_allclose(mlm, mlm32, atol=0.05)
