"""Zero-shot classification and retrieval: prompt ensembling and recall@k against brute-force float64 references."""

import numpy as np
import pytest

from ssljax.evals import zero_shot


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_the_classifier_averages_the_normalized_prompt_embeddings_of_each_class():
  rng = np.random.default_rng(0)
  table = {}

  def embed(texts):
    for t in texts:
      table.setdefault(t, rng.standard_normal(6) * rng.uniform(0.5, 3))
    return np.stack([table[t] for t in texts])

  names, templates = ["cat", "dog", "car"], ["a {}.", "the {} here", "{}!"]
  weights = zero_shot.classifier(embed, names, templates)
  for c, name in enumerate(names):
    want = _unit(np.mean([_unit(table[t.format(name)]) for t in templates], axis=0))
    np.testing.assert_allclose(weights[c], want, atol=1e-12)
  images = np.stack([weights[2] * 5, weights[0] + 0.01 * weights[1], -weights[1]])
  want = [int(np.argmax([_unit(x) @ w for w in weights])) for x in images]
  assert zero_shot.predict(images, weights).tolist() == want == [2, 0, want[2]]


def test_a_template_without_one_slot_is_refused():
  with pytest.raises(ValueError, match="exactly one"):
    zero_shot.prompts(["cat"], ["a photo"])


def _brute_recall(images, texts, text_of_image, k):
  i2t = []
  for i, x in enumerate(images):
    scores = [_unit(x) @ _unit(t) for t in texts]
    better = sum(s > scores[text_of_image[i]] for s in scores)
    i2t.append(better < k)
  t2i = []
  for j, t in enumerate(texts):
    owners = [i for i in range(len(images)) if text_of_image[i] == j]
    if not owners:
      continue
    order = sorted(range(len(images)), key=lambda i: -(_unit(images[i]) @ _unit(t)))
    t2i.append(any(i in owners for i in order[:k]))
  return np.mean(i2t), np.mean(t2i)


def test_retrieval_recall_matches_brute_force_with_shared_captions():
  rng = np.random.default_rng(1)
  texts = rng.standard_normal((12, 8))
  text_of_image = rng.integers(0, 10, 30)  # captions 10 and 11 describe no image; several images share one
  images = texts[text_of_image] + 1.2 * rng.standard_normal((30, 8))
  got = zero_shot.retrieval(images, texts, text_of_image, ks=(1, 3, 5))
  for k in (1, 3, 5):
    i2t, t2i = _brute_recall(images, texts, text_of_image, k)
    assert got[f"i2t_r@{k}"] == pytest.approx(i2t) and got[f"t2i_r@{k}"] == pytest.approx(t2i)
  assert 0 < got["i2t_r@1"] < got["i2t_r@5"] < 1


def test_distinct_texts_keep_first_seen_order():
  texts, of = zero_shot.distinct_texts(["b", "a", "b", "c"])
  assert texts == ["b", "a", "c"] and of.tolist() == [0, 1, 0, 2]
