"""The image eval suite a run ends with: kNN and linear probes at label fractions, for the trained encoder and
for the baselines the config names (raw pixels, the same architecture at its random init), fine-tuning of the
whole encoder with a new head at the same label fractions (when `evals.finetune`), plus pictures.

Every encoder is read out the same way (`method.embed`), and fine-tuned with the same steps, so the lift over
the baselines is the lift of pre-training.

The probes and fine-tuning train on the run's training data and test on its `data.eval_split`, unless the config
has an `evals.data` section (the keys of `data`) with a non-empty name: then both come from that dataset. A method
that trains on unlabelled colour photos (colorization) is evaluated on Fashion-MNIST that way.
"""

from __future__ import annotations

import dataclasses
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssljax import sharding
from ssljax.config import ConfigError
from ssljax.data import arrays
from ssljax.data import images as image_data
from ssljax.evals import finetune, knn, linear, plots


def embed_batches(fn, params, method_state, inputs: dict, config, mesh) -> np.ndarray:
  """`fn(params, method_state, batch)` of every row of `inputs` (named arrays, the batch `fn` reads), computed on
  the mesh in batches of `evals.batch_size`; every process holds all the inputs and gets all the features (the
  probes run on the host, the same numbers on every process)."""
  batch_size = config.evals.batch_size
  sharding.check_batch_size(batch_size, mesh, "evals.batch_size")
  repl, rows = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  jitted = jax.jit(fn, in_shardings=(repl, repl, rows), out_shardings=repl)
  out = []
  for batch, valid in arrays.eval_batches(inputs, batch_size):
    out.append(sharding.to_host(jitted(params, method_state, sharding.host_to_global(batch, mesh)))[:valid])
  return np.concatenate(out)


def embed_arrays(method, params, method_state, inputs: dict, config, mesh) -> np.ndarray:
  """`method.embed` of every row of `inputs` (`embed_batches`)."""
  return embed_batches(lambda p, s, b: method.embed(p, s, b, config), params, method_state, inputs, config, mesh)


def embed_split(method, params, method_state, split, config, mesh) -> np.ndarray:
  """Features of every image of `split` (`embed_arrays` of {'image'})."""
  return embed_arrays(method, params, method_state, {"image": split.images}, config, mesh)


def probe_scores(train_x, train_y, test_x, test_y, *, num_classes: int, config, chosen: dict | None = None) -> dict:
  """kNN and linear-probe top-1 at each label fraction, under the names eval.json uses; `chosen` gets the probe's
  regularization per fraction (from `evals.probe_l2_grid`), for summary.json."""
  e = config.evals
  out = {
    "knn/top1": knn.knn_top1(
      train_x, train_y, test_x, test_y, num_classes=num_classes, k=e.knn_k, temperature=e.knn_temperature
    )
  }
  for fraction in e.label_fractions:
    idx = linear.label_fraction_indices(train_y, fraction, seed=config.seed)
    result = linear.linear_probe(
      train_x[idx], train_y[idx], test_x, test_y, num_classes=num_classes, seed=config.seed, l2_grid=e.probe_l2_grid
    )
    name = linear.fraction_name("linear", fraction)
    if chosen is not None:
      chosen[name] = result["l2"]
    if result["l2_at_grid_end"]:
      print(f"eval {name}: the probe chose l2={result['l2']:g}, an end of evals.probe_l2_grid")
    out[f"{name}/top1"] = float(result["top1"])
  return out


def eval_data(config, train_data) -> tuple[image_data.ImageSplit, image_data.ImageSplit]:
  """(labelled training split, test split) of the suite: `evals.data`'s when it names a dataset, else the run's
  training data and its `data.eval_split`."""
  d = config.evals.get("data")
  if d is not None and d.get("name"):
    return (
      image_data.load_split(d, d.train_split, d.max_train_examples),
      image_data.load_split(d, d.eval_split, d.max_eval_examples),
    )
  test = image_data.load_split(config.data, config.data.eval_split, config.data.max_eval_examples)
  limit = config.evals.get("max_train_examples", 0)
  if not isinstance(train_data, image_data.ImageSplit):  # streamed: the probes read the first labelled examples
    return image_data.load_split(config.data, config.data.train_split, limit or config.data.max_train_examples), test
  if limit and limit < len(train_data.labels):
    train_data = dataclasses.replace(train_data, images=train_data.images[:limit], labels=train_data.labels[:limit])
  return train_data, test


def evaluate(context) -> dict:
  """Runs the suite for an `EvalContext`: the trained encoder and each of `evals.baselines`."""
  config, method, mesh = context.config, context.method, context.mesh
  params, method_state = context.params, context.method_state
  train_data, eval_split = eval_data(config, context.train_data)
  num_classes = max(train_data.num_classes, eval_split.num_classes)
  features = {
    "": (
      embed_split(method, params, method_state, train_data, config, mesh),
      embed_split(method, params, method_state, eval_split, config, mesh),
    )
  }
  for baseline in config.evals.baselines:
    if baseline == "raw_pixels":
      flat = lambda s: s.images.reshape(len(s.images), -1).astype(np.float32) / 255.0
      features["baseline/raw_pixels/"] = (flat(train_data), flat(eval_split))
    elif baseline == "random_init":
      # The run's own starting point: same architecture, same seed, same readout.
      p0, s0 = context.random_init()
      features["baseline/random_init/"] = (
        embed_split(method, p0, s0, train_data, config, mesh),
        embed_split(method, p0, s0, eval_split, config, mesh),
      )
    else:
      raise ConfigError(f"evals.baselines: unknown baseline '{baseline}' (known: raw_pixels, random_init)")

  results = {}
  if config.evals.get("finetune", False):
    starts = {"": (params, method_state)}
    if "random_init" in config.evals.baselines:
      starts["baseline/random_init/"] = context.random_init()
    results.update(
      finetune_scores(
        config,
        method=method,
        starts=starts,
        train_split=train_data,
        eval_split=eval_split,
        num_classes=num_classes,
        mesh=mesh,
        stops=context.summary.setdefault("finetune_stop", {}),
      )
    )
  for prefix, (train_x, test_x) in features.items():
    chosen = {}
    scores = probe_scores(
      train_x, train_data.labels, test_x, eval_split.labels, num_classes=num_classes, config=config, chosen=chosen
    )
    context.summary.setdefault("probe_l2", {}).update({prefix + k: v for k, v in chosen.items()})
    results.update({prefix + k: v for k, v in scores.items()})
    print(f"eval {prefix or 'trained/'}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()), flush=True)

  if config.evals.plots and jax.process_index() == 0:
    _pictures(config, context.workdir, features, train_data, eval_split, context.writer, context.step)
  return results


class EncoderClassifier(nn.Module):
  """A vision method's encoder with a new linear head on its global feature (`pre_logits`)."""

  encoder: nn.Module
  num_classes: int

  @nn.compact
  def __call__(self, x, *, train: bool):
    _, aux = self.encoder(x, train=train)
    return nn.Dense(self.num_classes, name="head")(aux["pre_logits"].astype(jnp.float32))


def finetune_scores(
  config, *, method, starts: dict, train_split, eval_split, num_classes: int, mesh, stops: dict | None = None
) -> dict:
  """Fine-tunes the encoder of each start (prefix -> (params, method_state)) with a fresh head on each label
  fraction; every start gets the same budget, rate, batches and validation rows. Returns
  {prefix + 'finetune.../top1': ...}; `stops` gets each run's chosen step, for summary.json."""
  e = config.evals
  if method.image is None:
    raise ConfigError(f"evals.finetune: method '{method.name}' gives no image hooks (Method.image) to fine-tune")
  hooks = method.image
  classifier = EncoderClassifier(hooks.build_encoder(config), num_classes)

  def apply(p, state, batch, *, train, rng):
    x = hooks.finetune_view(batch["image"], rng, config) if train else hooks.eval_view(batch["image"], config)
    if not train or not state:
      return classifier.apply({"params": p, **state}, x, train=train), state
    return classifier.apply({"params": p, **state}, x, train=True, mutable=list(state))

  example = hooks.eval_view(train_split.images[:2], config)
  fresh = classifier.init(jax.random.PRNGKey(config.seed + 11), example, train=False)
  results = {}
  for fraction in e.label_fractions:
    idx = linear.label_fraction_indices(train_split.labels, fraction, seed=config.seed)
    name = linear.fraction_name("finetune", fraction)
    for prefix, (params, method_state) in starts.items():
      # The pre-trained (or initial) encoder, its BatchNorm statistics if it has any, and a fresh head.
      p = {"encoder": params["encoder"], "head": fresh["params"]["head"]}
      state = {}
      if "batch_stats" in fresh:
        state = {"batch_stats": {"encoder": method_state["batch_stats"]["encoder"]}}
      out = finetune.finetune_top1(
        params=p,
        state=state,
        apply=apply,
        train_x={"image": train_split.images[idx]},
        train_y=train_split.labels[idx],
        test_x={"image": eval_split.images},
        test_y=eval_split.labels,
        **finetune.budget_of(e),
        seed=config.seed,
        mesh=mesh,
      )
      results[f"{prefix}{name}/top1"] = out["top1"]
      if stops is not None:
        stops[prefix + name] = {k: out[k] for k in ("best_step", "steps", "validation_top1")}
      print(
        f"eval {prefix or 'trained/'}{name}: top1 {out['top1']:.4f} ({len(idx)} labels; step {out['best_step']} "
        f"of {out['steps']} chosen on validation, {out['validation_top1']:.4f})",
        flush=True,
      )
  return results


def _pictures(config, workdir, features, train_split, eval_split, writer, step) -> None:
  train_x, test_x = features[""]
  _, tsne = plots.tsne_plot(
    test_x,
    eval_split.labels,
    os.path.join(workdir, "tsne.png"),
    class_names=eval_split.class_names,
    title=f"{config.method}: test-set embeddings",
    seed=config.seed,
  )
  queries = np.random.default_rng(config.seed).choice(len(eval_split.labels), size=8, replace=False)
  names = {"": config.method, "baseline/random_init/": "random init"}
  neighbor_images, neighbor_labels = {}, {}
  for prefix, title in names.items():
    if prefix in features:
      bank, query = features[prefix]
      idx, _ = knn.nearest_neighbors(query[queries], bank, k=8)
      idx = np.asarray(idx)
      neighbor_images[title] = train_split.images[idx]
      neighbor_labels[title] = train_split.labels[idx]
  _, grid = plots.neighbors_plot(
    eval_split.images[queries],
    neighbor_images,
    os.path.join(workdir, "neighbors.png"),
    title="test images and their nearest training images",
    query_labels=eval_split.labels[queries],
    neighbor_labels_by_name=neighbor_labels,
  )
  if writer is not None:
    writer.write_image(step, "tsne", tsne)
    writer.write_image(step, "neighbors", grid)
