"""Tests for ssljax.models.transformer: the shared Transformer block, random position orders, and BERT's
encoder, pre-training heads and classifier.

Checked against hand-written float64 NumPy references rather than another library, so the tests say
what is computed: masked and causal attention, the pre-LN and post-LN block (and that BERT's former layout,
separate query/key/value, maps onto it), the tied MLM projection, published sizes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from ssljax.models.transformer import (
  BERT_SIZES,
  BertClassifier,
  BertEncoder,
  BertForPretraining,
  TransformerBlock,
  bert_encoder,
  bert_init,
  random_order,
)

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


def _softmax_attention(q, k, v, allowed):
  """(B, T, heads, d) q, k, v; allowed broadcastable to (B, heads, T, T). Hidden keys get no weight."""
  b, t, heads, d = q.shape
  scores = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d)
  scores = np.where(allowed, scores, -np.inf)
  w = np.exp(scores - scores.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  return np.einsum("bhqk,bkhd->bqhd", w, v).reshape(b, t, heads * d)


def _allowed(mask, t, causal):
  allowed = np.ones((1, 1, t, t), bool)
  if mask is not None:
    allowed = allowed & mask[:, None, None, :]
  if causal:
    allowed = allowed & (np.arange(t)[None, :] <= np.arange(t)[:, None])
  return allowed


def _attention(x, mask, p, heads, causal=False):
  """Multi-head self-attention with the fused qkv kernel, float64."""
  b, t, h = x.shape
  q, k, v = np.split(_dense(x, p["qkv"]).reshape(b, t, 3, heads, h // heads), 3, axis=2)
  return _dense(_softmax_attention(q[:, :, 0], k[:, :, 0], v[:, :, 0], _allowed(mask, t, causal)), p["proj"])


def _block(x, mask, p, heads, *, pre_norm, causal, eps):
  """TransformerBlock in float64, from its definition (no dropout)."""
  norm = lambda y, name: _layer_norm(y, p[name], eps)
  mlp = lambda y: _dense(_gelu(_dense(y, p["mlp"]["fc1"])), p["mlp"]["fc2"])
  attn = lambda y: _attention(y, mask, p["attn"], heads, causal)
  if pre_norm:
    x = x + attn(norm(x, "norm1"))
    return x + mlp(norm(x, "norm2"))
  x = norm(x + attn(x), "norm1")
  return norm(x + mlp(x), "norm2")


def _old_bert_block(x, mask, p, heads):
  """The BERT block as ssljax wrote it before the block was shared, in its own parameter layout (separate
  query/key/value/output kernels, attention_norm, intermediate, output, output_norm), float64."""
  b, t, h = x.shape
  split = lambda y: y.reshape(b, t, heads, h // heads)
  a = p["attention"]
  q, k, v = (split(_dense(x, a[name])) for name in ("query", "key", "value"))
  attn = _dense(_softmax_attention(q, k, v, mask[:, None, None, :]), a["output"])
  y = _layer_norm(x + attn, p["attention_norm"])
  return _layer_norm(y + _dense(_gelu(_dense(y, p["intermediate"])), p["output"]), p["output_norm"])


def _old_to_shared(p):
  """The old BERT block layout onto TransformerBlock's names: query/key/value are qkv's column blocks."""
  a = p["attention"]
  cat = lambda leaf, axis: np.concatenate([a[name][leaf] for name in ("query", "key", "value")], axis=axis)
  return {
    "attn": {"qkv": {"kernel": cat("kernel", 1), "bias": cat("bias", 0)}, "proj": a["output"]},
    "norm1": p["attention_norm"],
    "mlp": {"fc1": p["intermediate"], "fc2": p["output"]},
    "norm2": p["output_norm"],
  }


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

  attn = _attention(x, mask, params["blocks_0"]["attn"], TINY["heads"])
  np.testing.assert_allclose(inter["blocks_0"]["attn"]["__call__"][0], attn, atol=1e-5)

  p = params["blocks_0"]  # The rest of the post-LN block.
  y = _layer_norm(x + attn, p["norm1"])
  y = _layer_norm(y + _dense(_gelu(_dense(y, p["mlp"]["fc1"])), p["mlp"]["fc2"]), p["norm2"])
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


# ----------------------------------------------------------------------------------------
# The shared block and random position orders.

H, HEADS, MLP_DIM, T = 16, 2, 32, 6
BLOCK_LENGTHS = (6, 4)  # the second row is padded


def _block_inputs() -> tuple[np.ndarray, np.ndarray]:
  x = np.random.default_rng(3).standard_normal((2, T, H)).astype(np.float32)
  return x, np.arange(T)[None] < np.array(BLOCK_LENGTHS)[:, None]


def _random_params(shapes, seed: int):
  # Every leaf random, LayerNorm scales and biases too, so the reference sees where each norm sits.
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: (0.3 * rng.standard_normal(a.shape)).astype(np.float32), shapes)


@pytest.mark.parametrize(
  "pre_norm, causal, padded, eps",
  [
    (True, False, False, 1e-6),  # ViT / MAE
    (False, False, True, 1e-12),  # BERT
    (True, True, True, 1e-5),  # a causal text tower over padded rows
    (False, True, False, 1e-12),
  ],
)
def test_block_matches_numpy_reference(pre_norm, causal, padded, eps):
  block = TransformerBlock(H, HEADS, MLP_DIM, pre_norm=pre_norm, causal=causal, ln_epsilon=eps)
  x, mask = _block_inputs()
  mask = mask if padded else None
  params = _random_params(jax.eval_shape(lambda: block.init(KEY, x, mask, train=False))["params"], seed=4)
  out = jax.jit(lambda p: block.apply({"params": p}, x, mask, train=False))(params)
  expected = _block(_np(x), mask, jax.tree.map(_np, params), HEADS, pre_norm=pre_norm, causal=causal, eps=eps)
  np.testing.assert_allclose(out, expected, atol=1e-5)


def test_bert_block_takes_its_former_layout_weights():
  """BERT's parameter names changed when its block became the shared one; its function did not."""
  rng = np.random.default_rng(5)
  dense = lambda i, o: {"kernel": 0.2 * rng.standard_normal((i, o)), "bias": 0.1 * rng.standard_normal(o)}
  norm = lambda: {"scale": 1 + 0.1 * rng.standard_normal(H), "bias": 0.1 * rng.standard_normal(H)}
  old = {
    "attention": {name: dense(H, H) for name in ("query", "key", "value", "output")},
    "attention_norm": norm(),
    "intermediate": dense(H, MLP_DIM),
    "output": dense(MLP_DIM, H),
    "output_norm": norm(),
  }
  old = jax.tree.map(lambda a: a.astype(np.float32), old)
  block = TransformerBlock(H, HEADS, MLP_DIM, dropout=0.1, pre_norm=False, ln_epsilon=1e-12, kernel_init=bert_init)
  x, mask = _block_inputs()
  shared = _old_to_shared(old)
  shapes = jax.eval_shape(lambda: block.init(KEY, x, mask, train=False))["params"]
  assert jax.tree.map(np.shape, shared) == jax.tree.map(lambda a: a.shape, shapes)
  out = jax.jit(lambda p: block.apply({"params": p}, x, mask, train=False))(shared)
  np.testing.assert_allclose(out, _old_bert_block(_np(x), mask, jax.tree.map(_np, old), HEADS), atol=1e-6)


def test_hidden_keys_change_nothing_at_all():
  x, mask = _block_inputs()
  causal = TransformerBlock(H, HEADS, MLP_DIM, causal=True)
  variables = jax.jit(lambda: causal.init(KEY, x, mask, train=False))()

  @jax.jit
  def run(x):
    both = TransformerBlock(H, HEADS, MLP_DIM, causal=False).apply(variables, x, mask, train=False)
    return causal.apply(variables, x, mask, train=False), both

  base, base_both = run(x)
  later = x.copy()
  later[:, 3:] += 5.0  # positions 3.. of both rows
  out, out_both = run(later)
  # Masked keys get weight exactly 0, so the earlier outputs are the same bits, not merely close.
  np.testing.assert_array_equal(out[:, :3], base[:, :3])
  assert not np.allclose(out_both[:, :3], base_both[:, :3])  # bidirectional: the past sees the future
  n = BLOCK_LENGTHS[1]
  padded = x.copy()
  padded[1, n:] += 5.0
  out, out_both = run(padded)
  np.testing.assert_array_equal(out[1, :n], base[1, :n])
  np.testing.assert_array_equal(out_both[1, :n], base_both[1, :n])
  with pytest.raises(ValueError, match=r"mask must be \(batch, length\) = \(2, 6\), got shape \(2, 5\)"):
    causal.apply(variables, x, mask[:, :5], train=False)


def test_random_order_is_the_argsort_of_uniform_noise_excluded_last():
  shape = (2000, 10)
  order = np.asarray(random_order(KEY, shape))
  # MAE's masking draws exactly this (its runs reproduce only if it stays so).
  np.testing.assert_array_equal(order, np.argsort(np.asarray(jax.random.uniform(KEY, shape)), axis=1, kind="stable"))
  exclude = np.zeros(shape, bool)
  exclude[:, [0, 4, 9]] = True
  exclude[:3] = True  # rows with nothing to choose
  order = np.asarray(random_order(KEY, shape, exclude=jnp.asarray(exclude)))
  assert order.dtype == np.int32
  for row, ex in zip(order, exclude):
    n = int((~ex).sum())
    np.testing.assert_array_equal(np.sort(row), np.arange(10))
    assert not ex[row[:n]].any()
    np.testing.assert_array_equal(row[n:], np.flatnonzero(ex))  # excluded last, in position order
  # Uniform: each allowed position comes first in about 1/7 of the rows (5.5 standard deviations either side).
  counts = np.bincount(order[3:, 0], minlength=10)[~exclude[3]]
  assert np.all(np.abs(counts - 1997 / 7) < 0.3 * 1997 / 7), counts
