"""ssljax.evals.mfcc on real espeak-ng speech: the features tell speakers apart on sentences they were not fit on,
as a speaker-probe baseline must."""

import shutil

import numpy as np
import pytest

from ssljax.data import audio, espeak
from ssljax.evals.mfcc import mfcc_features

RATE = 16000


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
  if shutil.which(espeak.ESPEAK) is None:
    pytest.skip("espeak-ng is not installed (`make data` installs it)")
  path = str(tmp_path_factory.mktemp("speech") / "speech")
  espeak.generate(path, num_speakers=5, utterances_per_speaker=6, seed=1)
  return audio.load_wav_dir(path, sample_rate=RATE)


def test_shape_and_finite(speech):
  features = mfcc_features(speech.waveforms[:3] + (np.zeros(100, np.float32),), sample_rate=RATE, n_mfcc=13)
  assert features.shape == (4, 26) and features.dtype == np.float32
  assert np.isfinite(features).all()
  assert (features[:3, 13:] > 0).all()  # speech varies over time; the deviations are not a constant


def test_separates_speakers_on_held_out_sentences(speech):
  from sklearn.linear_model import LogisticRegression
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler

  train, test = audio.split_utterances(speech, heldout_per_speaker=2, seed=0)
  probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
  probe.fit(mfcc_features(train.waveforms, sample_rate=RATE), train.speakers)
  accuracy = probe.score(mfcc_features(test.waveforms, sample_rate=RATE), test.speakers)
  assert accuracy >= 0.7, accuracy  # 10 held-out utterances of 5 speakers: chance is 0.2
