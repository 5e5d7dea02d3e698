"""The text transfer task: which source a paragraph comes from, learnt from 100%, 10% and 1% of the labels.

Training paragraphs come from the pre-training split, test paragraphs from the held-out one (never trained
on, the tokenizer included); at most `evals.finetune_per_class` (train) and `evals.finetune_test_per_class`
(test) paragraphs of at least `evals.finetune_min_tokens` tokens per source, so the classes are balanced
and a heading or a verse number is not a question. Three classifiers answer it at each label fraction:
the pre-trained encoder fine-tuned, the same architecture trained from its random init with the same steps,
and a bag-of-words (tf-idf of WordPiece ids) logistic regression. All three read the same tokens: a paragraph
longer than the encoder's input is cut to it for the bag of words too.
"""

from __future__ import annotations

import numpy as np

from ssljax.data import lm, wordpiece
from ssljax.evals import finetune
from ssljax.evals.linear import fraction_name, label_fraction_indices
from ssljax.models.transformer import BertClassifier

BUCKETS = (16, 32, 64, 128, 256, 512)


def classification_rows(
  docs: lm.TokenizedDocs, *, per_class: int, min_tokens: int, max_len: int, seed: int
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
  """Balanced paragraphs as rows [CLS] paragraph [SEP] [PAD]... (truncated to max_len), their source labels,
  and the ids each row holds (for the bag of words, which must see the same text as the encoder)."""
  rng = np.random.default_rng(seed)
  lengths = np.diff(docs.offsets)
  chosen = []
  for s in range(len(docs.sources)):
    idx = np.flatnonzero((docs.source == s) & (lengths >= min_tokens))
    chosen.append(rng.permutation(idx)[:per_class])
  chosen = np.sort(np.concatenate(chosen))
  rows = np.full((len(chosen), max_len), wordpiece.PAD_ID, np.int32)
  paragraphs = []
  for r, i in enumerate(chosen):
    body = docs.paragraph(i)[: max_len - 2]
    paragraphs.append(body)
    rows[r, : len(body) + 2] = np.concatenate([[wordpiece.CLS_ID], body, [wordpiece.SEP_ID]])
  return rows, docs.source[chosen].astype(np.int32), paragraphs


def trim_to_bucket(batch: dict) -> dict:
  """Cuts trailing padding to the smallest bucket that holds the batch's longest row (few shapes to compile)."""
  longest = int(np.max(np.sum(batch["tokens"] != wordpiece.PAD_ID, axis=1)))
  width = next((b for b in BUCKETS if b >= longest), batch["tokens"].shape[1])
  return {k: v[:, :width] for k, v in batch.items()}


def bag_of_words_top1(train_ids, train_y, test_ids, test_y, *, vocab_size: int, seed: int) -> float:
  from scipy import sparse
  from sklearn.feature_extraction.text import TfidfTransformer
  from sklearn.linear_model import LogisticRegression

  def counts(paragraphs):
    rows = np.repeat(np.arange(len(paragraphs)), [len(p) for p in paragraphs])
    cols = np.concatenate(paragraphs) if paragraphs else np.zeros(0, np.int64)
    return sparse.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(paragraphs), vocab_size))

  tfidf = TfidfTransformer(sublinear_tf=True).fit(counts(train_ids))
  clf = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
  clf.fit(tfidf.transform(counts(train_ids)), train_y)
  return float(np.mean(clf.predict(tfidf.transform(counts(test_ids))) == test_y))


def evaluate(config, *, workdir: str, mesh, params, corpus: lm.TokenizedCorpus, build_encoder) -> dict:
  import jax

  e = config.evals
  vocab = corpus.tokenizer.vocab_size
  max_len = min(e.finetune_max_len, config.data.max_len)
  train_x, train_y, train_ids = classification_rows(
    corpus.train, per_class=e.finetune_per_class, min_tokens=e.finetune_min_tokens, max_len=max_len, seed=config.seed
  )
  test_x, test_y, test_ids = classification_rows(
    corpus.valid,
    per_class=e.finetune_test_per_class,
    min_tokens=e.finetune_min_tokens,
    max_len=max_len,
    seed=config.seed + 1,
  )
  num_classes = len(corpus.train.sources)
  print(f"fine-tuning task: {num_classes} sources, {len(train_y)} train / {len(test_y)} test paragraphs", flush=True)
  classifier = BertClassifier(num_classes, build_encoder(config, vocab), dropout=config.bert.dropout)

  def apply(p, state, batch, *, train, rng):
    logits, _ = classifier.apply(
      {"params": p},
      batch["tokens"],
      None,
      batch["tokens"] != wordpiece.PAD_ID,
      train=train,
      rngs={"dropout": rng} if train else {},
    )
    return logits, state

  fresh = classifier.init(jax.random.PRNGKey(config.seed + 11), train_x[:2], train=False)["params"]
  starts = {"": dict(fresh, encoder=params["encoder"]), "baseline/scratch/": fresh}
  results = {}
  for fraction in e.label_fractions:
    idx = label_fraction_indices(train_y, fraction, seed=config.seed)
    name = fraction_name("finetune", fraction)
    for prefix, start in starts.items():
      out = finetune.finetune_top1(
        params=start,
        apply=apply,
        train_x={"tokens": train_x[idx]},
        train_y=train_y[idx],
        test_x={"tokens": test_x},
        test_y=test_y,
        **finetune.budget_of(e),
        seed=config.seed,
        mesh=mesh,
        prepare=trim_to_bucket,
      )
      results[f"{prefix}{name}/top1"] = out["top1"]
    results[f"baseline/bow/{name}/top1"] = bag_of_words_top1(
      [train_ids[i] for i in idx], train_y[idx], test_ids, test_y, vocab_size=vocab, seed=config.seed
    )
    print(
      f"  {name} ({len(idx)} labels, {out['steps']} steps): pre-trained {results[f'{name}/top1']:.4f}, scratch "
      f"{results[f'baseline/scratch/{name}/top1']:.4f}, bag of words {results[f'baseline/bow/{name}/top1']:.4f}",
      flush=True,
    )
  return results
