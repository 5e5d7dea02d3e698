"""CPC's raw-audio input: the data (a directory of WAV files, the espeak-ng speech of `ssljax.data.espeak`, or tfds
`librispeech`) and the speaker probe the paper evaluates with.

Every speaker's utterances are split once (`data.heldout_per_speaker` of each held out, drawn with the seed): CPC
trains on fixed-length windows of the others, and a linear probe on the pooled c_t of a few windows of each
utterance learns the speakers from the training utterances and is tested on the held-out ones, which CPC never
saw. Beside it, the same probe on MFCCs of the same windows (`ssljax.evals.mfcc`) and on the random-init encoder.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from ssljax.config import ConfigError
from ssljax.data import DataError, arrays, audio

SOURCES = ("wav_dir", "librispeech")


def frames(config) -> int:
  """Encoder frames of one window: the strided convolutions ('SAME' padding) each divide the length, rounding up."""
  length = config.data.segment_length
  for s in config.model.strides:
    length = math.ceil(length / s)
  return length


def check_config(config) -> None:
  d = config.data
  if d.name not in SOURCES:
    raise ConfigError(f"data.name='{d.name}' is not an audio source ({', '.join(SOURCES)})")
  if d.name == "wav_dir" and not d.path:
    raise ConfigError("data.path is empty: name the directory of WAV files (data.name='wav_dir')")
  if d.segment_length < 1 or d.heldout_per_speaker < 1 or d.sample_rate < 1:
    raise ConfigError(
      "data.segment_length, data.heldout_per_speaker and data.sample_rate must be positive "
      f"(got {d.segment_length}, {d.heldout_per_speaker}, {d.sample_rate})"
    )
  if len(config.model.kernels) != len(config.model.strides):
    raise ConfigError(
      f"model.kernels {tuple(config.model.kernels)} and model.strides {tuple(config.model.strides)} differ in length"
    )
  if config.evals.batch_size % jax.device_count():  # the probes embed on the training mesh: all devices
    raise ConfigError(
      f"evals.batch_size={config.evals.batch_size} is not divisible by the {jax.device_count()} devices"
    )
  if config.evals.windows_per_utterance < 1:
    raise ConfigError(f"evals.windows_per_utterance={config.evals.windows_per_utterance} must be at least 1")


def _utterances(config) -> audio.AudioSet:
  d = config.data
  if d.name == "librispeech":
    found = audio.load_tfds_librispeech(d.train_split, data_dir=d.tfds_data_dir or None, limit=d.max_utterances)
    if found.sample_rate != d.sample_rate:
      raise DataError(f"librispeech is {found.sample_rate} Hz, not data.sample_rate={d.sample_rate}")
  else:
    found = audio.load_wav_dir(d.path, sample_rate=d.sample_rate)
    if d.max_utterances:
      found = found.subset(np.arange(min(d.max_utterances, len(found))))
  return found


def load_train_data(config, *, workdir: str | None = None) -> arrays.ArrayData:
  """The training windows ({'wave': (M, segment_length)}) of the training utterances; the probe's utterances, both
  sides, in `extras`."""
  del workdir
  d = config.data
  train, test = audio.split_utterances(_utterances(config), heldout_per_speaker=d.heldout_per_speaker, seed=config.seed)
  windows, _, _ = audio.segments(train, length=d.segment_length)
  if d.max_train_examples:
    windows = windows[: d.max_train_examples]
  print(
    f"audio: {train.num_speakers} speakers, {len(train)} training utterances ({train.seconds / 3600:.2f} h, "
    f"{len(windows)} windows of {d.segment_length / d.sample_rate:.2f} s), {len(test)} held out",
    flush=True,
  )
  return arrays.ArrayData({"wave": windows}, extras={"probe_train": train, "probe_test": test})


def batch_from_inputs(config, workdir: str, inputs) -> dict:
  """1-D waveforms at the run's sample rate (any length) -> {'wave': (N, segment_length)}: each cut or zero-padded
  to the window the encoder was trained on."""
  del workdir
  length = config.data.segment_length
  out = np.zeros((len(inputs), length), np.float32)
  for i, wave in enumerate(inputs):
    wave = np.asarray(wave, np.float32)
    if wave.ndim != 1:
      raise ValueError(f"waveform {i}: expected a 1-D array of samples, got shape {wave.shape}")
    out[i, : min(len(wave), length)] = wave[:length]
  return {"wave": out}


def _probe_windows(utterances: audio.AudioSet, config):
  """A few windows of each utterance, spread over it: (windows, the utterance of each)."""
  windows, _, owner = audio.segments(
    utterances, length=config.data.segment_length, max_per_utterance=config.evals.windows_per_utterance
  )
  return windows, owner


def _per_utterance(features: np.ndarray, owner: np.ndarray, count: int) -> np.ndarray:
  sums = np.zeros((count, features.shape[1]), np.float64)
  np.add.at(sums, owner, features)
  return (sums / np.bincount(owner, minlength=count)[:, None]).astype(np.float32)


def evaluate(context) -> dict:
  """Speaker probes (kNN and linear, on the pooled readout of each utterance's windows) for the trained encoder, its
  random init and MFCCs; then the accuracy of each prediction step k on held-out windows."""
  from ssljax.evals import mfcc, suite
  from ssljax.methods import cpc

  config, mesh, method = context.config, context.mesh, context.method
  train, test = context.train_data.extras["probe_train"], context.train_data.extras["probe_test"]
  sides = {name: _probe_windows(u, config) for name, u in (("train", train), ("test", test))}
  count = {"train": len(train), "test": len(test)}

  def encoder_features(params, state):
    return {
      name: _per_utterance(
        suite.embed_arrays(method, params, state, {"wave": windows}, config, mesh), owner, count[name]
      )
      for name, (windows, owner) in sides.items()
    }

  features = {"": encoder_features(context.params, context.method_state)}
  for baseline in config.evals.baselines:
    if baseline == "random_init":
      features["baseline/random_init/"] = encoder_features(*context.random_init())
    elif baseline == "mfcc":
      features["baseline/mfcc/"] = {
        name: _per_utterance(mfcc.mfcc_features(windows, sample_rate=config.data.sample_rate), owner, count[name])
        for name, (windows, owner) in sides.items()
      }
    else:
      raise ConfigError(f"evals.baselines: unknown baseline '{baseline}' (known: mfcc, random_init)")

  results = {}
  for prefix, f in features.items():
    chosen = {}
    scores = suite.probe_scores(
      f["train"], train.speakers, f["test"], test.speakers, num_classes=train.num_speakers, config=config, chosen=chosen
    )
    context.summary.setdefault("probe_l2", {}).update({prefix + k: v for k, v in chosen.items()})
    results.update({prefix + k: v for k, v in scores.items()})
    print(f"eval speaker {prefix or 'trained/'}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()), flush=True)

  # The accuracy per step k on every window of the held-out utterances, a batch of them at a time.
  held_out, _, _ = audio.segments(test, length=config.data.segment_length)
  batch_size = config.evals.batch_size
  usable = min(len(held_out), batch_size * config.cpc.eval_batches) // batch_size * batch_size
  if usable == 0:
    raise DataError(
      f"the {len(held_out)} held-out windows do not fill one batch of evals.batch_size={batch_size}: hold out more "
      "utterances (data.heldout_per_speaker) or lower evals.batch_size"
    )
  batches = [{"wave": held_out[i : i + batch_size]} for i in range(0, usable, batch_size)]
  return {**results, **cpc.accuracy_results(context, batches)}
