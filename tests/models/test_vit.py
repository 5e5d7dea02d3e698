"""Tests for ssljax.models.vit: patches, sin-cos positions, MAE's masking, the ViT encoder and MAE.

References are NumPy loops written from MAE's code (patchify, get_2d_sincos_pos_embed) and published
parameter counts; big models are only traced (jax.eval_shape), never allocated.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax.losses import mae_recon
from ssljax.models.vit import MAE, VIT_SIZES, ViT, patchify, random_masking, sincos_pos_embed_2d, unpatchify, vit

# threefry's samplers compile slowly on CPU; RBG keys compile in a blink (as in test_models.py).
KEY = jax.random.key(0, impl="unsafe_rbg")
TINY = dict(patch_size=4, hidden=16, depth=2, heads=2)
IMAGES = np.random.default_rng(0).standard_normal((3, 8, 12, 2)).astype(np.float32)  # 2x3 grid
GRID, L = (2, 3), 6


def _num_params(params) -> int:
  return sum(x.size for x in jax.tree.leaves(params))


# ----------------------------------------------------------------------------------------
# Patches and position embeddings.


def ref_patchify(images, p):
  """MAE: reshape (N, C, h, p, w, p), einsum 'nchpwq->nhwpqc', one patch at a time here."""
  n, h, w, c = images.shape
  out = []
  for i in range(h // p):
    for j in range(w // p):
      out.append(images[:, i * p : (i + 1) * p, j * p : (j + 1) * p, :].reshape(n, p * p * c))
  return np.stack(out, axis=1)


def ref_sincos(dim, gh, gw):
  """MAE's get_2d_sincos_pos_embed, generalized to gh x gw: meshgrid(w, h), w's half first."""

  def one_d(d, pos):
    omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)

  grid = np.stack(np.meshgrid(np.arange(gw, dtype=np.float64), np.arange(gh, dtype=np.float64)))
  return np.concatenate([one_d(dim // 2, grid[0]), one_d(dim // 2, grid[1])], axis=1)


def test_patchify_matches_reference_and_round_trips():
  patches = patchify(jnp.asarray(IMAGES), 4)
  assert patches.shape == (3, L, 4 * 4 * 2)
  np.testing.assert_array_equal(patches, ref_patchify(IMAGES, 4))
  np.testing.assert_array_equal(unpatchify(patches, 4, 2, GRID), IMAGES)


def test_patchify_bad_size():
  with pytest.raises(ValueError, match=r"8x12.*patch size 5"):
    patchify(jnp.asarray(IMAGES), 5)
  with pytest.raises(ValueError, match=r"grid"):
    unpatchify(jnp.zeros((1, 5, 32)), 4, 2, GRID)


def test_sincos_matches_mae():
  emb = sincos_pos_embed_2d(16, 3, 5)
  assert emb.shape == (15, 16) and emb.dtype == np.float32
  np.testing.assert_allclose(emb, ref_sincos(16, 3, 5), atol=1e-7)
  np.testing.assert_allclose(sincos_pos_embed_2d(8, 4, 4), ref_sincos(8, 4, 4), atol=1e-7)
  with pytest.raises(ValueError, match="divisible by 4, got 6"):
    sincos_pos_embed_2d(6, 2, 2)


# ----------------------------------------------------------------------------------------
# Masking.


@pytest.fixture(scope="module")
def masking():
  return jax.jit(functools.partial(random_masking, batch=4, num_patches=16, mask_ratio=0.75))(KEY)


def test_random_masking_shapes_and_counts(masking):
  keep_idx, mask, restore_idx = masking
  assert keep_idx.shape == (4, 4) and keep_idx.dtype == jnp.int32
  assert mask.shape == restore_idx.shape == (4, 16) and mask.dtype == jnp.float32
  keep_idx, mask, restore_idx = map(np.asarray, masking)
  np.testing.assert_array_equal(mask.sum(1), 12)
  for row in range(4):
    assert len(set(keep_idx[row])) == 4  # distinct patches
    np.testing.assert_array_equal(mask[row, keep_idx[row]], 0)  # kept = unmasked
    assert sorted(restore_idx[row]) == list(range(16))  # a permutation
  assert len({tuple(sorted(r)) for r in keep_idx}) == 4  # a different draw per example


def test_random_masking_restore_unshuffles(masking):
  keep_idx, mask, restore_idx = map(np.asarray, masking)
  values = np.arange(100, 164).reshape(4, 16)
  kept = np.take_along_axis(values, keep_idx, 1)
  removed = np.stack([values[r][mask[r] == 1] for r in range(4)])  # any order: masked positions
  restored = np.take_along_axis(np.concatenate([kept, np.full_like(removed, -1)], 1), restore_idx, 1)
  # Kept values return to their positions; every other position receives a filler.
  np.testing.assert_array_equal(restored == -1, mask == 1)
  np.testing.assert_array_equal(restored[mask == 0], values[mask == 0])


def test_random_masking_is_deterministic_per_key(masking):
  again = random_masking(KEY, 4, 16, 0.75)
  other = random_masking(jax.random.key(1, impl="unsafe_rbg"), 4, 16, 0.75)
  for a, b in zip(masking, again):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(masking[1], other[1])


def test_random_masking_keeps_at_least_one():
  keep_idx, mask, _ = random_masking(KEY, 2, 16, 0.99)
  assert keep_idx.shape == (2, 1) and float(mask.sum()) == 30


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5])
def test_random_masking_bad_ratio(ratio):
  with pytest.raises(ValueError, match=f"mask_ratio.*{ratio}"):
    random_masking(KEY, 2, 16, ratio)


# ----------------------------------------------------------------------------------------
# ViT and MAE, on one tiny MAE's parameters (each compile costs seconds on CPU; few are made).

TINY_MAE = dict(decoder_hidden=8, decoder_depth=1, decoder_heads=2)


@pytest.fixture(scope="module")
def tiny_mae():
  model = MAE(ViT(**TINY), **TINY_MAE)
  keep_idx, mask, restore_idx = random_masking(KEY, 3, L, 0.5)
  params = jax.jit(lambda x, k, r: model.init(KEY, x, k, r, train=False))(IMAGES, keep_idx, restore_idx)["params"]
  return model, params, (keep_idx, mask, restore_idx)


def test_vit_output_shapes(tiny_mae):
  _, params, _ = tiny_mae

  @jax.jit
  def both_pools(p, x):
    return [ViT(**TINY, pool=pool).apply({"params": p}, x, train=True) for pool in ("cls", "mean")]

  (cls, cls_aux), (mean, mean_aux) = both_pools(params["encoder"], IMAGES)
  for pooled, aux in ((cls, cls_aux), (mean, mean_aux)):
    assert pooled.shape == (3, 16) and aux["tokens"].shape == (3, 1 + L, 16)
    np.testing.assert_array_equal(aux["pre_logits"], pooled)
  np.testing.assert_array_equal(cls, cls_aux["tokens"][:, 0])
  np.testing.assert_allclose(mean, mean_aux["tokens"][:, 1:].mean(1), rtol=1e-6)


def test_vit_keep_idx_gathers_tokens(tiny_mae):
  # Attention without masks is permutation-equivariant and positions are added before the gather,
  # so keeping every patch in any order permutes the patch tokens and leaves [CLS] unchanged.
  model, params, _ = tiny_mae
  encoder, params = model.encoder, params["encoder"]
  identity = np.tile(np.arange(L, dtype=np.int32), (3, 1))
  perm = np.stack([np.arange(L), np.arange(L)[::-1], np.roll(np.arange(L), 2)]).astype(np.int32)
  subset = perm[:, :2]
  # A subset sees only its own patches: changing a dropped patch's pixels must change nothing.
  changed = IMAGES.copy()
  for row in range(3):
    dropped = [k for k in range(L) if k not in subset[row]][0]
    i, j = divmod(dropped, GRID[1])
    changed[row, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4] += 10.0

  @jax.jit
  def run(p):
    tokens = lambda x, k: encoder.apply({"params": p}, x, train=False, keep_idx=k)[1]["tokens"]
    return (
      tokens(IMAGES, None),
      tokens(IMAGES, identity),
      tokens(IMAGES, perm),
      tokens(IMAGES, subset),
      tokens(changed, subset),
    )

  full, same, permuted, sub, sub_changed = run(params)
  np.testing.assert_allclose(same, full, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(permuted[:, 0], full[:, 0], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(permuted[:, 1:], np.take_along_axis(full[:, 1:], perm[..., None], 1), rtol=1e-5, atol=1e-5)
  assert sub.shape == (3, 3, 16)
  np.testing.assert_array_equal(sub, sub_changed)


def test_vit_init_follows_mae(tiny_mae):
  _, params, _ = tiny_mae
  enc = params["encoder"]
  # timm/MAE's names, so an MAE checkpoint maps over by name.
  block = enc["blocks_0"]
  assert (set(block), set(block["attn"]), set(block["mlp"])) == (
    {"norm1", "attn", "norm2", "mlp"},
    {"qkv", "proj"},
    {"fc1", "fc2"},
  )
  assert set(params["decoder_blocks_0"]) == set(block)
  qkv = block["attn"]["qkv"]
  bound = np.sqrt(6 / (16 + 48))  # xavier_uniform on the fused (H, 3H) kernel
  assert bound >= np.abs(qkv["kernel"]).max() > 0.8 * bound
  assert np.all(qkv["bias"] == 0) and np.all(enc["norm"]["scale"] == 1)
  assert enc["patch_embed"]["kernel"].shape == (4 * 4 * 2, 16)
  for token in (enc["cls_token"], params["mask_token"]):  # normal(0.02)
    assert 0 < np.abs(token).max() < 0.1


def test_vit_b16_param_count():
  # Per block: 2 LayerNorms 4H, qkv 3H^2 + 3H, proj H^2 + H, MLP 8H^2 + 5H.
  h, depth, p = 768, 12, 16
  analytic = (p * p * 3 * h + h) + h + depth * (12 * h * h + 13 * h) + 2 * h
  model = vit("B", 16)
  params = jax.eval_shape(lambda: model.init(KEY, jnp.zeros((1, 224, 224, 3)), train=False))["params"]
  assert _num_params(params) == analytic
  # timm's vit_base_patch16_224 without its head: 85,798,656, which counts the (learned there,
  # fixed here) 197 x 768 position embedding.
  assert analytic + 197 * h == 85_798_656
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))


def test_vit_sizes_and_bfloat16():
  assert {k: (v["hidden"], v["depth"], v["heads"]) for k, v in VIT_SIZES.items()} == {
    "Ti": (192, 12, 3),
    "S": (384, 12, 6),
    "B": (768, 12, 12),
    "L": (1024, 24, 16),
    "H": (1280, 32, 16),
  }
  model = vit("Ti", 16, dtype=jnp.bfloat16, depth=1)
  (pooled, aux), variables = jax.eval_shape(lambda: model.init_with_output(KEY, jnp.zeros((2, 32, 32, 3)), train=False))
  assert pooled.dtype == jnp.bfloat16 and aux["tokens"].shape == (2, 5, 192)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
  with pytest.raises(ValueError, match="Unknown ViT size 'XL'.*Ti, S, B, L, H"):
    vit("XL", 16)


def test_mae_loss_only_on_masked_patches_and_grads_flow(tiny_mae):
  model, params, (keep_idx, mask, restore_idx) = tiny_mae
  mask = np.asarray(mask)

  def loss_fn(p):
    pred, aux = model.apply({"params": p}, IMAGES, keep_idx, restore_idx, train=True)
    return mae_recon(pred, patchify(jnp.asarray(IMAGES), 4), mask), (pred, aux)

  (loss, (pred, aux)), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
  assert pred.shape == (3, L, 4 * 4 * 2) and pred.dtype == jnp.float32
  assert aux["tokens"].shape == (3, 1 + 3, 16) and aux["pre_logits"].shape == (3, 16)
  assert aux["decoder_tokens"].shape == (3, 1 + L, 8)
  assert np.isfinite(loss) and loss > 0
  # Every parameter gets a gradient, the encoder's through the visible patches only.
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert np.abs(g).max() > 0, jax.tree_util.keystr(path)
  # Changing the prediction at visible patches leaves the loss unchanged, at masked ones changes it.
  pred = np.asarray(pred)
  recon = jax.jit(jax.vmap(lambda x: mae_recon(x, patchify(jnp.asarray(IMAGES), 4), mask)))
  base, visible_moved, masked_moved = recon(
    np.stack(
      [pred, np.where((mask == 0)[..., None], pred + 5.0, pred), np.where((mask == 1)[..., None], pred + 5.0, pred)]
    )
  )
  np.testing.assert_allclose(base, loss, rtol=1e-6)
  np.testing.assert_allclose(visible_moved, base, rtol=1e-6)
  assert masked_moved > base + 1.0


def test_mae_bad_restore_idx(tiny_mae):
  model, params, (keep_idx, _, restore_idx) = tiny_mae
  with pytest.raises(ValueError, match=r"restore_idx.*\(3, 6\)"):
    jax.eval_shape(lambda: model.apply({"params": params}, IMAGES, keep_idx, restore_idx[:, :4], train=False))


def test_mae_vit_b16_decoder_param_count():
  # MAE's ViT-B/16: 512 wide, 8 deep, 16 heads; decoder_embed, mask token, blocks, norm, pred.
  h, d, p = 768, 512, 16
  analytic = (h * d + d) + d + 8 * (12 * d * d + 13 * d) + 2 * d + (d * p * p * 3 + p * p * 3)
  model = MAE(vit("B", 16))
  params = jax.eval_shape(
    lambda: model.init(KEY, jnp.zeros((1, 224, 224, 3)), *random_masking(KEY, 1, 196, 0.75)[::2], train=False)
  )["params"]
  decoder = {k: v for k, v in params.items() if k != "encoder"}
  assert _num_params(decoder) == analytic
  assert _num_params(params["encoder"]) == 85_647_360
