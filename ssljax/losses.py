"""Contrastive losses and metrics: InfoNCE (in-batch, against MoCo's queue, CLIP's symmetric form, CPC's steps
ahead), NT-Xent and contrastive accuracy; word2vec's SGNS and CBOW;
BERT's masked-LM and MAE's masked-patch reconstruction; Context Encoders' hole L2 and the GAN terms of its
adversarial variant; cross-entropy against soft targets (colorization's soft-encoded colours).

Pure functions on global arrays. Under `jax.jit` with inputs sharded over a device
mesh (e.g. `NamedSharding(mesh, P('data'))`), the similarity matrix is taken over the
whole global batch, so the negatives are global across devices without any
`axis_name` collective: the SPMD partitioner inserts the gathers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
  "info_nce",
  "info_nce_logits",
  "l2_normalize",
  "clip_logits",
  "clip_loss",
  "cpc",
  "nt_xent",
  "contrastive_accuracy",
  "sgns",
  "cbow_ns",
  "masked_lm",
  "mae_recon",
  "masked_l2",
  "gan_generator",
  "gan_discriminator",
  "soft_cross_entropy",
]

Temperature = float | jax.Array

# Self-similarity is masked with a finite value, not -inf: -inf turns into NaN as soon as
# it meets a 0 (0 * -inf in a one-hot product or a JVP, -inf - -inf in a max-shift).
_MASK_VALUE = float(jnp.finfo(jnp.float32).min)
# Norm floor, so a zero embedding normalises to zero with finite gradients.
_NORM_EPS = 1e-6


def _check_embeddings(name: str, x: jax.Array) -> None:
  if jnp.ndim(x) != 2:
    raise ValueError(f"`{name}` must have rank 2 (batch, dim), got shape {jnp.shape(x)}.")
  if x.shape[0] == 0:
    raise ValueError(f"`{name}` must have a non-empty batch, got shape {x.shape}.")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"`{name}` must be floating point, got dtype {x.dtype}.")


def _check_same_shape(name_a: str, a: jax.Array, name_b: str, b: jax.Array) -> None:
  if a.shape != b.shape:
    raise ValueError(f"`{name_a}` and `{name_b}` must have the same shape, got {a.shape} and {b.shape}.")


def _check_temperature(temperature: Temperature) -> None:
  # A traced or array temperature (e.g. CLIP's learnable one) is not checked.
  if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
    if not temperature > 0:
      raise ValueError(f"`temperature` must be > 0, got {temperature}.")


def _upcast(x: jax.Array) -> jax.Array:
  # The log-sum-exp over thousands of negatives loses too much precision in bf16.
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def l2_normalize(x: jax.Array) -> jax.Array:
  """x / |x| along the last axis; a zero row stays zero, with finite gradients (the norm's floor)."""
  sq_norm = jnp.sum(x * x, axis=-1, keepdims=True)
  return x * lax.rsqrt(jnp.maximum(sq_norm, _NORM_EPS**2))


def _similarity(a: jax.Array, b: jax.Array) -> jax.Array:
  # HIGHEST: TPU/GPU default f32 matmuls use bf16/TF32 passes, too coarse once
  # divided by a small temperature.
  return jnp.matmul(a, b.T, precision=lax.Precision.HIGHEST)


def _cross_entropy(logits: jax.Array, positive_index: jax.Array) -> jax.Array:
  """Mean over rows of -log softmax(logits)[row, positive_index[row]]."""
  # Max-shift under stop_gradient: exp never overflows, gradients are unchanged.
  shift = lax.stop_gradient(jnp.max(logits, axis=1, keepdims=True))
  shifted = logits - shift
  log_normalizer = jnp.log(jnp.sum(jnp.exp(shifted), axis=1))
  positive = jnp.take_along_axis(shifted, positive_index[:, None], axis=1)[:, 0]
  return jnp.mean(log_normalizer - positive)


def _two_view_logits(
  z1: jax.Array, z2: jax.Array, temperature: Temperature, normalize: bool
) -> tuple[jax.Array, jax.Array]:
  """Scaled similarities of all 2N embeddings, self masked out, and each row's positive."""
  z = _upcast(jnp.concatenate([z1, z2], axis=0))
  if normalize:
    z = l2_normalize(z)
  n = z1.shape[0]
  # Mask after dividing by the temperature, so the mask value cannot overflow to -inf.
  logits = _similarity(z, z) / temperature
  logits = jnp.where(jnp.eye(2 * n, dtype=bool), _MASK_VALUE, logits)
  positive_index = (jnp.arange(2 * n) + n) % (2 * n)
  return logits, positive_index


def info_nce_logits(
  queries: jax.Array,
  keys: jax.Array,
  *,
  temperature: Temperature,
  negatives: jax.Array | None = None,
  normalize: bool = True,
) -> tuple[jax.Array, jax.Array]:
  """The logits InfoNCE classifies and each row's positive column: what `info_nce` takes the cross-entropy of.

  In-batch (``negatives=None``): ``logits[i, j] = q_i . k_j / tau``, the positive of row ``i`` is column ``i``.
  With a bank (MoCo's Algorithm 1): ``logits[i] = [q_i . k_i, q_i . negatives] / tau``, the positive is column 0.

  Example:
    >>> import jax.numpy as jnp
    >>> logits, labels = info_nce_logits(jnp.eye(2), jnp.eye(2), temperature=0.5, negatives=-jnp.eye(2))
    >>> logits.tolist(), labels.tolist()
    ([[2.0, -2.0, 0.0], [2.0, 0.0, -2.0]], [0, 0])

  Args:
    queries, keys, temperature, negatives, normalize: as for `info_nce`.

  Returns:
    (logits (N, N) or (N, 1 + M) in at least float32, positive column per row (N,) int32).
  """
  _check_embeddings("queries", queries)
  _check_embeddings("keys", keys)
  _check_same_shape("queries", queries, "keys", keys)
  _check_temperature(temperature)
  q, k = _upcast(queries), _upcast(keys)
  if normalize:
    q, k = l2_normalize(q), l2_normalize(k)
  n = q.shape[0]
  if negatives is None:
    return _similarity(q, k) / temperature, jnp.arange(n, dtype=jnp.int32)
  _check_embeddings("negatives", negatives)
  if negatives.shape[1] != queries.shape[1]:
    raise ValueError(
      f"`negatives` must have feature dim {queries.shape[1]} like `queries`, got shape {negatives.shape}."
    )
  neg = _upcast(negatives)
  if normalize:
    neg = l2_normalize(neg)
  positive = jnp.sum(q * k, axis=1, keepdims=True)
  logits = jnp.concatenate([positive, _similarity(q, neg)], axis=1)
  return logits / temperature, jnp.zeros(n, dtype=jnp.int32)


def info_nce(
  queries: jax.Array,
  keys: jax.Array,
  *,
  temperature: Temperature,
  negatives: jax.Array | None = None,
  normalize: bool = True,
) -> jax.Array:
  """InfoNCE loss: classify each query's positive key among negatives.

  Row ``i`` of ``queries`` has positive ``keys[i]``. With ``negatives=None`` the other
  rows of ``keys`` are its negatives (in-batch, one direction of CPC/CLIP). With an
  explicit ``negatives`` bank (MoCo's queue) the logits of query ``i`` are
  ``[q_i . k_i, q_i . negatives]`` and the other in-batch keys are not used.

  Example:
    >>> import jax.numpy as jnp
    >>> q = jnp.eye(2)
    >>> print(f"{info_nce(q, q, temperature=0.5):.4f}")  # -log(e^2 / (e^2 + 1))
    0.1269
    >>> queue = -q  # MoCo-style bank; in-batch keys are then not negatives
    >>> loss = info_nce(q, q, temperature=0.5, negatives=queue)
    >>> print(f"{loss:.4f}")  # -log(e^2 / (e^2 + e^-2 + 1))
    0.1429

  Args:
    queries: (N, D) query embeddings; any float dtype, computed in at least float32.
    keys: (N, D) keys; ``keys[i]`` is the positive of ``queries[i]``.
    temperature: softmax temperature tau > 0 (a float, checked; or a traced array, CLIP's learnable one);
      logits are similarities / tau.
    negatives: optional (M, D) negative bank shared by all queries.
    normalize: L2-normalise queries, keys and negatives first (cosine similarity).

  Returns:
    Scalar float32 (float64 for float64 inputs) cross-entropy averaged over queries.

  References:
    A. van den Oord et al., `Representation Learning with Contrastive Predictive
    Coding <https://arxiv.org/abs/1807.03748>`_, 2018.
    K. He et al., `Momentum Contrast for Unsupervised Visual Representation
    Learning <https://arxiv.org/abs/1911.05722>`_, 2020.
  """
  logits, positive_index = info_nce_logits(
    queries, keys, temperature=temperature, negatives=negatives, normalize=normalize
  )
  return _cross_entropy(logits, positive_index)


def clip_logits(image_embeddings: jax.Array, text_embeddings: jax.Array, *, logit_scale: jax.Array) -> jax.Array:
  """(N, N) ``exp(logit_scale) * cos(image i, text j)`` in at least float32: row i scores image i against every
  text, column j text j against every image. One matrix serves both directions of `clip_loss`."""
  logits, _ = info_nce_logits(
    image_embeddings, text_embeddings, temperature=jnp.exp(-jnp.asarray(logit_scale, jnp.float32))
  )
  return logits


def clip_loss(image_embeddings: jax.Array, text_embeddings: jax.Array, *, logit_scale: jax.Array) -> jax.Array:
  """CLIP's symmetric InfoNCE: each image classifies its caption among the batch's captions and each caption its
  image among the batch's images, the two cross-entropies averaged.

  ``logit_scale`` is the learnable log inverse temperature (logits are ``exp(logit_scale) * cos``); the caller
  clips it (the paper at log 100) and learns it through this function's gradient. On global arrays under jit
  the batch, so every negative, is the global one.

  Example:
    >>> import jax.numpy as jnp
    >>> print(f"{clip_loss(jnp.eye(2), jnp.eye(2), logit_scale=jnp.log(2.0)):.4f}")  # -log(e^2 / (e^2 + 1))
    0.1269

  Args:
    image_embeddings: (N, D) image-tower outputs; row ``i`` pairs with text row ``i``.
    text_embeddings: (N, D) text-tower outputs.
    logit_scale: scalar log of the inverse temperature.

  Returns:
    Scalar float32 loss.

  References:
    A. Radford et al., `Learning Transferable Visual Models From Natural Language Supervision
    <https://arxiv.org/abs/2103.00020>`_, 2021, Figure 3.
  """
  logits = clip_logits(image_embeddings, text_embeddings, logit_scale=logit_scale)
  positives = jnp.arange(logits.shape[0], dtype=jnp.int32)
  return (_cross_entropy(logits, positives) + _cross_entropy(logits.T, positives)) / 2


def nt_xent(
  z1: jax.Array,
  z2: jax.Array,
  *,
  temperature: Temperature = 0.5,
  normalize: bool = True,
) -> jax.Array:
  """SimCLR's NT-Xent loss (normalised temperature-scaled cross entropy).

  The 2N embeddings ``concat(z1, z2)`` are each used as an anchor: its positive is the
  other view of the same example and its negatives are the remaining 2N - 2
  embeddings (self-similarity excluded). Per anchor,
  ``l(i, j) = -log(exp(sim(i, j) / tau) / sum_{k != i} exp(sim(i, k) / tau))``,
  averaged over all 2N anchors.

  Example:
    >>> import jax.numpy as jnp
    >>> z = jnp.eye(2)
    >>> print(f"{nt_xent(z, z, temperature=0.5):.4f}")  # -log(e^2 / (e^2 + 2))
    0.2395

  Args:
    z1: (N, D) embeddings of the first view; any float dtype, computed in at least
      float32.
    z2: (N, D) embeddings of the second view; ``z2[i]`` pairs with ``z1[i]``.
    temperature: softmax temperature tau > 0.
    normalize: L2-normalise first, so sim is the cosine similarity (as in the paper).

  Returns:
    Scalar float32 (float64 for float64 inputs) loss averaged over the 2N anchors.

  References:
    T. Chen et al., `A Simple Framework for Contrastive Learning of Visual
    Representations <https://arxiv.org/abs/2002.05709>`_, 2020, eq. (1).
  """
  _check_embeddings("z1", z1)
  _check_embeddings("z2", z2)
  _check_same_shape("z1", z1, "z2", z2)
  _check_temperature(temperature)
  logits, positive_index = _two_view_logits(z1, z2, temperature, normalize)
  return _cross_entropy(logits, positive_index)


def cpc(predictions: jax.Array, encodings: jax.Array, *, self_negatives: bool = True) -> tuple[jax.Array, jax.Array]:
  """CPC's InfoNCE: from the context at step t, identify the encoding k steps ahead, for k = 1..K.

  The score of a candidate z is the bilinear ``z . W_k c_t`` (``predictions`` hold ``W_k c_t``), as in the paper.
  The candidates of the prediction for (example b, sequence g, step t, k) are the encodings at step t + k of
  sequence g of every example in the batch (the positive is example b's) and, with ``self_negatives``, those of
  every other step of example b's own sequence g. An image is a grid whose G columns are each read top to bottom;
  an audio clip is one sequence (G = 1). On global arrays under jit the batch is the global one.

  Example:
    >>> import jax.numpy as jnp
    >>> z = jnp.array([[[[1.0, 0.0], [0.0, 1.0]]], [[[0.0, 1.0], [1.0, 0.0]]]])  # (B=2, G=1, T=2, D=2)
    >>> preds = z[:, :, ::-1, None, :]  # W_1 c_0 = z_1 exactly
    >>> loss, accuracy = cpc(preds, z)
    >>> print(f"{loss:.4f} {accuracy[0]:.1f}")  # -log(e / (e + 1 + 1)): one other example, one other step
    0.5514 1.0

  Args:
    predictions: (B, G, T, K, D): ``predictions[b, g, t, k - 1]`` predicts ``encodings[b, g, t + k]``; entries
      whose t + k falls past the end are ignored.
    encodings: (B, G, T, D), the encoder's z of every step.
    self_negatives: also contrast with the other steps of the same sequence.

  Returns:
    (loss, accuracy): the cross-entropy averaged over the predictions of each k, then over k, and the (K,)
    fraction of predictions per k whose top-scoring candidate is the positive.

  References:
    A. van den Oord, Y. Li, O. Vinyals, `Representation Learning with Contrastive Predictive Coding
    <https://arxiv.org/abs/1807.03748>`_, 2018, eq. (4).
  """
  if jnp.ndim(encodings) != 4 or jnp.ndim(predictions) != 5:
    raise ValueError(
      f"`predictions` must be (B, G, T, K, D) and `encodings` (B, G, T, D), got {jnp.shape(predictions)} and "
      f"{jnp.shape(encodings)}."
    )
  b, g, t, k_max, d = predictions.shape
  if encodings.shape != (b, g, t, d):
    raise ValueError(f"`encodings` must be {(b, g, t, d)} to match `predictions`, got {encodings.shape}.")
  if not 1 <= k_max < t:
    raise ValueError(f"K={k_max} prediction steps need sequences longer than K steps, got T={t}.")
  predictions, encodings = _upcast(predictions), _upcast(encodings)
  per_k, accuracies = [], []
  for k in range(1, k_max + 1):
    pred = predictions[:, :, : t - k, k - 1]  # (B, G, T-k, D)
    # Every example's encoding at the target step: (B, G, T-k, B), the positive on the diagonal.
    logits = jnp.einsum("bgtd,cgtd->bgtc", pred, encodings[:, :, k:], precision=lax.Precision.HIGHEST)
    if self_negatives:
      own = jnp.einsum("bgtd,bgsd->bgts", pred, encodings, precision=lax.Precision.HIGHEST)  # (B, G, T-k, T)
      target = jnp.arange(t - k)[:, None] + k == jnp.arange(t)[None, :]  # the positive, already a candidate
      logits = jnp.concatenate([logits, jnp.where(target, _MASK_VALUE, own)], axis=-1)
    positive = jnp.broadcast_to(jnp.arange(b)[:, None, None], (b, g, t - k))
    flat = logits.reshape(-1, logits.shape[-1])
    per_k.append(_cross_entropy(flat, positive.reshape(-1)))
    accuracies.append(jnp.mean(jnp.argmax(logits, axis=-1) == positive, dtype=jnp.float32))
  return jnp.mean(jnp.stack(per_k)), jnp.stack(accuracies)


def contrastive_accuracy(
  z1: jax.Array,
  z2: jax.Array,
  *,
  normalize: bool = True,
) -> jax.Array:
  """Fraction of the 2N anchors whose most similar other embedding is its positive.

  Uses the same anchors and candidates as `nt_xent`; a progress metric, not a loss.

  Example:
    >>> import jax.numpy as jnp
    >>> print(contrastive_accuracy(jnp.eye(3), jnp.eye(3)))
    1.0

  Args:
    z1: (N, D) embeddings of the first view.
    z2: (N, D) embeddings of the second view; ``z2[i]`` pairs with ``z1[i]``.
    normalize: compare by cosine similarity (True) or raw dot product (False).

  Returns:
    Scalar float32 in [0, 1].

  References:
    T. Chen et al., `A Simple Framework for Contrastive Learning of Visual
    Representations <https://arxiv.org/abs/2002.05709>`_, 2020.
  """
  _check_embeddings("z1", z1)
  _check_embeddings("z2", z2)
  _check_same_shape("z1", z1, "z2", z2)
  logits, positive_index = _two_view_logits(z1, z2, 1.0, normalize)
  return jnp.mean(jnp.argmax(logits, axis=1) == positive_index, dtype=jnp.float32)


def _check_word2vec_shapes(inputs, outputs, labels, input_mask, output_mask):
  if jnp.ndim(inputs) != 3 or jnp.ndim(outputs) != 3:
    raise ValueError(
      f"`inputs` (B, C, D) and `outputs` (B, M, D) must have rank 3, got shapes "
      f"{jnp.shape(inputs)} and {jnp.shape(outputs)}."
    )
  b, c, d = inputs.shape
  if outputs.shape[0] != b or outputs.shape[2] != d:
    raise ValueError(f"`outputs` must be (B={b}, M, D={d}), got shape {outputs.shape}.")
  m = outputs.shape[1]
  for name, x, shape in (
    ("labels", labels, (b, m)),
    ("input_mask", input_mask, (b, c)),
    ("output_mask", output_mask, (b, m)),
  ):
    if x is not None and jnp.shape(x) != shape:
      raise ValueError(f"`{name}` must have shape {shape}, got {jnp.shape(x)}.")


def _binary_logistic(logits, labels, output_mask):
  """-log sigmoid(x) for label 1 and -log sigmoid(-x) for label 0, i.e. softplus(x) - label * x."""
  per = jax.nn.softplus(logits) - labels * logits
  return per if output_mask is None else per * output_mask


def sgns(
  inputs: jax.Array,
  outputs: jax.Array,
  labels: jax.Array,
  *,
  input_mask: jax.Array | None = None,
  output_mask: jax.Array | None = None,
) -> jax.Array:
  """Skip-gram with negative sampling, for B groups that each share their output words.

  In group b, each of C input vectors (the context words of one centre word) is scored by a dot
  product against each of M output vectors (the centre word's output vector, label 1, and K
  negative words, label 0), and pays ``-log sigmoid(x)`` for label 1, ``-log sigmoid(-x)`` for
  label 0. word2vec draws K negatives per (centre, context) pair; drawing them per centre and
  sharing them among its contexts (Ji et al., 2016) turns the work into small dense products.
  With Huffman-path node vectors as outputs and ``1 - code`` as labels this is skip-gram with
  hierarchical softmax.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.zeros((1, 2, 3))  # zero vectors: every logit is 0, each term is log 2
    >>> print(f"{sgns(x, jnp.ones((1, 6, 3)), jnp.eye(6)[:1])[0]:.4f}")  # 2 inputs x 6 outputs
    8.3178

  Args:
    inputs: (B, C, D) input-table vectors of the context words.
    outputs: (B, M, D) output-table vectors.
    labels: (B, M) 1 for the true word, 0 for negatives (floats or ints).
    input_mask: optional (B, C) 1 for real contexts (the reduced window, line ends), 0 otherwise;
      any non-negative weights work (each input's terms are multiplied by its weight).
    output_mask: optional (B, M) 1 for outputs that count (0 for a negative equal to the true word,
      or beyond a Huffman code's length); non-negative weights work too.

  Returns:
    (B,) the loss of each group, summed over its (input, output) pairs, in at least float32.

  References:
    T. Mikolov et al., `Distributed Representations of Words and Phrases and their
    Compositionality <https://arxiv.org/abs/1310.4546>`_, 2013, eq. (4).
  """
  _check_word2vec_shapes(inputs, outputs, labels, input_mask, output_mask)
  logits = jnp.einsum("bcd,bmd->bcm", _upcast(inputs), _upcast(outputs))
  labels = jnp.asarray(labels, logits.dtype)[:, None, :]
  mask = None if output_mask is None else jnp.asarray(output_mask, logits.dtype)[:, None, :]
  per_pair = _binary_logistic(logits, labels, mask).sum(-1)
  if input_mask is not None:
    per_pair = per_pair * jnp.asarray(input_mask, per_pair.dtype)
  return per_pair.sum(-1)


def cbow_ns(
  inputs: jax.Array,
  outputs: jax.Array,
  labels: jax.Array,
  *,
  input_mask: jax.Array | None = None,
  output_mask: jax.Array | None = None,
) -> jax.Array:
  """Continuous bag of words with negative sampling: the mean of each group's context vectors
  predicts its centre word against K negatives.

  ``h_b = mean_c inputs[b, c]`` over unmasked contexts; the loss of group b is
  ``sum_m -log sigmoid(+-h_b . outputs[b, m])`` as in `sgns`. A group with no context costs 0.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.zeros((1, 2, 3))
    >>> print(f"{cbow_ns(x, jnp.ones((1, 6, 3)), jnp.eye(6)[:1])[0]:.4f}")  # 6 outputs x log 2
    4.1589

  Args:
    inputs: (B, C, D) input-table vectors of the context words.
    outputs: (B, M, D) output vectors: the centre word (label 1) and K negatives (label 0), or
      Huffman-path nodes (labels ``1 - code``) for hierarchical softmax.
    labels: (B, M) binary targets.
    input_mask: optional (B, C) 1 for real contexts.
    output_mask: optional (B, M) 1 for outputs that count.

  Returns:
    (B,) the loss of each group, in at least float32.

  References:
    T. Mikolov et al., `Efficient Estimation of Word Representations in Vector Space
    <https://arxiv.org/abs/1301.3781>`_, 2013.
  """
  _check_word2vec_shapes(inputs, outputs, labels, input_mask, output_mask)
  inputs = _upcast(inputs)
  if input_mask is None:
    input_mask = jnp.ones(inputs.shape[:2], inputs.dtype)
  input_mask = jnp.asarray(input_mask, inputs.dtype)
  count = input_mask.sum(-1)
  hidden = jnp.einsum("bcd,bc->bd", inputs, input_mask) / jnp.maximum(count, 1.0)[:, None]
  logits = jnp.einsum("bd,bmd->bm", hidden, _upcast(outputs))
  mask = None if output_mask is None else jnp.asarray(output_mask, logits.dtype)
  loss = _binary_logistic(logits, jnp.asarray(labels, logits.dtype), mask).sum(-1)
  return jnp.where(count > 0, loss, 0.0)


def masked_lm(
  logits: jax.Array,
  labels: jax.Array,
  weights: jax.Array,
) -> tuple[jax.Array, jax.Array]:
  """BERT's masked-language-model loss: mean cross-entropy over the predicted positions that count.

  Each sequence predicts P positions (a fixed number, so shapes stay static); positions beyond its
  share of 15% carry weight 0. The mean is over all weighted positions of the global batch, as
  BERT's ``sum(weights * loss) / sum(weights)``.

  Example:
    >>> import jax.numpy as jnp
    >>> loss, acc = masked_lm(jnp.zeros((1, 2, 4)), jnp.array([[1, 3]]), jnp.array([[1.0, 0.0]]))
    >>> print(f"{loss:.4f} {acc:.1f}")  # uniform over 4 tokens: log 4; argmax 0 != 1
    1.3863 0.0

  Args:
    logits: (B, P, V) scores at the predicted positions.
    labels: (B, P) int, the original tokens there.
    weights: (B, P) 1 where a position counts, 0 for padding predictions.

  Returns:
    (loss, accuracy): weighted mean cross-entropy (natural log; exp of it is the MLM perplexity) and the
    weighted fraction of positions whose top-scoring token is the label, both float32 or wider.

  References:
    J. Devlin et al., `BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding
    <https://arxiv.org/abs/1810.04805>`_, 2019, section 3.1.
  """
  if logits.ndim != 3 or labels.shape != logits.shape[:2] or weights.shape != labels.shape:
    raise ValueError(
      f"`logits` must be (B, P, V) with `labels` and `weights` (B, P), got "
      f"{logits.shape}, {labels.shape} and {weights.shape}."
    )
  logits = _upcast(logits)
  shifted = logits - lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
  log_z = jnp.log(jnp.sum(jnp.exp(shifted), axis=-1))
  nll = log_z - jnp.take_along_axis(shifted, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
  w = jnp.asarray(weights, logits.dtype)
  total = jnp.maximum(w.sum(), 1e-8)
  correct = (jnp.argmax(logits, axis=-1) == labels).astype(logits.dtype)
  return jnp.sum(w * nll) / total, jnp.sum(w * correct) / total


def mae_recon(
  pred: jax.Array,
  target_patches: jax.Array,
  mask: jax.Array,
  *,
  norm_pix: bool = True,
  eps: float = 1e-6,
) -> jax.Array:
  """MAE's reconstruction loss: mean squared error per patch, averaged over the masked patches only.

  Visible patches carry no loss: the encoder saw them, so reconstructing them teaches nothing. With
  ``norm_pix`` each target patch is standardized by its own pixels' mean and variance,
  ``(t - mean) / sqrt(var + eps)``, which the paper found to give better representations (local
  contrast, not absolute intensity, is what must be predicted). The variance is the unbiased one
  (divided by D - 1), as ``torch.var`` in MAE's released code computes it.

  Example:
    >>> import jax.numpy as jnp
    >>> pred = jnp.zeros((1, 2, 4))
    >>> target = jnp.array([[[0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 5.0, 5.0]]])
    >>> mask = jnp.array([[1.0, 0.0]])  # only the first patch was masked
    >>> print(f"{mae_recon(pred, target, mask, norm_pix=False):.4f}")  # mean of (0, 0, 4, 4)
    2.0000
    >>> print(f"{mae_recon(pred, target, mask):.4f}")  # (+-1)^2 / (unbiased var 4/3)
    0.7500

  Args:
    pred: (N, L, D) predicted pixels of every patch (`ssljax.models.vit.MAE`'s output).
    target_patches: (N, L, D) the image's patches (`ssljax.models.vit.patchify` of the input).
    mask: (N, L) 1 at masked patches, 0 at visible ones (`random_masking`'s mask); non-negative
      weights work too.
    norm_pix: standardize each target patch by its own mean and variance first (needs D >= 2).
    eps: added to the variance before the square root.

  Returns:
    Scalar, float32 or wider: sum over patches of mask * mean_D (pred - target)^2, divided by the sum
    of the mask (0 when nothing is masked).

  References:
    K. He et al., `Masked Autoencoders Are Scalable Vision Learners
    <https://arxiv.org/abs/2111.06377>`_, 2021, section 3 and Table 1(c).
  """
  if jnp.ndim(pred) != 3 or jnp.shape(target_patches) != jnp.shape(pred) or jnp.shape(mask) != jnp.shape(pred)[:2]:
    raise ValueError(
      f"`pred` and `target_patches` must be (N, L, D) and `mask` (N, L), got "
      f"{jnp.shape(pred)}, {jnp.shape(target_patches)} and {jnp.shape(mask)}."
    )
  if norm_pix and pred.shape[-1] < 2:
    raise ValueError(f"`norm_pix` needs at least 2 values per patch, got D={pred.shape[-1]}.")
  pred, target = _upcast(pred), _upcast(jnp.asarray(target_patches))
  target = target.astype(jnp.promote_types(target.dtype, pred.dtype))
  if norm_pix:
    mean = jnp.mean(target, axis=-1, keepdims=True)
    var = jnp.var(target, axis=-1, keepdims=True, ddof=1)
    target = (target - mean) * lax.rsqrt(var + eps)
  per_patch = jnp.mean(jnp.square(pred - target), axis=-1)
  w = jnp.asarray(mask, per_patch.dtype)
  return jnp.sum(w * per_patch) / jnp.maximum(jnp.sum(w), 1e-8)


def masked_l2(predictions: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean squared error over the missing region only: Context Encoders' reconstruction loss.

  The squared error is summed over the masked pixels (and channels) of the whole batch and divided by
  their number, so what the model predicts outside the hole does not matter and every missing pixel
  weighs the same whatever the hole sizes.

  Example:
    >>> import jax.numpy as jnp
    >>> mask = jnp.array([[[1.0, 0.0], [0.0, 0.0]]])  # one missing pixel of four
    >>> print(f"{masked_l2(jnp.zeros((1, 2, 2, 1)), jnp.full((1, 2, 2, 1), 3.0), mask):.4f}")
    9.0000

  Args:
    predictions: (N, H, W, C).
    targets: (N, H, W, C), the original pixels.
    mask: (N, H, W), 1 where the pixel is missing, 0 where it is context.

  Returns:
    Scalar float32: sum(mask * (predictions - targets)^2) / (sum(mask) * C); 0 for an empty mask.

  References:
    D. Pathak et al., `Context Encoders: Feature Learning by Inpainting
    <https://arxiv.org/abs/1604.07379>`_, CVPR 2016, eq. 1.
  """
  if predictions.shape != targets.shape or predictions.ndim != 4 or mask.shape != predictions.shape[:3]:
    raise ValueError(
      f"need (N, H, W, C) `predictions` and `targets` and an (N, H, W) `mask`; got "
      f"{predictions.shape}, {targets.shape} and {mask.shape}."
    )
  mask = jnp.asarray(mask, jnp.float32)
  squared = jnp.square(_upcast(predictions) - _upcast(targets)).sum(-1)
  return jnp.sum(mask * squared) / (jnp.maximum(jnp.sum(mask), 1.0) * predictions.shape[-1])


def gan_generator(fake_logits: jax.Array) -> jax.Array:
  """The non-saturating generator loss, mean -log D(G(z)) = mean softplus(-logit), as DCGAN trains it.

  Minimizing -log D(fake) rather than log(1 - D(fake)) keeps the gradient large while the discriminator still
  rejects the fakes easily (Goodfellow et al., section 3). In Context Encoders the fakes are the inpainted images
  and this is the adversarial term of the generator, weighed against `masked_l2`.

  Example:
    >>> import jax.numpy as jnp
    >>> print(f"{gan_generator(jnp.array([0.0, 0.0])):.4f}")  # D = 1/2: log 2
    0.6931

  Args:
    fake_logits: (N,) the discriminator's logits (log-odds of "real") on generated images.

  Returns:
    Scalar, float32 or wider.

  References:
    I. Goodfellow et al., `Generative Adversarial Nets <https://arxiv.org/abs/1406.2661>`_, NeurIPS 2014;
    D. Pathak et al., `Context Encoders <https://arxiv.org/abs/1604.07379>`_, CVPR 2016, section 3.2.
  """
  if jnp.ndim(fake_logits) != 1:
    raise ValueError(f"`fake_logits` must be (N,) logits, got shape {jnp.shape(fake_logits)}.")
  return jax.nn.softplus(-_upcast(fake_logits)).mean()


def gan_discriminator(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """The discriminator's loss: binary cross-entropy of real images as 1 and generated ones as 0.

  mean -log D(real) + mean -log(1 - D(fake)) = mean softplus(-real) + mean softplus(fake), each side averaged
  on its own, so the two count alike whatever their batch sizes. Pass generated images under `stop_gradient`
  when one optimizer step trains both players, so this term trains only the discriminator.

  Example:
    >>> import jax.numpy as jnp
    >>> print(f"{gan_discriminator(jnp.array([0.0]), jnp.array([0.0])):.4f}")  # undecided: 2 log 2
    1.3863

  Args:
    real_logits: (N,) logits on real images.
    fake_logits: (M,) logits on generated images.

  Returns:
    Scalar, float32 or wider.

  References:
    I. Goodfellow et al., `Generative Adversarial Nets <https://arxiv.org/abs/1406.2661>`_, NeurIPS 2014, eq. 1.
  """
  if jnp.ndim(real_logits) != 1 or jnp.ndim(fake_logits) != 1:
    raise ValueError(
      f"`real_logits` and `fake_logits` must be (N,) logits, got shapes {jnp.shape(real_logits)} and "
      f"{jnp.shape(fake_logits)}."
    )
  return jax.nn.softplus(-_upcast(real_logits)).mean() + jax.nn.softplus(_upcast(fake_logits)).mean()


def soft_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean cross-entropy of softmax(logits) against target distributions: -sum_k targets_k log p_k, averaged
  over every leading position (pixel, example).

  Zhang et al.'s colorization loss: each pixel's target is its true colour soft-encoded over the nearest bins
  (Gaussian weights), not one bin. `jax.nn.log_softmax` subtracts the max under `stop_gradient`, so large logits
  stay finite.

  Example:
    >>> import jax.numpy as jnp
    >>> print(f"{soft_cross_entropy(jnp.zeros((1, 4)), jnp.array([[0.5, 0.5, 0.0, 0.0]])):.4f}")  # uniform: log 4
    1.3863

  Args:
    logits: (..., K) scores over K bins.
    targets: (..., K) non-negative weights summing to 1 over the last axis.

  Returns:
    Scalar, float32 or wider.

  References:
    R. Zhang, P. Isola and A. Efros, `Colorful Image Colorization <https://arxiv.org/abs/1603.08511>`_, ECCV 2016,
    eq. 2 (without the class rebalancing).
  """
  if jnp.ndim(logits) < 1 or jnp.shape(logits) != jnp.shape(targets):
    raise ValueError(
      f"`logits` and `targets` must have the same shape (..., K), got {jnp.shape(logits)} and {jnp.shape(targets)}."
    )
  log_p = jax.nn.log_softmax(_upcast(logits), axis=-1)
  return jnp.mean(-jnp.sum(_upcast(jnp.asarray(targets)) * log_p, axis=-1))
