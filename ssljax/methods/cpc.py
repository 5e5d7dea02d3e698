"""Contrastive Predictive Coding (van den Oord et al. 2018, arXiv:1807.03748): g_enc encodes each element of a
sequence, a GRU g_ar summarizes the past into c_t, and InfoNCE asks W_k c_t to pick z_{t+k} out of the encodings of
the other examples of the global batch and of the other steps of its own sequence, for k = 1..K.

Two inputs, one method (`cpc.modality`):
  image  a grid of overlapping patches (`cpc.patch_size`, `cpc.patch_stride`), each encoded alone by
         `model.encoder`, whose columns are read top to bottom; evaluated by the image suite (kNN, linear probe,
         fine-tuning at label fractions, raw pixels and the random-init encoder beside it), configs/cpc.py.
  audio  raw waveforms through a strided 1-D convolution stack (100 frames a second at 16 kHz); evaluated by a
         linear probe on speaker identity over the pooled c_t of held-out utterances, beside MFCCs and the
         random-init encoder, as the paper does on LibriSpeech; configs/cpc_audio.py.
Both end with the accuracy of each prediction step k on held-out data (`cpc/accuracy_k{k}`) and its picture.
"""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssljax import losses, sharding
from ssljax.config import ConfigError
from ssljax.methods import vision
from ssljax.methods.base import ImageHooks, Method
from ssljax.models import ENCODERS
from ssljax.models.cpc import READOUTS, AudioEncoder, PatchGridEncoder, Predictor, grid_size


class CPCModel(nn.Module):
  """An encoder returning aux 'z' (B, G, T, D) and 'context' (B, G, T, H), and the predictor W_1..W_K on c_t."""

  encoder: nn.Module
  steps: int

  @nn.compact
  def __call__(self, x, *, train: bool):
    _, aux = self.encoder(x, train=train)
    predictions = Predictor(self.steps, aux["z"].shape[-1], name="predictor")(aux["context"])
    return predictions, aux


def _is_audio(config) -> bool:
  return config.cpc.modality == "audio"


# ------------------------------------------------------------------------------------------------- networks


def build_encoder(config) -> nn.Module:
  """The encoder of either input: `PatchGridEncoder` over `model.encoder` patches, or `AudioEncoder`."""
  c, m = config.cpc, config.model
  if _is_audio(config):
    return AudioEncoder(
      width=m.width,
      context_dim=c.context_dim,
      kernels=tuple(m.kernels),
      strides=tuple(m.strides),
      readout=c.readout,
      dtype=jnp.dtype(m.dtype),
    )
  return PatchGridEncoder(
    patch_encoder=vision.build_encoder(config),
    patch=c.patch_size,
    stride=c.patch_stride,
    context_dim=c.context_dim,
    readout=c.readout,
    dtype=jnp.dtype(m.dtype),
  )


def build_model(config) -> CPCModel:
  return CPCModel(encoder=build_encoder(config), steps=config.cpc.prediction_steps)


def check_config(config) -> None:
  c = config.cpc
  if c.modality not in ("image", "audio"):
    raise ConfigError(f"cpc.modality='{c.modality}' is not one of image, audio")
  if c.readout not in READOUTS:
    raise ConfigError(f"cpc.readout='{c.readout}' is not one of {', '.join(READOUTS)}")
  if c.prediction_steps < 1:
    raise ConfigError(f"cpc.prediction_steps={c.prediction_steps} must be at least 1")
  if _is_audio(config):
    from ssljax.methods import cpc_audio

    cpc_audio.check_config(config)
    steps = cpc_audio.frames(config)
    what = f"the {steps} frames of data.segment_length={config.data.segment_length}"
  else:
    vision.check_image_config(config, model_encoder=False)
    if config.model.encoder not in ENCODERS:
      raise ConfigError(f"model.encoder='{config.model.encoder}' is not one of {', '.join(sorted(ENCODERS))}")
    if not 0 < c.patch_size <= config.data.image_size or c.patch_stride < 1:
      raise ConfigError(
        f"cpc.patch_size={c.patch_size}, cpc.patch_stride={c.patch_stride} do not cut a "
        f"{config.data.image_size}-pixel image into patches"
      )
    steps = grid_size(config.data.image_size, patch=c.patch_size, stride=c.patch_stride)
    what = f"the {steps} rows of the patch grid"
  if c.prediction_steps >= steps:
    raise ConfigError(f"cpc.prediction_steps={c.prediction_steps} must be shorter than {what}")


# ----------------------------------------------------------------------------------------------- training


def _input(batch, config):
  return batch["wave"] if _is_audio(config) else vision.eval_view(batch["image"], config)


def init(config, rng, example_batch, *, data=None):
  del data
  return vision.init_model(build_model(config), rng, _input(example_batch, config))


def predict(params, state, x, config, *, train: bool):
  """(predictions, aux, new state): the model on the input `x` (a normalized image view or waveforms)."""
  variables = {"params": params, **state}
  if train:
    (predictions, aux), updates = build_model(config).apply(variables, x, train=True, mutable=["batch_stats"])
    return predictions, aux, {"batch_stats": updates.get("batch_stats", {})}
  predictions, aux = build_model(config).apply(variables, x, train=False)
  return predictions, aux, state


def loss_fn(params, state, batch, rng, config, step):
  del step
  # Images: the light crop-and-flip; audio: the segment as it is (the paper augments neither).
  x = batch["wave"] if _is_audio(config) else vision.train_view(batch["image"], rng, config)
  predictions, aux, new_state = predict(params, state, x, config, train=True)
  loss, accuracy = losses.cpc(predictions, aux["z"], self_negatives=config.cpc.self_negatives)
  metrics = {"accuracy_k1": accuracy[0], f"accuracy_k{len(accuracy)}": accuracy[-1]}
  return loss, (metrics, new_state)


def embed(params, state, batch, config):
  _, aux = build_encoder(config).apply(vision.encoder_variables(params, state), _input(batch, config), train=False)
  return aux["pre_logits"].astype(jnp.float32)


# ------------------------------------------------------------------------------------------------- evals


def step_accuracies(params, state, batches, config, mesh) -> np.ndarray:
  """(K,) accuracy of each prediction step k on held-out `batches` (each a global batch of inputs: its examples
  are each other's negatives, as in training), averaged over the batches."""
  repl, rows = sharding.replicated(mesh), sharding.batch_sharded(mesh)

  def accuracy(params, state, batch):
    predictions, aux, _ = predict(params, state, _input(batch, config), config, train=False)
    return losses.cpc(predictions, aux["z"], self_negatives=config.cpc.self_negatives)[1]

  fn = jax.jit(accuracy, in_shardings=(repl, repl, rows), out_shardings=repl)
  return np.mean([sharding.to_host(fn(params, state, sharding.host_to_global(b, mesh))) for b in batches], axis=0)


def accuracy_results(context, batches) -> dict:
  """`cpc/accuracy_k{k}` of the trained model and of its random init on held-out `batches`, and their picture."""
  from ssljax.evals import plots

  config, mesh = context.config, context.mesh
  trained = step_accuracies(context.params, context.method_state, batches, config, mesh)
  initial = step_accuracies(*context.random_init(), batches, config, mesh)
  results = {}
  for prefix, accuracies in (("", trained), ("baseline/random_init/", initial)):
    results.update({f"{prefix}cpc/accuracy_k{k + 1}": float(a) for k, a in enumerate(accuracies)})
  # Candidates: the batch's encodings at the target step, and the other steps of the own sequence.
  batch_size = len(next(iter(batches[0].values())))
  chance = 1.0 / (batch_size + (_steps(config) - 1 if config.cpc.self_negatives else 0))
  print("eval cpc: accuracy by step k " + ", ".join(f"{a:.3f}" for a in trained) + f" (chance about {chance:.4f})")
  if config.evals.plots and jax.process_index() == 0:
    _, image = plots.step_accuracy_plot(
      {config.method: trained, "random init": initial},
      os.path.join(context.workdir, "cpc_accuracy_by_step.png"),
      chance=chance,
      title=f"CPC ({config.cpc.modality}): held-out prediction accuracy",
    )
    if context.writer is not None:
      context.writer.write_image(context.step, "cpc_accuracy_by_step", image)
  return results


def _steps(config) -> int:
  if _is_audio(config):
    from ssljax.methods import cpc_audio

    return cpc_audio.frames(config)
  return grid_size(config.data.image_size, patch=config.cpc.patch_size, stride=config.cpc.patch_stride)


def evaluate(context) -> dict:
  config = context.config
  if _is_audio(config):
    from ssljax.methods import cpc_audio

    return cpc_audio.evaluate(context)
  results = vision.evaluate(context)
  images = vision.held_out_images(config, config.evals.batch_size * config.cpc.eval_batches)
  batch_size = config.evals.batch_size
  batches = [{"image": images[i : i + batch_size]} for i in range(0, len(images) - batch_size + 1, batch_size)]
  return {**results, **accuracy_results(context, batches)}


# ---------------------------------------------------------------------------------------- the method


def _dispatch(image_fn, audio_name: str):
  """A `Method` field that is `image_fn` for images and `cpc_audio.<audio_name>` for audio."""

  def fn(config, *args, **kwargs):
    if _is_audio(config):
      from ssljax.methods import cpc_audio

      return getattr(cpc_audio, audio_name)(config, *args, **kwargs)
    return image_fn(config, *args, **kwargs)

  return fn


METHOD = Method(
  name="cpc",
  load_train_data=_dispatch(vision.load_train_data, "load_train_data"),
  init=init,
  loss_fn=loss_fn,
  embed=embed,
  evaluate=evaluate,
  check_config=check_config,
  batch_from_inputs=_dispatch(vision.batch_from_images, "batch_from_inputs"),
  encoder=lambda config, params, state: (build_encoder(config), vision.encoder_variables(params, state)),
  # The vision suite fine-tunes the whole patch-grid encoder (g_enc and g_ar) with a new head on its readout.
  image=ImageHooks(build_encoder=build_encoder, eval_view=vision.eval_view, finetune_view=vision.finetune_view),
)
