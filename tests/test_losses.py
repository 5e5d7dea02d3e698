"""Tests for ssljax.losses against float64 NumPy references written from the papers."""

import doctest
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssljax import losses
from ssljax.losses import contrastive_accuracy, info_nce, nt_xent

# Float32 implementation vs float64 reference.
RTOL, ATOL = 1e-5, 1e-5


# ----------------------------------------------------------------------------------------
# References: float64, one anchor at a time, straight from the formulas.


def _sim(a, b, normalize):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if normalize:
    return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
  return a @ b


def _log_sum_exp(xs):
  m = max(xs)
  return m + math.log(sum(math.exp(x - m) for x in xs))


def ref_nt_xent(z1, z2, temperature, normalize=True):
  """SimCLR eq. (1): l(i,j) = -log(exp(s_ij/t) / sum_{k != i} exp(s_ik/t)), mean over 2N."""
  z = np.concatenate([z1, z2]).astype(np.float64)
  two_n, n = len(z), len(z1)
  total = 0.0
  for i in range(two_n):
    j = (i + n) % two_n
    others = [_sim(z[i], z[k], normalize) / temperature for k in range(two_n) if k != i]
    total += _log_sum_exp(others) - _sim(z[i], z[j], normalize) / temperature
  return total / two_n


def ref_info_nce(queries, keys, temperature, negatives=None, normalize=True):
  """-log(exp(q_i.k_i/t) / sum over candidates), candidates = keys or [k_i] + negatives."""
  total = 0.0
  for i, q in enumerate(queries):
    candidates = keys if negatives is None else [keys[i], *negatives]
    logits = [_sim(q, c, normalize) / temperature for c in candidates]
    total += _log_sum_exp(logits) - _sim(q, keys[i], normalize) / temperature
  return total / len(queries)


def ref_accuracy(z1, z2, normalize=True):
  z = np.concatenate([z1, z2])
  two_n, n = len(z), len(z1)
  hits = 0
  for i in range(two_n):
    sims = {k: _sim(z[i], z[k], normalize) for k in range(two_n) if k != i}
    hits += max(sims, key=sims.get) == (i + n) % two_n
  return hits / two_n


def _jit(fn, **kwargs):
  # Jit whole calls: op-by-op dispatch compiles every primitive and dominates test time.
  return jax.jit(functools.partial(fn, **kwargs))


def _normal(seed, *shape, scale=1.0):
  return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


# ----------------------------------------------------------------------------------------
# Values against the references.

CASES = [  # (N, D, temperature, input scale)
  (1, 3, 0.5, 1.0),
  (4, 8, 0.5, 1.0),
  (8, 16, 0.1, 1.0),
  (16, 32, 0.05, 1.0),
  (16, 32, 0.05, 1e3),  # large inputs: normalisation must keep logits bounded
  (5, 7, 1.0, 1e-3),
]


@pytest.mark.parametrize("n,d,temperature,scale", CASES)
def test_nt_xent_matches_reference(n, d, temperature, scale):
  z1, z2 = _normal(0, n, d, scale=scale), _normal(1, n, d, scale=scale)
  got = _jit(nt_xent, temperature=temperature)(z1, z2)
  assert got.dtype == jnp.float32 and got.shape == ()
  np.testing.assert_allclose(got, ref_nt_xent(z1, z2, temperature), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("n,d,temperature,scale", CASES)
def test_info_nce_in_batch_matches_reference(n, d, temperature, scale):
  q, k = _normal(2, n, d, scale=scale), _normal(3, n, d, scale=scale)
  got = _jit(info_nce, temperature=temperature)(q, k)
  np.testing.assert_allclose(got, ref_info_nce(q, k, temperature), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("n,d,temperature,scale", CASES)
def test_info_nce_queue_matches_reference(n, d, temperature, scale):
  q, k = _normal(4, n, d, scale=scale), _normal(5, n, d, scale=scale)
  queue = _normal(6, 3 * n + 1, d, scale=scale)
  got = _jit(info_nce, temperature=temperature)(q, k, negatives=queue)
  want = ref_info_nce(q, k, temperature, negatives=queue)
  np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_unnormalized_matches_reference():
  # Raw dot products reach ~|z|^2 / t = 100s: exercises the max-shift.
  z1, z2, queue = _normal(7, 6, 4, scale=3.0), _normal(8, 6, 4, scale=3.0), _normal(9, 10, 4)
  got = jax.jit(
    lambda a, b, bank: (
      nt_xent(a, b, temperature=0.1, normalize=False),
      info_nce(a, b, temperature=0.1, normalize=False),
      info_nce(a, b, temperature=0.1, negatives=bank, normalize=False),
    )
  )(z1, z2, queue)
  want = (
    ref_nt_xent(z1, z2, 0.1, normalize=False),
    ref_info_nce(z1, z2, 0.1, normalize=False),
    ref_info_nce(z1, z2, 0.1, negatives=queue, normalize=False),
  )
  np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-4)


@pytest.mark.parametrize("normalize", [True, False])
def test_contrastive_accuracy_matches_reference(normalize):
  z1 = _normal(10, 32, 8)
  z2 = z1 + _normal(11, 32, 8, scale=0.7)  # some anchors right, some wrong
  got = _jit(contrastive_accuracy, normalize=normalize)(z1, z2)
  want = ref_accuracy(z1, z2, normalize)
  assert 0.0 < want < 1.0
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, atol=1e-7)


def test_info_nce_in_batch_is_a_lower_bound_of_nt_xent():
  # NT-Xent's denominators contain those of info_nce in both directions plus the
  # same-view negatives, so it is strictly larger than their mean.
  z1, z2 = _normal(12, 8, 16), _normal(13, 8, 16)
  one_way = _jit(info_nce, temperature=0.2)
  symmetric = 0.5 * (one_way(z1, z2) + one_way(z2, z1))
  assert symmetric < _jit(nt_xent, temperature=0.2)(z1, z2)


def test_docstring_examples():
  result = doctest.testmod(losses, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0


# ----------------------------------------------------------------------------------------
# Gradients against float64 central finite differences of the reference.


def _finite_difference_grad(f, x, h=1e-6):
  x = x.astype(np.float64)
  grad = np.zeros_like(x)
  for idx in np.ndindex(x.shape):
    up, down = x.copy(), x.copy()
    up[idx] += h
    down[idx] -= h
    grad[idx] = (f(up) - f(down)) / (2 * h)
  return grad


@pytest.mark.parametrize("normalize", [True, False])
def test_nt_xent_grad_matches_finite_differences(normalize):
  z1, z2, t = _normal(14, 3, 4), _normal(15, 3, 4), 0.2
  g1, g2 = jax.jit(jax.grad(functools.partial(nt_xent, temperature=t, normalize=normalize), argnums=(0, 1)))(z1, z2)
  fd1 = _finite_difference_grad(lambda a: ref_nt_xent(a, z2, t, normalize), z1)
  fd2 = _finite_difference_grad(lambda b: ref_nt_xent(z1, b, t, normalize), z2)
  np.testing.assert_allclose(g1, fd1, rtol=1e-3, atol=1e-4)
  np.testing.assert_allclose(g2, fd2, rtol=1e-3, atol=1e-4)


def test_info_nce_grad_matches_finite_differences():
  q, k, queue, t = _normal(16, 3, 4), _normal(17, 3, 4), _normal(18, 5, 4), 0.2
  for negatives in (None, queue):
    gq, gk = jax.jit(jax.grad(functools.partial(info_nce, temperature=t, negatives=negatives), argnums=(0, 1)))(q, k)
    fdq = _finite_difference_grad(lambda a: ref_info_nce(a, k, t, negatives), q)
    fdk = _finite_difference_grad(lambda b: ref_info_nce(q, b, t, negatives), k)
    np.testing.assert_allclose(gq, fdq, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(gk, fdk, rtol=1e-3, atol=1e-4)


# ----------------------------------------------------------------------------------------
# Sharding: the global-batch formulation must not depend on the device count.


def _mesh(num_devices):
  return jax.make_mesh(
    (num_devices,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices()[:num_devices]
  )


def test_loss_and_grads_equal_on_1_and_8_devices():
  assert jax.device_count() == 8, "tests/conftest.py should force 8 host devices"
  z1, z2, queue = _normal(19, 64, 32), _normal(20, 64, 32), _normal(21, 128, 32)

  def objectives(a, b, bank):
    return (
      nt_xent(a, b, temperature=0.1),
      info_nce(a, b, temperature=0.1),
      info_nce(a, b, temperature=0.1, negatives=bank),
      contrastive_accuracy(a, b),
    )

  def run(num_devices):
    sharding = NamedSharding(_mesh(num_devices), P("data"))
    a, b, bank = (jax.device_put(x, sharding) for x in (z1, z2, queue))
    assert len(a.sharding.device_set) == num_devices
    total = lambda *args: sum(objectives(*args)[:3])
    step = jax.jit(lambda *args: (objectives(*args), jax.grad(total, argnums=(0, 1, 2))(*args)))
    return step(a, b, bank)

  (values1, grads1), (values8, grads8) = run(1), run(8)
  for v1, v8 in zip(values1, values8):
    np.testing.assert_allclose(v8, v1, rtol=1e-5, atol=1e-5)
  # Negatives are global: the sharded loss is the full-batch loss, not a per-shard mean.
  np.testing.assert_allclose(values8[0], ref_nt_xent(z1, z2, 0.1), rtol=RTOL, atol=ATOL)
  for g1, g8 in zip(grads1, grads8):
    assert g8.sharding.is_equivalent_to(NamedSharding(_mesh(8), P("data")), 2)
    np.testing.assert_allclose(g8, g1, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------
# Edge cases.


def test_identical_orthogonal_views_reach_lower_bound():
  # Positive cosine 1, all 2N-2 negatives cosine 0: loss = log(1 + (2N-2) e^{-1/t}) -> 0.
  n, t = 4, 0.02
  z = np.eye(n, 8, dtype=np.float32) * 5.0
  loss = _jit(nt_xent, temperature=t)(z, z)
  np.testing.assert_allclose(loss, math.log1p((2 * n - 2) * math.exp(-1 / t)), atol=1e-7)
  assert 0.0 <= loss < 1e-6
  assert _jit(contrastive_accuracy)(z, z) == 1.0


def test_collapsed_embeddings_give_uniform_loss():
  # All 2N embeddings equal: every anchor is a uniform guess among 2N-1 candidates.
  z = np.ones((6, 4), np.float32)
  np.testing.assert_allclose(_jit(nt_xent, temperature=0.05)(z, z), math.log(11), rtol=1e-6)
  np.testing.assert_allclose(_jit(info_nce, temperature=0.05)(z, z), math.log(6), rtol=1e-6)


def test_bfloat16_inputs_are_computed_in_float32():
  z1, z2 = _normal(22, 32, 64), _normal(23, 32, 64)
  b1, b2 = z1.astype(jnp.bfloat16), z2.astype(jnp.bfloat16)
  loss_fn = _jit(nt_xent, temperature=0.05)
  loss = loss_fn(b1, b2)
  assert loss.dtype == jnp.float32
  # Upcast happens before any arithmetic: identical to float32 on the rounded inputs.
  rounded = loss_fn(b1.astype(jnp.float32), b2.astype(jnp.float32))
  np.testing.assert_allclose(loss, rounded, rtol=1e-6)
  np.testing.assert_allclose(loss, loss_fn(z1, z2), rtol=2e-2)
  queue_loss = jax.eval_shape(_jit(info_nce, temperature=0.05, negatives=b2), b1, b2)
  assert queue_loss.dtype == jnp.float32
  grad = jax.jit(jax.grad(functools.partial(nt_xent, temperature=0.05)))(b1, b2)
  assert grad.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(grad, np.float32)))


def test_zero_vector_gives_finite_loss_and_grads():
  z1, z2 = _normal(24, 4, 8), _normal(25, 4, 8)
  z1[2] = 0.0
  queue = np.zeros((3, 8), np.float32)
  for f in (
    functools.partial(nt_xent, temperature=0.05),
    functools.partial(info_nce, temperature=0.05),
    functools.partial(info_nce, temperature=0.05, negatives=queue),
  ):
    loss, grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(z1, z2)
    assert np.isfinite(loss)
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_learnable_temperature_is_traced():
  z1, z2 = _normal(26, 4, 8), _normal(27, 4, 8)
  grad_t = jax.jit(jax.grad(lambda t: nt_xent(z1, z2, temperature=t)))(jnp.float32(0.1))
  assert np.isfinite(grad_t) and grad_t != 0


@pytest.mark.parametrize(
  "call,match",
  [
    (lambda: nt_xent(np.ones((4,)), np.ones((4,))), r"`z1`.*rank 2.*\(4,\)"),
    (lambda: nt_xent(np.ones((4, 3)), np.ones((5, 3))), r"`z1` and `z2`.*\(4, 3\).*\(5, 3\)"),
    (lambda: nt_xent(np.ones((4, 3)), np.ones((4, 3)), temperature=0.0), r"`temperature`.*> 0"),
    (lambda: nt_xent(np.ones((4, 3)), np.ones((4, 3)), temperature=-1), r"`temperature`"),
    (lambda: nt_xent(np.ones((0, 3)), np.ones((0, 3))), r"`z1`.*non-empty"),
    (lambda: info_nce(np.ones((4, 3)), np.ones((4, 3, 1)), temperature=0.1), r"`keys`.*rank 2"),
    (lambda: info_nce(np.ones((4, 3)), np.ones((4, 2)), temperature=0.1), r"`queries` and `keys`"),
    (lambda: info_nce(np.ones((4, 3)), np.ones((4, 3)), temperature=float("nan")), r"`temperature`"),
    (
      lambda: info_nce(np.ones((4, 3)), np.ones((4, 3)), temperature=0.1, negatives=np.ones((7, 2))),
      r"`negatives`.*\(7, 2\)",
    ),
    (lambda: info_nce(np.ones((4, 3), np.int32), np.ones((4, 3)), temperature=0.1), r"`queries`.*floating"),
    (lambda: contrastive_accuracy(np.ones((4, 3)), np.ones((3, 3))), r"`z1` and `z2`"),
  ],
)
def test_bad_inputs_raise_value_error(call, match):
  with pytest.raises(ValueError, match=match):
    call()


# ----------------------------------------------------------------------------------------
# word2vec: SGNS and CBOW against word2vec's update rule in float64.


def _sigmoid(x):
  return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _neg_log_sigmoid(x):
  """-log sigmoid(x), without log(0) at large |x|."""
  return math.log1p(math.exp(-x)) if x >= 0 else -x + math.log1p(math.exp(x))


def ref_sgns(inputs, outputs, labels, input_mask, output_mask):
  """Per group: loss and gradients, one (context, output) pair at a time, as word2vec.c computes
  them: g = label - sigmoid(h.o); the loss falls by g * o along h and g * h along o."""
  inputs, outputs = inputs.astype(np.float64), outputs.astype(np.float64)
  loss = np.zeros(len(inputs))
  d_in, d_out = np.zeros_like(inputs), np.zeros_like(outputs)
  for b in range(len(inputs)):
    for c in range(inputs.shape[1]):
      if not input_mask[b, c]:
        continue
      for m in range(outputs.shape[1]):
        if not output_mask[b, m]:
          continue
        x = inputs[b, c] @ outputs[b, m]
        p = _sigmoid(x)
        loss[b] += _neg_log_sigmoid(x if labels[b, m] else -x)
        g = labels[b, m] - p
        d_in[b, c] -= g * outputs[b, m]
        d_out[b, m] -= g * inputs[b, c]
  return loss, d_in, d_out


def ref_cbow_ns(inputs, outputs, labels, input_mask, output_mask):
  inputs, outputs = inputs.astype(np.float64), outputs.astype(np.float64)
  loss = np.zeros(len(inputs))
  d_in, d_out = np.zeros_like(inputs), np.zeros_like(outputs)
  for b in range(len(inputs)):
    members = [c for c in range(inputs.shape[1]) if input_mask[b, c]]
    if not members:
      continue
    h = sum(inputs[b, c] for c in members) / len(members)
    d_h = np.zeros_like(h)
    for m in range(outputs.shape[1]):
      if not output_mask[b, m]:
        continue
      x = h @ outputs[b, m]
      p = _sigmoid(x)
      loss[b] += _neg_log_sigmoid(x if labels[b, m] else -x)
      g = labels[b, m] - p
      d_h -= g * outputs[b, m]
      d_out[b, m] -= g * h
    for c in members:
      d_in[b, c] = d_h / len(members)
  return loss, d_in, d_out


def _word2vec_case(seed, b=6, c=4, m=6, d=5, scale=0.7):
  rng = np.random.default_rng(seed)
  inputs = (scale * rng.standard_normal((b, c, d))).astype(np.float32)
  outputs = (scale * rng.standard_normal((b, m, d))).astype(np.float32)
  labels = np.zeros((b, m), np.float32)
  labels[:, 0] = 1.0
  input_mask = rng.random((b, c)) < 0.7
  input_mask[0] = False  # a group without contexts
  output_mask = rng.random((b, m)) < 0.8
  output_mask[:, 0] = True
  return inputs, outputs, labels, input_mask, output_mask


@pytest.mark.parametrize("loss_fn, reference", [(losses.sgns, ref_sgns), (losses.cbow_ns, ref_cbow_ns)])
@pytest.mark.parametrize("scale", [0.1, 0.7, 6.0])  # 6: logits of ~+-100, softplus must not overflow
def test_word2vec_losses_and_gradients_match_reference(loss_fn, reference, scale):
  inputs, outputs, labels, input_mask, output_mask = _word2vec_case(int(scale * 10), scale=scale)

  def total(i, o):
    per = loss_fn(i, o, labels, input_mask=input_mask, output_mask=output_mask)
    return per.sum(), per

  (_, per), (d_in, d_out) = jax.jit(jax.value_and_grad(total, argnums=(0, 1), has_aux=True))(inputs, outputs)
  want, want_in, want_out = reference(inputs, outputs, labels, input_mask, output_mask)
  assert per.shape == (len(inputs),) and per[0] == 0.0  # group 0 has no context
  rtol = 1e-5 if scale < 1 else 1e-4
  np.testing.assert_allclose(per, want, rtol=rtol, atol=1e-5)
  np.testing.assert_allclose(d_in, want_in, rtol=rtol, atol=1e-5)
  np.testing.assert_allclose(d_out, want_out, rtol=rtol, atol=1e-5)


def test_word2vec_losses_without_masks_count_every_pair():
  inputs, outputs, labels, _, _ = _word2vec_case(3)
  ones_in, ones_out = np.ones(inputs.shape[:2], bool), np.ones(outputs.shape[:2], bool)
  for loss_fn, reference in ((losses.sgns, ref_sgns), (losses.cbow_ns, ref_cbow_ns)):
    got = loss_fn(inputs, outputs, labels)
    np.testing.assert_allclose(got, reference(inputs, outputs, labels, ones_in, ones_out)[0], rtol=1e-5)


def test_word2vec_losses_reject_bad_shapes():
  inputs, outputs, labels, input_mask, _ = _word2vec_case(4)
  with pytest.raises(ValueError, match="outputs"):
    losses.sgns(inputs, outputs[:, :, :3], labels)
  with pytest.raises(ValueError, match="labels"):
    losses.cbow_ns(inputs, outputs, labels[:, :2])
  with pytest.raises(ValueError, match="input_mask"):
    losses.sgns(inputs, outputs, labels, input_mask=input_mask[:, :1])


# ----------------------------------------------------------------------------------------
# MAE: masked-patch reconstruction against MAE's forward_loss in float64.


def ref_mae_recon(pred, target, mask, norm_pix, eps=1e-6):
  """MAE's forward_loss: per-patch MSE, (loss * mask).sum() / mask.sum(); torch.var is unbiased."""
  pred, target = pred.astype(np.float64), target.astype(np.float64)
  if norm_pix:
    mean = target.mean(-1, keepdims=True)
    var = target.var(-1, keepdims=True, ddof=1)
    target = (target - mean) / (var + eps) ** 0.5
  per_patch = ((pred - target) ** 2).mean(-1)
  return (per_patch * mask).sum() / mask.sum()


def _mae_case(seed, n=2, length=5, dim=6):
  rng = np.random.default_rng(seed)
  pred = rng.standard_normal((n, length, dim)).astype(np.float32)
  target = (3.0 * rng.standard_normal((n, length, dim)) + 1.0).astype(np.float32)
  mask = (rng.random((n, length)) < 0.6).astype(np.float32)
  mask[:, 0] = 1.0
  return pred, target, mask


@pytest.mark.parametrize("norm_pix", [True, False])
def test_mae_recon_matches_reference(norm_pix):
  pred, target, mask = _mae_case(30)
  loss, grad = jax.jit(jax.value_and_grad(functools.partial(losses.mae_recon, norm_pix=norm_pix)))(pred, target, mask)
  assert loss.dtype == jnp.float32 and loss.shape == ()
  np.testing.assert_allclose(loss, ref_mae_recon(pred, target, mask, norm_pix), rtol=RTOL, atol=ATOL)
  fd = _finite_difference_grad(lambda p: ref_mae_recon(p, target, mask, norm_pix), pred)
  np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-6)
  # Visible patches get no gradient.
  assert np.all(np.asarray(grad)[mask == 0] == 0)


def test_mae_recon_edge_cases():
  pred, target, mask = _mae_case(31)
  # A constant target patch normalizes to zeros (var = 0 is guarded by eps), not NaN.
  target[0, 0] = 2.5
  got = losses.mae_recon(pred, target, mask)
  assert np.isfinite(got)
  np.testing.assert_allclose(got, ref_mae_recon(pred, target, mask, True), rtol=RTOL)
  # Nothing masked: zero, not 0/0.
  assert losses.mae_recon(pred, target, np.zeros_like(mask)) == 0.0


@pytest.mark.parametrize(
  "args,match",
  [
    (((2, 5, 6), (2, 5, 4), (2, 5)), r"\(2, 5, 6\), \(2, 5, 4\) and \(2, 5\)"),
    (((2, 5, 6), (2, 5, 6), (2, 6)), r"`mask` \(N, L\).*\(2, 6\)"),
    (((10, 6), (10, 6), (10,)), r"\(N, L, D\).*\(10, 6\)"),
    (((2, 5, 1), (2, 5, 1), (2, 5)), r"`norm_pix`.*D=1"),
  ],
)
def test_mae_recon_bad_shapes(args, match):
  pred, target, mask = (np.ones(shape, np.float32) for shape in args)
  with pytest.raises(ValueError, match=match):
    losses.mae_recon(pred, target, mask)


def test_masked_l2_counts_only_the_hole_and_matches_a_float64_reference():
  rng = np.random.default_rng(0)
  predictions, targets = rng.normal(size=(2, 4, 6, 6, 3)).astype(np.float32)
  mask = (rng.random((4, 6, 6)) < 0.3).astype(np.float32)
  loss = jax.jit(losses.masked_l2)
  expected = (((predictions.astype(np.float64) - targets) ** 2).sum(-1) * mask).sum() / (mask.sum() * 3)
  np.testing.assert_allclose(float(loss(predictions, targets, mask)), expected, rtol=1e-6)
  changed = np.where(mask[..., None] == 1, predictions, predictions + 100.0)  # different everywhere but the hole
  assert float(loss(changed, targets, mask)) == float(loss(predictions, targets, mask))
  assert float(loss(predictions, targets, np.zeros_like(mask))) == 0.0
  with pytest.raises(ValueError, match=r"\(N, H, W\) `mask`"):
    losses.masked_l2(predictions, targets, mask[..., None])


# ----------------------------------------------------------------------------------------
# Context Encoders' adversarial terms and colorization's soft-target cross-entropy, in float64.


def ref_gan_generator(fake_logits):
  """-log D(fake), D the sigmoid of the logit, averaged: Goodfellow et al.'s non-saturating generator loss."""
  d_fake = 1.0 / (1.0 + np.exp(-fake_logits.astype(np.float64)))
  return np.mean(-np.log(d_fake))


def ref_gan_discriminator(real_logits, fake_logits):
  """-log D(real) - log(1 - D(fake)), each side averaged over its own images."""
  d_real = 1.0 / (1.0 + np.exp(-real_logits.astype(np.float64)))
  d_fake = 1.0 / (1.0 + np.exp(-fake_logits.astype(np.float64)))
  return np.mean(-np.log(d_real)) + np.mean(-np.log(1.0 - d_fake))


def ref_soft_cross_entropy(logits, targets):
  """-sum_k t_k log softmax(l)_k at each position, one position at a time, averaged."""
  logits, targets = logits.astype(np.float64), targets.astype(np.float64)
  flat_l, flat_t = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1, targets.shape[-1])
  per = []
  for row, t in zip(flat_l, flat_t):
    log_p = row - _log_sum_exp(row)
    per.append(-np.sum(t * log_p))
  return np.mean(per)


def _soft_targets(seed, *shape):
  weights = np.random.default_rng(seed).random(shape) ** 3  # uneven, some bins near 0
  return (weights / weights.sum(-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_gan_losses_and_gradients_match_reference(scale):
  real, fake = _normal(40, 6, scale=scale), _normal(41, 5, scale=scale)
  g_loss, g_grad = jax.jit(jax.value_and_grad(losses.gan_generator))(fake)
  np.testing.assert_allclose(g_loss, ref_gan_generator(fake), rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(g_grad, _finite_difference_grad(ref_gan_generator, fake), rtol=1e-4, atol=1e-6)
  d_loss, (d_real, d_fake) = jax.jit(jax.value_and_grad(losses.gan_discriminator, argnums=(0, 1)))(real, fake)
  np.testing.assert_allclose(d_loss, ref_gan_discriminator(real, fake), rtol=RTOL, atol=ATOL)
  fd_real = _finite_difference_grad(lambda r: ref_gan_discriminator(r, fake), real)
  fd_fake = _finite_difference_grad(lambda f: ref_gan_discriminator(real, f), fake)
  np.testing.assert_allclose(d_real, fd_real, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(d_fake, fd_fake, rtol=1e-4, atol=1e-6)
  assert g_loss.dtype == d_loss.dtype == jnp.float32


def test_gan_losses_stay_finite_for_confident_discriminators():
  # softplus, not log(sigmoid): a logit of +-100 would round D to exactly 0 or 1 in float32.
  logits = jnp.array([-100.0, 100.0])
  np.testing.assert_allclose(losses.gan_generator(logits), 50.0, rtol=1e-6)
  np.testing.assert_allclose(losses.gan_discriminator(logits, logits), 100.0, rtol=1e-6)
  assert np.all(np.isfinite(jax.grad(losses.gan_generator)(logits)))


@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 4, 7)])
def test_soft_cross_entropy_and_gradient_match_reference(shape):
  logits, targets = _normal(42, *shape, scale=3.0), _soft_targets(43, *shape)
  loss, grad = jax.jit(jax.value_and_grad(losses.soft_cross_entropy))(logits, targets)
  assert loss.dtype == jnp.float32 and loss.shape == ()
  np.testing.assert_allclose(loss, ref_soft_cross_entropy(logits, targets), rtol=RTOL, atol=ATOL)
  fd = _finite_difference_grad(lambda x: ref_soft_cross_entropy(x, targets), logits)
  np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-6)
  # vmapped over the first axis it is the per-row loss, whose mean is the whole loss.
  rows = jax.vmap(losses.soft_cross_entropy)(logits, targets)
  np.testing.assert_allclose(rows.mean(), loss, rtol=1e-6)


def test_soft_cross_entropy_of_one_hot_targets_is_the_integer_cross_entropy():
  logits, labels = _normal(44, 8, 6, scale=2.0), np.arange(8) % 6
  one_hot = np.eye(6, dtype=np.float32)[labels]
  want = -np.mean(jax.nn.log_softmax(logits)[np.arange(8), labels])
  np.testing.assert_allclose(losses.soft_cross_entropy(logits, one_hot), want, rtol=1e-6)
  # Logits in the thousands: the max is subtracted before the exponential.
  assert np.isfinite(losses.soft_cross_entropy(1e4 * logits, one_hot))


@pytest.mark.parametrize(
  "call,match",
  [
    (lambda: losses.gan_generator(np.zeros((4, 1))), r"`fake_logits` must be \(N,\).*\(4, 1\)"),
    (lambda: losses.gan_discriminator(np.zeros(4), np.zeros((4, 1))), r"\(4,\) and \(4, 1\)"),
    (lambda: losses.soft_cross_entropy(np.zeros((4, 3)), np.zeros((4, 2))), r"\(4, 3\) and \(4, 2\)"),
    (lambda: losses.soft_cross_entropy(np.zeros(()), np.zeros(())), r"same shape \(\.\.\., K\)"),
  ],
)
def test_gan_and_soft_cross_entropy_reject_bad_shapes(call, match):
  with pytest.raises(ValueError, match=match):
    call()


# ----------------------------------------------------------------------------------------
# CPC and CLIP.


def ref_cpc(predictions, encodings, self_negatives=True):
  """CPC eq. (4), one prediction at a time: candidates are every example's z at step t + k of the same sequence,
  and (self_negatives) the other steps of the own sequence; mean over predictions per k, then over k."""
  p, z = np.asarray(predictions, np.float64), np.asarray(encodings, np.float64)
  b, g, t, k_max, _ = p.shape
  per_k, accuracy = [], []
  for k in range(1, k_max + 1):
    losses_k, hits = [], []
    for i in range(b):
      for s in range(g):
        for step in range(t - k):
          pred = p[i, s, step, k - 1]
          candidates = [z[j, s, step + k] for j in range(b)]
          if self_negatives:
            candidates += [z[i, s, u] for u in range(t) if u != step + k]
          logits = [pred @ c for c in candidates]
          losses_k.append(_log_sum_exp(logits) - logits[i])
          hits.append(int(np.argmax(logits)) == i)
    per_k.append(np.mean(losses_k))
    accuracy.append(np.mean(hits))
  return np.mean(per_k), np.array(accuracy)


@pytest.mark.parametrize("self_negatives", [True, False])
@pytest.mark.parametrize("b,g,t,k", [(3, 1, 6, 3), (4, 2, 4, 1)])
def test_cpc_matches_reference(b, g, t, k, self_negatives):
  d = 5
  z = _normal(30, b * g * t, d).reshape(b, g, t, d)
  # Predictions near the truth for k = 1, noise beyond: the accuracies differ by k.
  preds = _normal(31, b * g * t * k, d).reshape(b, g, t, k, d)
  preds[:, :, :-1, 0] += 3 * z[:, :, 1:]
  got_loss, got_acc = jax.jit(functools.partial(losses.cpc, self_negatives=self_negatives))(preds, z)
  want_loss, want_acc = ref_cpc(preds, z, self_negatives)
  np.testing.assert_allclose(got_loss, want_loss, rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(got_acc, want_acc, atol=1e-6)
  grad = jax.grad(lambda p: losses.cpc(p, z, self_negatives=self_negatives)[0])(preds)
  eps, where = 1e-3, (0, 0, 0, 0, 1)
  bumped = preds.copy()
  bumped[where] += eps
  numeric = (ref_cpc(bumped, z, self_negatives)[0] - want_loss) / eps
  np.testing.assert_allclose(grad[where], numeric, rtol=2e-2, atol=1e-4)


def test_cpc_refuses_steps_beyond_the_sequence():
  with pytest.raises(ValueError, match="K=4 prediction steps need sequences longer than K steps, got T=4"):
    losses.cpc(jnp.zeros((2, 1, 4, 4, 3)), jnp.zeros((2, 1, 4, 3)))
  with pytest.raises(ValueError, match="`encodings` must be"):
    losses.cpc(jnp.zeros((2, 1, 4, 2, 3)), jnp.zeros((2, 1, 5, 3)))


def ref_clip(images, texts, logit_scale):
  """CLIP's Figure 3: cross-entropy of image->text and text->image logits exp(s) * cos, averaged."""
  a = np.asarray(images, np.float64)
  b = np.asarray(texts, np.float64)
  a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
  logits = math.exp(logit_scale) * a @ b.T

  def ce(m):
    return np.mean([_log_sum_exp(list(row)) - row[i] for i, row in enumerate(m)])

  return (ce(logits) + ce(logits.T)) / 2


@pytest.mark.parametrize("logit_scale", [0.0, math.log(1 / 0.07), math.log(100.0)])
def test_clip_loss_matches_reference_and_learns_its_temperature(logit_scale):
  a, b = _normal(40, 7, 6), _normal(41, 7, 6)
  got = jax.jit(lambda a, b, s: losses.clip_loss(a, b, logit_scale=s))(a, b, jnp.float32(logit_scale))
  np.testing.assert_allclose(got, ref_clip(a, b, logit_scale), rtol=RTOL, atol=ATOL)
  grad = jax.grad(lambda s: losses.clip_loss(a, b, logit_scale=s), argnums=0)(jnp.float32(logit_scale))
  numeric = (ref_clip(a, b, logit_scale + 1e-4) - ref_clip(a, b, logit_scale - 1e-4)) / 2e-4
  np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-4)


def test_clip_logits_are_the_scaled_cosines_of_every_image_and_text():
  a, b = _normal(45, 5, 6), _normal(46, 5, 6)
  unit = lambda x: np.asarray(x, np.float64) / np.linalg.norm(np.asarray(x, np.float64), axis=1, keepdims=True)
  got = losses.clip_logits(a, b, logit_scale=jnp.float32(math.log(20.0)))
  np.testing.assert_allclose(got, 20.0 * unit(a) @ unit(b).T, rtol=RTOL, atol=ATOL)


def test_info_nce_logits_are_algorithm_1s():
  q, k, queue = _normal(42, 4, 3), _normal(43, 4, 3), _normal(44, 6, 3)
  logits, labels = losses.info_nce_logits(q, k, temperature=0.2, negatives=queue)
  n = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  want = np.concatenate([np.sum(n(q) * n(k), axis=1, keepdims=True), n(q) @ n(queue).T], axis=1) / 0.2
  np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
  assert labels.tolist() == [0, 0, 0, 0]
