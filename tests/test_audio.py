"""ssljax.data.audio and ssljax.data.espeak: a tiny espeak-ng corpus written and read back, every refusal of
`load_wav_dir` as one line naming the path, and the utterance split and windows CPC and its probe read."""

import os
import shutil

import numpy as np
import pytest
from scipy.io import wavfile

from ssljax.data import DataError, audio, espeak

RATE = 16000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """4 speakers x 3 utterances: en-us as the female3 and the male3 variant, twice each at drawn pitches."""
  if shutil.which(espeak.ESPEAK) is None:
    pytest.skip("espeak-ng is not installed (`make data` installs it)")
  path = str(tmp_path_factory.mktemp("speech") / "speech")
  summary = espeak.generate(
    path, num_speakers=4, utterances_per_speaker=3, seed=0, voices=("en-us",), variant_names=("f3", "m3")
  )
  return path, summary


def _rows(path, name):
  with open(os.path.join(path, name)) as f:
    header, *rows = [line.rstrip("\n").split("\t") for line in f]
  return [dict(zip(header, row)) for row in rows]


def _median_f0(waveform, rate=RATE):
  """Median autocorrelation pitch over the loud 40 ms frames: the test's own, independent of the generator."""
  n = int(0.04 * rate)
  frames = np.lib.stride_tricks.sliding_window_view(waveform, n)[:: n // 2]
  energy = (frames**2).mean(axis=1)
  pitches = []
  for frame in frames[energy > 0.1 * energy.max()]:
    frame = frame - frame.mean()
    ac = np.correlate(frame, frame, "full")[n - 1 :]
    lag = rate // 400 + int(np.argmax(ac[rate // 400 : rate // 60]))
    if ac[lag] > 0.3 * ac[0]:  # voiced
      pitches.append(rate / lag)
  return float(np.median(pitches))


def test_espeak_corpus_reads_back(corpus):
  path, summary = corpus
  speech = audio.load_wav_dir(path, sample_rate=RATE)
  assert (summary.speakers, summary.utterances) == (4, 12) and len(speech) == 12
  assert speech.speaker_names == ("spk000", "spk001", "spk002", "spk003") and speech.sample_rate == RATE
  assert np.bincount(speech.speakers).tolist() == [3, 3, 3, 3]
  assert speech.utterance_ids[0] == "spk000/spk000-000"
  assert abs(speech.seconds - summary.audio_seconds) < 1e-6
  for waveform in speech.waveforms:
    assert waveform.dtype == np.float32 and len(waveform) > RATE  # 5 words or more: over a second
    assert np.sqrt(np.mean(waveform**2)) > 0.01 and np.abs(waveform).max() <= 1
    assert np.abs(waveform[:10]).max() < 0.05  # trimmed to just before the first sound, not into it
  # Utterances of a speaker read different sentences, at jittered pitch and speed.
  utterances = _rows(path, "utterances.tsv")
  for speaker in speech.speaker_names:
    own = [u for u in utterances if u["speaker"] == speaker]
    assert len({u["text"] for u in own}) == 3
  lengths = [len(w) for w, s in zip(speech.waveforms, speech.speakers) if s == 0]
  assert len(set(lengths)) == 3


def test_female_and_male_speakers_differ_in_pitch(corpus):
  path, _ = corpus
  speech = audio.load_wav_dir(path)
  variant = {row["speaker"]: row["variant"] for row in _rows(path, "speakers.tsv")}
  f0 = {"f3": [], "m3": []}
  for waveform, speaker in zip(speech.waveforms, speech.speakers):
    f0[variant[speech.speaker_names[speaker]]].append(_median_f0(waveform))
  assert len(f0["f3"]) == len(f0["m3"]) == 6  # two speakers of each
  assert min(f0["f3"]) > 1.1 * max(f0["m3"]), f0  # female3 starts near 140 Hz, male3 near 80 Hz


def test_generation_is_seeded_and_atomic(tmp_path, monkeypatch):
  if shutil.which(espeak.ESPEAK) is None:
    pytest.skip("espeak-ng is not installed (`make data` installs it)")
  sentences = ["The quick brown fox jumps over the lazy dog.", "A stitch in time saves nine, they said."]
  make = lambda out, seed: espeak.generate(
    str(out), num_speakers=1, utterances_per_speaker=2, seed=seed, sentences=sentences
  )
  make(tmp_path / "a", 3), make(tmp_path / "b", 3)
  files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
  assert len(files) == 4  # 2 WAVs and the two tables
  for rel in files:
    assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
  with pytest.raises(DataError, match="exists"):
    make(tmp_path / "a", 3)
  # A failure part way leaves neither the corpus nor its temporary directory behind.
  synthesize = espeak._synthesize
  calls = []

  def fail_second(*args):
    calls.append(1)
    if len(calls) == 2:
      raise DataError("synthesis failed")
    return synthesize(*args)

  monkeypatch.setattr(espeak, "_synthesize", fail_second)
  with pytest.raises(DataError, match="synthesis failed"):
    make(tmp_path / "c", 3)
  assert sorted(os.listdir(tmp_path)) == ["a", "b"]


def test_missing_espeak_names_the_debian_package(tmp_path, monkeypatch):
  monkeypatch.setenv("PATH", str(tmp_path))
  with pytest.raises(DataError, match="Debian package espeak-ng"):
    espeak.generate(str(tmp_path / "out"), num_speakers=1, utterances_per_speaker=1)
  assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------- load_wav_dir refusals


def _tone(seconds=0.1, rate=RATE):
  return 0.5 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * rate)) / rate)


def _refused(path, words, **kwargs):
  with pytest.raises(DataError) as info:
    audio.load_wav_dir(str(path), **kwargs)
  line = str(info.value)
  assert "\n" not in line and words in line, line
  return line


def test_load_wav_dir_refusals(tmp_path):
  _refused(tmp_path / "nowhere", f"{tmp_path / 'nowhere'}: no such directory")
  (tmp_path / "empty" / "spk").mkdir(parents=True)
  (tmp_path / "empty" / "spk" / "notes.txt").write_text("no audio")
  _refused(tmp_path / "empty", f"{tmp_path / 'empty'}: no .wav files")

  (tmp_path / "broken" / "spk").mkdir(parents=True)
  (tmp_path / "broken" / "spk" / "a.wav").write_bytes(b"RIFF\x00\x00\x00\x00not a wave at all")
  _refused(tmp_path / "broken", f"{tmp_path / 'broken' / 'spk' / 'a.wav'}: not a readable WAV")
  (tmp_path / "text" / "spk").mkdir(parents=True)
  (tmp_path / "text" / "spk" / "a.wav").write_text("hello")
  _refused(tmp_path / "text", f"{tmp_path / 'text' / 'spk' / 'a.wav'}: not a readable WAV")

  mixed = tmp_path / "mixed"
  for speaker, rate in (("a", RATE), ("b", 8000)):
    (mixed / speaker).mkdir(parents=True)
    audio.write_wav(str(mixed / speaker / "u.wav"), _tone(rate=rate), rate)
  line = _refused(mixed, "mixed sample rates")
  assert f"{mixed / 'a' / 'u.wav'}: 16000 Hz" in line and f"{mixed / 'b' / 'u.wav'}: 8000 Hz" in line
  _refused(mixed, f"{mixed / 'a' / 'u.wav'}: sample rate 16000 Hz, not the 22050 Hz asked", sample_rate=22050)

  (tmp_path / "flat").mkdir()
  audio.write_wav(str(tmp_path / "flat" / "u.wav"), _tone(), RATE)
  _refused(tmp_path / "flat", f"{tmp_path / 'flat' / 'u.wav'}: not inside a speaker directory")
  (tmp_path / "stereo" / "spk").mkdir(parents=True)
  wavfile.write(str(tmp_path / "stereo" / "spk" / "u.wav"), RATE, np.zeros((100, 2), np.int16))
  _refused(tmp_path / "stereo", f"{tmp_path / 'stereo' / 'spk' / 'u.wav'}: 2 channels")


def test_reads_pcm_and_float_in_librispeech_layout(tmp_path):
  tone = _tone()
  (tmp_path / "19" / "198").mkdir(parents=True)
  (tmp_path / "26" / "495").mkdir(parents=True)
  audio.write_wav(str(tmp_path / "19" / "198" / "19-198-0000.wav"), tone, RATE)
  wavfile.write(str(tmp_path / "26" / "495" / "26-495-0000.wav"), RATE, tone.astype(np.float32))
  wavfile.write(str(tmp_path / "26" / "495" / "26-495-0001.wav"), RATE, (tone * 2**31 * 0.999).astype(np.int32))
  speech = audio.load_wav_dir(str(tmp_path), sample_rate=RATE)
  assert speech.speaker_names == ("19", "26") and speech.speakers.tolist() == [0, 1, 1]
  assert speech.utterance_ids == ("19/198/19-198-0000", "26/495/26-495-0000", "26/495/26-495-0001")
  for waveform in speech.waveforms:
    np.testing.assert_allclose(waveform, tone, atol=2e-3)


# ----------------------------------------------------------------------------------------- split and segments


def _toy(lengths, speakers):
  waveforms = tuple(np.arange(1, n + 1, dtype=np.float32) for n in lengths)
  names = tuple(f"s{i}" for i in range(max(speakers) + 1))
  ids = tuple(f"u{i}" for i in range(len(lengths)))
  return audio.AudioSet(waveforms, np.array(speakers, np.int32), names, ids, RATE)


def test_split_utterances_holds_out_whole_utterances_of_every_speaker():
  speakers = [0] * 5 + [1] * 4 + [2] * 6
  data = _toy([10] * len(speakers), speakers)
  train, test = audio.split_utterances(data, heldout_per_speaker=2, seed=0)
  assert not set(train.utterance_ids) & set(test.utterance_ids)
  assert sorted(train.utterance_ids + test.utterance_ids) == sorted(data.utterance_ids)
  assert np.bincount(test.speakers).tolist() == [2, 2, 2] and np.bincount(train.speakers).tolist() == [3, 2, 4]
  assert train.speaker_names == test.speaker_names == data.speaker_names
  again = audio.split_utterances(data, heldout_per_speaker=2, seed=0)[1]
  other = audio.split_utterances(data, heldout_per_speaker=2, seed=1)[1]
  assert again.utterance_ids == test.utterance_ids and other.utterance_ids != test.utterance_ids
  with pytest.raises(DataError, match="speaker s1 has 4 utterances"):
    audio.split_utterances(data, heldout_per_speaker=4, seed=0)


def test_segments_windows_and_padding():
  data = _toy([10, 25, 4], [0, 1, 2])
  windows, speakers, utterances = audio.segments(data, length=8)
  assert windows.shape == (5, 8) and windows.dtype == np.float32  # 1 + 3 (0, 8, 16) + 1 padded
  assert speakers.tolist() == [0, 1, 1, 1, 2] and utterances.tolist() == [0, 1, 1, 1, 2]
  np.testing.assert_array_equal(windows[3], np.arange(17, 25))
  np.testing.assert_array_equal(windows[4], [1, 2, 3, 4, 0, 0, 0, 0])  # short: zero-padded at its end, once
  windows, speakers, _ = audio.segments(data, length=8, hop=4, max_per_utterance=2)
  assert speakers.tolist() == [0, 1, 1, 2]  # 25 samples: starts 0, 4, ..., 16, of which the first and last
  np.testing.assert_array_equal(windows[1:3, 0], [1, 17])


def test_librispeech_offline_is_one_line(tmp_path, monkeypatch):
  from ssljax.data import images

  # Offline by decree: with a network the loader would start a download of many gigabytes.
  monkeypatch.setattr(images, "_unreachable", lambda host: f"{host[0]}: test is offline")
  with pytest.raises(DataError) as info:
    audio.load_tfds_librispeech("dev_clean", data_dir=str(tmp_path))
  assert "\n" not in str(info.value) and "'librispeech' is not prepared" in str(info.value)
