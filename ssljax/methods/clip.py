"""CLIP (Radford et al. 2021, arXiv:2103.00020): an image tower and a text tower trained so that each image's
embedding picks its own caption among the global batch's captions and each caption its own image (symmetric
InfoNCE, `losses.clip_loss`) at a learnable temperature clipped at 1/100.

Captions are WordPiece tokens of a vocabulary trained on the training captions (`workdir/tokenizer`), between [CLS]
and [SEP]; each step reads, for every image, one of its captions drawn on device with the step's key, so a resumed
run draws exactly what an uninterrupted one would. The image encoder keeps its params at `params['encoder']`: the
image suite's kNN, linear probe and fine-tuning read it as any image method's.

Evals on the held-out images (`data.eval_split`): zero-shot classification for each label set of the data (emoji
group and subgroup; Fashion-MNIST's class) with prompt templates that training never read
(`evals.zero_shot_templates`), retrieval recall@k both ways, the image tower's kNN and linear probe on the first
label set, each beside the random-init towers and chance; a retrieval grid and a zero-shot confusion matrix.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import losses
from ssljax.config import ConfigError
from ssljax.data import arrays, pairs, wordpiece
from ssljax.methods import vision
from ssljax.models.clip import CLIPModel, TextTower


def check_config(config) -> None:
  c, d = config.clip, config.data
  if d.max_caption_tokens < 3:
    raise ConfigError(f"data.max_caption_tokens={d.max_caption_tokens} leaves no room between [CLS] and [SEP]")
  if c.text_width % c.text_heads:
    raise ConfigError(f"clip.text_width={c.text_width} is not divisible by clip.text_heads={c.text_heads}")
  if not 0 < c.init_temperature <= 1:
    raise ConfigError(f"clip.init_temperature={c.init_temperature} must be in (0, 1]")
  if d.name == "emoji" and not 0 < d.heldout_fraction < 1:
    raise ConfigError(f"data.heldout_fraction={d.heldout_fraction} must be in (0, 1)")
  for t in config.evals.zero_shot_templates:
    if t.count("{}") != 1:
      raise ConfigError(f"evals.zero_shot_templates: {t!r} must hold exactly one '{{}}' for the class name")


def build_model(config) -> CLIPModel:
  c, d = config.clip, config.data
  text = TextTower(
    vocab_size=d.vocab_size,
    max_len=d.max_caption_tokens,
    width=c.text_width,
    depth=c.text_depth,
    heads=c.text_heads,
    causal=c.causal,
    dtype=jnp.dtype(config.model.dtype),
  )
  return CLIPModel(
    encoder=vision.build_encoder(config), text=text, embed_dim=c.embed_dim, init_temperature=c.init_temperature
  )


def tokenize(tok: wordpiece.WordPiece, texts, max_tokens: int) -> np.ndarray:
  """(N, max_tokens) int32: [CLS] the caption's pieces (cut to fit) [SEP], then [PAD]."""
  out = np.full((len(texts), max_tokens), wordpiece.PAD_ID, np.int32)
  for i, ids in enumerate(tok.encode_batch(list(texts))):
    row = [tok.cls_id, *ids[: max_tokens - 2].tolist(), tok.sep_id]
    out[i, : len(row)] = row
  return out


# ------------------------------------------------------------------------------------------------------ data


def load_train_data(config, *, workdir: str | None = None) -> arrays.ArrayData:
  """The training pairs as {'image', 'tokens' (N, V, L): every image's captions, 'num_captions' (N,)}; the
  held-out pairs and the tokenizer in `extras`. Both splits are read, and checked, before the first step."""
  d = config.data
  train = pairs.load(d, d.train_split, d.max_train_examples)
  held_out = pairs.load(d, d.eval_split, d.max_eval_examples)
  texts = [t for captions in train.captions for t in captions]
  tok = wordpiece.for_run(workdir, texts, vocab_size=d.vocab_size, lowercase=d.lowercase, save=jax.process_index() == 0)
  variants = min(max(map(len, train.captions)), d.max_captions)
  tokens = np.full((len(train), variants, d.max_caption_tokens), wordpiece.PAD_ID, np.int32)
  counts = np.array([min(len(c), variants) for c in train.captions], np.int32)
  flat = tokenize(tok, [t for c in train.captions for t in c[:variants]], d.max_caption_tokens)
  rows = np.repeat(np.arange(len(train)), counts)
  slots = np.concatenate([np.arange(n) for n in counts])
  tokens[rows, slots] = flat
  print(
    f"pairs: {len(train)} training images with {len(flat)} captions, {len(held_out)} held out; vocabulary "
    f"{tok.vocab_size}; {np.mean(flat != wordpiece.PAD_ID, axis=1).mean() * d.max_caption_tokens:.1f} tokens a caption",
    flush=True,
  )
  return arrays.ArrayData(
    {"image": train.images, "tokens": tokens, "num_captions": counts},
    extras={"train": train, "held_out": held_out, "tokenizer": tok},
  )


# --------------------------------------------------------------------------------------------------- training


def init(config, rng, example_batch, *, data=None):
  del data
  images = vision.eval_view(example_batch["image"], config)
  variables = build_model(config).init(rng, images, example_batch["tokens"][:, 0], train=False)
  return variables["params"], {"batch_stats": variables.get("batch_stats", {})}


def train_view(images, rng, config):
  """A random resized crop (`augment.crop_scale`), flipped only with `augment.flip` (an emoji's left and right can
  matter: arrows, hands), normalized."""
  return vision.normalize(vision.crop_flip(images, rng, config, config.augment.crop_scale, flip=config.augment.flip))


def pick_captions(tokens: jax.Array, num_captions: jax.Array, rng: jax.Array) -> jax.Array:
  """(B, V, L) tokens of every image's captions, of which the first `num_captions` are real -> (B, L): one of
  them per image, uniformly."""
  pick = jnp.floor(jax.random.uniform(rng, num_captions.shape) * num_captions).astype(jnp.int32)
  return jnp.take_along_axis(tokens, pick[:, None, None], axis=1)[:, 0]


def loss_fn(params, state, batch, rng, config, step):
  del step
  k_view, k_caption = jax.random.split(rng)
  tokens = pick_captions(batch["tokens"], batch["num_captions"], k_caption)
  (image_embeddings, text_embeddings, logit_scale, _), updates = build_model(config).apply(
    {"params": params, **state},
    train_view(batch["image"], k_view, config),
    tokens,
    train=True,
    mutable=["batch_stats"],
  )
  loss = losses.clip_loss(image_embeddings, text_embeddings, logit_scale=logit_scale)
  # The same matrix the loss computes (XLA's CSE keeps one): each image's best caption.
  logits = losses.clip_logits(image_embeddings, text_embeddings, logit_scale=logit_scale)
  metrics = {
    "accuracy": jnp.mean(jnp.argmax(logits, axis=1) == jnp.arange(logits.shape[0]), dtype=jnp.float32),
    "logit_scale": jnp.exp(logit_scale),
  }
  return loss, (metrics, {"batch_stats": updates.get("batch_stats", {})})


# ------------------------------------------------------------------------------------------------------ evals


def _joint(params, state, config, mesh, *, images=None, tokens=None) -> np.ndarray:
  """Embeddings in the shared space of `images` (uint8) or `tokens`, on the mesh in batches of evals.batch_size."""
  from ssljax.evals import suite

  model = build_model(config)
  if images is not None:
    fn = lambda p, s, b: model.apply(
      {"params": p, **s}, vision.eval_view(b["x"], config), train=False, method=CLIPModel.encode_image
    )[0]
    inputs = images
  else:
    fn = lambda p, s, b: model.apply({"params": p, **s}, b["x"], train=False, method=CLIPModel.encode_text)
    inputs = tokens
  return suite.embed_batches(fn, params, state, {"x": inputs}, config, mesh).astype(np.float32)


def _towers_results(params, state, context, held_out, tok) -> tuple[dict, dict]:
  """Zero-shot and retrieval scores of one pair of towers: (results, what the pictures need)."""
  from ssljax.evals import zero_shot

  config, mesh = context.config, context.mesh
  embed_texts = lambda texts: _joint(
    params, state, config, mesh, tokens=tokenize(tok, texts, config.data.max_caption_tokens)
  )
  images = _joint(params, state, config, mesh, images=held_out.images)
  results, seen = {}, {"images": images}
  for i, (name, labels) in enumerate(held_out.labels.items()):
    weights = zero_shot.classifier(embed_texts, held_out.class_names[name], config.evals.zero_shot_templates)
    predicted = zero_shot.predict(images, weights)
    results[f"zero_shot/{name}/top1"] = float(np.mean(predicted == labels))
    if i == 0:
      results["zero_shot/top1"] = results[f"zero_shot/{name}/top1"]
    seen[name] = predicted
  texts, text_of_image = zero_shot.distinct_texts([c[0] for c in held_out.captions])
  text_embeddings = embed_texts(texts)
  ks = tuple(config.evals.retrieval_ks)
  results.update(
    {f"retrieval/{k}": v for k, v in zero_shot.retrieval(images, text_embeddings, text_of_image, ks).items()}
  )
  seen.update(texts=texts, text_of_image=text_of_image, text_embeddings=text_embeddings)
  return results, seen


def evaluate(context) -> dict:
  from ssljax.evals import suite

  config, method, mesh = context.config, context.method, context.mesh
  extras = context.train_data.extras
  train, held_out, tok = extras["train"], extras["held_out"], extras["tokenizer"]
  starts = {"": (context.params, context.method_state)}
  if "random_init" in config.evals.baselines:
    starts["baseline/random_init/"] = context.random_init()
  results, seen = {}, {}
  for prefix, (params, state) in starts.items():
    scores, seen[prefix] = _towers_results(params, state, context, held_out, tok)
    results.update({prefix + k: v for k, v in scores.items()})
  for name in held_out.labels:
    results[f"chance/zero_shot/{name}/top1"] = 1.0 / len(held_out.class_names[name])
  for k in config.evals.retrieval_ks:
    results[f"chance/retrieval/i2t_r@{k}"] = min(1.0, k / len(seen[""]["texts"]))

  if held_out.labels:  # the image tower's probes, on the first label set
    name = next(iter(held_out.labels))
    for prefix, (params, state) in starts.items():
      features = [
        suite.embed_arrays(method, params, state, {"image": split.images}, config, mesh) for split in (train, held_out)
      ]
      chosen = {}
      scores = suite.probe_scores(
        features[0],
        train.labels[name],
        features[1],
        held_out.labels[name],
        num_classes=len(held_out.class_names[name]),
        config=config,
        chosen=chosen,
      )
      context.summary.setdefault("probe_l2", {}).update({prefix + k: v for k, v in chosen.items()})
      results.update({prefix + k: v for k, v in scores.items()})
  for key in sorted(results):
    if not key.startswith("baseline/") and not key.startswith("chance/"):
      base = results.get("baseline/random_init/" + key)
      chance = results.get("chance/" + key)
      extra = (f" (random init {base:.4f}" if base is not None else "") + (
        f", chance {chance:.4f})" if chance is not None else (")" if base is not None else "")
      )
      print(f"eval {key}: {results[key]:.4f}{extra}", flush=True)
  if config.evals.plots and jax.process_index() == 0:
    _pictures(context, held_out, seen[""])
  return results


def _pictures(context, held_out, seen) -> None:
  from ssljax.evals import plots, zero_shot

  config, workdir = context.config, context.workdir
  pick = np.random.default_rng(config.seed).choice(len(held_out), size=min(8, len(held_out)), replace=False)
  sims = zero_shot.l2_normalize(seen["images"][pick]) @ zero_shot.l2_normalize(seen["text_embeddings"]).T
  top = np.argsort(-sims, axis=1)[:, :5]
  rows = [[(seen["texts"][j], j == seen["text_of_image"][i]) for j in row] for i, row in zip(pick, top)]
  _, grid = plots.retrieval_grid(
    held_out.images[pick], rows, os.path.join(workdir, "retrieval.png"), title="held-out images: top 5 captions"
  )
  name = next(iter(held_out.labels), None)
  images = {"retrieval": grid}
  if name is not None:
    _, images["zero_shot_confusion"] = plots.confusion_plot(
      held_out.labels[name],
      seen[name],
      held_out.class_names[name],
      os.path.join(workdir, "zero_shot_confusion.png"),
      title=f"zero-shot {name} on held-out images (templates never trained on)",
    )
  if context.writer is not None:
    for tag, image in images.items():
      context.writer.write_image(context.step, tag, image)


METHOD = vision.image_method(
  "clip", init=init, loss_fn=loss_fn, check_config=check_config, load_train_data=load_train_data, evaluate=evaluate
)
