"""CPC on images and on raw audio: the patch grid, the causal context, learning on real Fashion-MNIST and real
espeak-ng speech, refusals, and both inputs through the engine (same evals on one device, exact resume)."""

import os

import jax
import jax.numpy as jnp
import launcher
import numpy as np
import pytest

from ssljax.data import espeak
from ssljax.models.cpc import Autoregressor, patch_grid

IMAGE_TINY = "configs/cpc.py:tiny"
AUDIO_TINY = "configs/cpc_audio.py:tiny"


def test_patch_grid_cuts_overlapping_patches_in_row_major_order():
  images = np.random.default_rng(0).random((2, 12, 12, 3)).astype(np.float32)
  grid = np.asarray(patch_grid(jnp.asarray(images), patch=6, stride=3))
  assert grid.shape == (2, 3, 3, 6, 6, 3)
  for r in range(3):
    for c in range(3):
      np.testing.assert_array_equal(grid[:, r, c], images[:, 3 * r : 3 * r + 6, 3 * c : 3 * c + 6])


def test_the_context_sees_only_the_past():
  z = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 7, 5))
  model = Autoregressor(hidden=8)
  params = model.init(jax.random.PRNGKey(1), z)
  c = model.apply(params, z)
  changed = model.apply(params, z.at[:, :, 4:].set(0.0))  # the future of step 3 replaced
  np.testing.assert_allclose(changed[:, :, :4], c[:, :, :4], atol=1e-6)
  assert not np.allclose(changed[:, :, 4:], c[:, :, 4:])


def test_the_image_step_learns_to_predict_the_rows_below(train_steps):
  history, _ = train_steps(IMAGE_TINY, 40, **{"optim.learning_rate": 3e-3})
  # Chance picks 1 of 32 images + 5 other rows: 0.027 (the mean of 5 steps of 960 predictions: +-0.002). Measured
  # 0.08, the loss from 3.68 (ln 37 = 3.61) to 3.2.
  assert np.mean([h["accuracy_k1"] for h in history[-5:]]) > 0.05, history[-1]
  assert np.mean([h["loss"] for h in history[-5:]]) < np.mean([h["loss"] for h in history[:3]]) - 0.25


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
  """Real espeak-ng speech: 6 speakers, 5 utterances each."""
  out = tmp_path_factory.mktemp("speech") / "speech"
  espeak.generate(str(out), num_speakers=6, utterances_per_speaker=5, seed=0)
  return str(out)


def test_the_audio_step_learns_to_predict_the_frames_ahead(train_steps, speech):
  from ssljax.methods import cpc_audio

  history, _ = train_steps(
    AUDIO_TINY, 60, data=cpc_audio.load_train_data, **{"data.path": speech, "optim.learning_rate": 3e-3}
  )
  # Chance picks 1 of 16 windows + 15 other frames: 0.032 (+-0.005 over 5 steps of 240 predictions); measured 0.2.
  assert np.mean([h["accuracy_k1"] for h in history[-5:]]) > 0.1, history[-1]


@pytest.mark.parametrize(
  "spec, override, message",
  [
    (IMAGE_TINY, "cpc.prediction_steps=6", "cpc.prediction_steps=6 must be shorter than the 6 rows of the patch grid"),
    (IMAGE_TINY, "cpc.patch_size=40", "cpc.patch_size=40, cpc.patch_stride=4 do not cut a 28-pixel image into patches"),
    (IMAGE_TINY, "cpc.modality=video", "cpc.modality='video' is not one of image, audio"),
    (
      AUDIO_TINY,
      "cpc.prediction_steps=16",
      "cpc.prediction_steps=16 must be shorter than the 16 frames of data.segment_length=2560",
    ),
  ],
)
def test_refuses_a_bad_cpc_config_in_one_line(tmp_path, spec, override, message):
  rc, _, err = launcher.run_main(spec, tmp_path / "w", override, "data.path=" + str(tmp_path))
  assert rc == 2 and err.strip().splitlines() == [f"error: {message}"], err
  assert not (tmp_path / "w").exists()


def test_refuses_a_wav_directory_without_audio_or_with_mixed_rates(tmp_path):
  from ssljax.data import audio

  (tmp_path / "empty" / "spk").mkdir(parents=True)
  rc, _, err = launcher.run_main(AUDIO_TINY, tmp_path / "w", f"data.path={tmp_path / 'empty'}")
  assert rc == 2 and len(err.strip().splitlines()) == 1 and f"{tmp_path / 'empty'}: no .wav files" in err, err
  mixed = tmp_path / "mixed"
  (mixed / "a").mkdir(parents=True)
  (mixed / "b").mkdir()
  audio.write_wav(str(mixed / "a" / "1.wav"), np.zeros(1600, np.float32), 16000)
  audio.write_wav(str(mixed / "b" / "1.wav"), np.zeros(800, np.float32), 8000)
  rc, _, err = launcher.run_main(AUDIO_TINY, tmp_path / "w", f"data.path={mixed}")
  assert rc == 2 and len(err.strip().splitlines()) == 1 and "8000" in err and "16000" in err, err
  assert not (tmp_path / "w").exists()


tiny_run, test_image_evals_are_the_same_on_one_device, test_image_run_resumes_exactly_after_sigkill = (
  launcher.end_to_end(IMAGE_TINY, kill_at=2)
)


def test_image_run_reports_the_suite_and_the_accuracy_per_step(tiny_run):
  results = launcher.read_json(os.path.join(tiny_run[0], "eval.json"))
  launcher.assert_suite_read_both_encoders(results, ("knn/top1", "linear/top1", "linear_10pct/top1"))
  for prefix in ("", "baseline/random_init/"):
    assert {f"{prefix}cpc/accuracy_k{k}" for k in (1, 2)} <= set(results)
  assert "baseline/raw_pixels/linear/top1" in results and "finetune/top1" in results


@pytest.fixture(scope="module")
def audio_run(speech, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("cpc_audio")
  rc, out, err = launcher.run_cli(
    AUDIO_TINY, workdir, f"data.path={speech}", env=launcher.devices_env(launcher.EVAL_DEVICES)
  )
  assert rc == 0, err[-3000:]
  return workdir


def test_audio_run_reports_speaker_probes_beside_mfcc_and_random_init(audio_run):
  results = launcher.read_json(os.path.join(audio_run, "eval.json"))
  for prefix in ("", "baseline/mfcc/", "baseline/random_init/"):
    for name in ("knn/top1", "linear/top1"):
      assert 0.0 <= results[prefix + name] <= 1.0, prefix + name
  # MFCCs tell 6 espeak-ng speakers apart on held-out sentences far above chance (1/6).
  assert results["baseline/mfcc/linear/top1"] > 0.5, results
  assert {f"cpc/accuracy_k{k}" for k in range(1, 5)} <= set(results)
  # A loaded run embeds waveforms of any length: cut or padded to the window it trained on.
  import ssljax

  features = ssljax.load(audio_run).embed([np.zeros(1000, np.float32), np.ones(9000, np.float32) * 0.1])
  assert features.shape == (2, 32) and np.isfinite(features).all()


def test_audio_evals_are_the_same_on_one_device(audio_run, speech, tmp_path):
  launcher.assert_same_evals_on_one_device(audio_run, AUDIO_TINY, f"data.path={speech}", scratch=tmp_path)


def test_audio_run_resumes_exactly_after_sigkill(audio_run, speech, tmp_path):
  launcher.assert_resumes_exactly(
    AUDIO_TINY, tmp_path, audio_run, f"data.path={speech}", "evals.baselines=()", kill_at=2
  )
