"""Speech as in-memory float32 waveforms with speaker labels, for CPC and its speaker probe.

An `AudioSet` is every utterance of a directory of WAV files (`load_wav_dir`: LibriSpeech's
`speaker/chapter/utterance` layout, or the `speaker/utterance` layout `ssljax.data.espeak` writes) or of a tfds
LibriSpeech split. `split_utterances` holds out whole utterances of every speaker, so a speaker probe is trained and
tested on the same voices reading different sentences: what identifies the speaker, not the sentence. `segments`
cuts fixed-length windows, the unit CPC trains on and the probe reads.

A few hours of 16 kHz speech is about 1 GB as float32; that is the scale this module is for. Larger corpora want a
streamed reader.
"""

from __future__ import annotations

import dataclasses
import os
import wave

import numpy as np

from ssljax.data import DataError

HOW_TO_GET = (
  "`python -m ssljax.data.espeak --out data/speech` makes one offline, or use LibriSpeech "
  "(speaker/chapter/utterance .wav files, or tfds `librispeech` with a network)"
)


@dataclasses.dataclass(frozen=True)
class AudioSet:
  waveforms: tuple[np.ndarray, ...]  # per utterance, (T,) float32: PCM scaled to [-1, 1), float files as stored
  speakers: np.ndarray  # (N,) int32 ids into speaker_names
  speaker_names: tuple[str, ...]
  utterance_ids: tuple[str, ...]  # unique: the path below the root without `.wav`, or tfds's `id`
  sample_rate: int

  def __len__(self) -> int:
    return len(self.waveforms)

  @property
  def num_speakers(self) -> int:
    return len(self.speaker_names)

  @property
  def seconds(self) -> float:
    return sum(len(w) for w in self.waveforms) / self.sample_rate

  def subset(self, indices) -> AudioSet:
    """The utterances at `indices`, in that order; speaker ids and names unchanged, so subsets stay comparable."""
    indices = np.asarray(indices, np.int64)
    return dataclasses.replace(
      self,
      waveforms=tuple(self.waveforms[i] for i in indices),
      speakers=self.speakers[indices],
      utterance_ids=tuple(self.utterance_ids[i] for i in indices),
    )


# ------------------------------------------------------------------------------------------------------ WAV files


def write_wav(path: str, waveform: np.ndarray, sample_rate: int) -> None:
  """16-bit PCM mono. Floats are taken as [-1, 1] and clipped: a clipped sample beats a wrapped-around one."""
  waveform = np.asarray(waveform)
  if waveform.dtype != np.int16:
    waveform = np.round(np.clip(waveform, -1.0, 32767 / 32768) * 32768).astype(np.int16)
  with wave.open(path, "wb") as f:
    f.setnchannels(1)
    f.setsampwidth(2)
    f.setframerate(int(sample_rate))
    f.writeframes(waveform.astype("<i2").tobytes())


def _pcm_to_float(data: bytes, width: int) -> np.ndarray:
  if width == 1:  # 8-bit WAV is unsigned
    return (np.frombuffer(data, np.uint8).astype(np.float32) - 128) / 128
  if width == 3:  # no numpy dtype: widen each little-endian triple to int32 (the low byte zero)
    triples = np.frombuffer(data, np.uint8).reshape(-1, 3)
    widened = np.zeros((len(triples), 4), np.uint8)
    widened[:, 1:] = triples
    return widened.view("<i4")[:, 0].astype(np.float32) / 2**31
  dtype = {2: "<i2", 4: "<i4"}[width]
  return (np.frombuffer(data, dtype).astype(np.float64) / 2 ** (8 * width - 1)).astype(np.float32)


def read_wav(path: str) -> tuple[np.ndarray, int]:
  """(waveform (T,) float32, sample rate) of a mono WAV: PCM of 8 to 32 bits via `wave`, IEEE float via scipy
  (the standard library reads PCM only). A one-line DataError for anything else."""
  try:
    with wave.open(path, "rb") as f:
      channels, width, rate = f.getnchannels(), f.getsampwidth(), f.getframerate()
      data = f.readframes(f.getnframes())
    if width not in (1, 2, 3, 4):
      raise DataError(f"{path}: {8 * width}-bit PCM is not supported; convert it to 16-bit PCM")
    waveform = _pcm_to_float(data[: len(data) - len(data) % (width * channels)], width)
  except wave.Error as e:
    if "unknown format" not in str(e):  # not RIFF/WAVE at all, or a broken header
      raise DataError(f"{path}: not a readable WAV file ({e}); convert it to 16-bit PCM mono WAV") from None
    waveform, rate, channels = _read_float_wav(path)
  except (EOFError, OSError) as e:
    raise DataError(f"{path}: not a readable WAV file ({type(e).__name__}: {e}); fetch or convert it again") from None
  if channels != 1:
    raise DataError(f"{path}: {channels} channels; speaker data is mono (mix it down, e.g. `sox in.wav -c 1 out.wav`)")
  if waveform.size == 0:
    raise DataError(f"{path}: no samples; remove it or synthesize it again")
  return waveform, rate


def _read_float_wav(path: str) -> tuple[np.ndarray, int, int]:
  import warnings

  from scipy.io import wavfile

  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", wavfile.WavFileWarning)  # unknown chunks (LIST, ...) are harmless
      rate, data = wavfile.read(path)
  except (ValueError, OSError, EOFError) as e:
    raise DataError(f"{path}: not a readable WAV file ({e}); convert it to 16-bit PCM mono WAV") from None
  channels = 1 if data.ndim == 1 else data.shape[1]
  if data.dtype.kind == "u":  # WAVE_FORMAT_EXTENSIBLE around PCM, which `wave` (Python 3.11) rejects
    data = (data.astype(np.float64) - 128) / 128
  elif data.dtype.kind == "i":
    data = data.astype(np.float64) / 2 ** (8 * data.dtype.itemsize - 1)
  return data.reshape(len(data), -1)[:, 0].astype(np.float32), int(rate), channels


def load_wav_dir(path: str, *, sample_rate: int | None = None) -> AudioSet:
  """Every `*.wav` below `path`, in sorted path order; the speaker is the first directory under `path`.

  That covers LibriSpeech (`speaker/chapter/utterance.wav`) and `ssljax.data.espeak` (`speaker/utterance.wav`).
  `sample_rate`, when given, is the rate every file must have: nothing is resampled here, since a silently
  resampled corpus would train a different model than the one asked for.
  """
  if not os.path.isdir(path):
    raise DataError(f"{path}: no such directory; {HOW_TO_GET}")
  files = []
  for root, dirs, names in os.walk(path):
    dirs.sort()
    files.extend(os.path.join(root, n) for n in names if n.lower().endswith(".wav"))
  files.sort()
  if not files:
    raise DataError(f"{path}: no .wav files in it (searched recursively); {HOW_TO_GET}")
  waveforms, speaker_of, ids = [], [], []
  first_rate = None
  for file in files:
    rel = os.path.relpath(file, path)
    parts = rel.split(os.sep)
    if len(parts) < 2:
      raise DataError(f"{file}: not inside a speaker directory; move it to {path}/<speaker>/")
    waveform, rate = read_wav(file)
    if sample_rate is not None and rate != sample_rate:
      raise DataError(
        f"{file}: sample rate {rate} Hz, not the {sample_rate} Hz asked; resample the corpus "
        f"(e.g. `sox in.wav -r {sample_rate} out.wav`) or ask for {rate}"
      )
    if first_rate is None:
      first_rate = (file, rate)
    elif rate != first_rate[1]:
      raise DataError(
        f"{path}: mixed sample rates ({first_rate[0]}: {first_rate[1]} Hz, {file}: {rate} Hz); resample them to one"
      )
    waveforms.append(waveform)
    speaker_of.append(parts[0])
    ids.append(os.path.splitext(rel)[0].replace(os.sep, "/"))
  names = tuple(sorted(set(speaker_of)))
  index = {name: i for i, name in enumerate(names)}
  return AudioSet(
    tuple(waveforms), np.array([index[s] for s in speaker_of], np.int32), names, tuple(ids), first_rate[1]
  )


# ----------------------------------------------------------------------------------------------- tfds LibriSpeech

LIBRISPEECH = "librispeech"


def load_tfds_librispeech(split: str, *, data_dir: str | None = None, limit: int = 0) -> AudioSet:
  """The first `limit` utterances (all when 0) of a tfds LibriSpeech split (`train_clean100`, `dev_clean`, ...).

  Offline, and not prepared in `data_dir`/TFDS_DATA_DIR, this fails within seconds with a DataError (the images'
  tfds helpers), not after tfds' retries.
  """
  from ssljax.data.images import _read_config, _tfds_builder, _tfds_error

  builder = _tfds_builder(LIBRISPEECH, split, data_dir)
  total = builder.info.splits[split].num_examples
  n = min(limit, total) if limit else total
  sample_rate = int(getattr(builder.info.features["speech"], "sample_rate", 16000))
  try:
    ds = builder.as_dataset(split=split, shuffle_files=False, read_config=_read_config()).take(n)
    waveforms, speaker_ids, ids = [], [], []
    for example in ds.as_numpy_iterator():
      # int64 holding 16-bit samples: scaled as `read_wav` scales 16-bit PCM, so both sources agree.
      waveforms.append((example["speech"].astype(np.float32) / 32768).reshape(-1))
      speaker_ids.append(int(example["speaker_id"]))
      ids.append(example["id"].decode() if "id" in example else f"{speaker_ids[-1]}-{len(ids)}")
  except DataError:
    raise
  except Exception as e:  # a missing shard, a feature of another name: tfds raises many types
    raise _tfds_error(LIBRISPEECH, split, e) from None
  names = tuple(str(s) for s in sorted(set(speaker_ids)))
  index = {name: i for i, name in enumerate(names)}
  return AudioSet(
    tuple(waveforms), np.array([index[str(s)] for s in speaker_ids], np.int32), names, tuple(ids), sample_rate
  )


# --------------------------------------------------------------------------------------------- splits and windows


def split_utterances(audio_set: AudioSet, *, heldout_per_speaker: int, seed: int) -> tuple[AudioSet, AudioSet]:
  """(train, test): `heldout_per_speaker` utterances of every speaker, drawn with `seed`, go to test.

  Whole utterances, never windows of one utterance on both sides: a probe could otherwise recognize the sentence
  and its recording instead of the voice. Both sides keep their original order.
  """
  if heldout_per_speaker < 1:
    raise DataError(f"heldout_per_speaker={heldout_per_speaker}: hold out at least one utterance per speaker")
  rng = np.random.default_rng(seed)
  test = []
  for speaker in range(audio_set.num_speakers):  # speakers in id order: the draw is a function of the seed alone
    own = np.flatnonzero(audio_set.speakers == speaker)
    if len(own) == 0:
      continue  # a subset may lack a speaker another subset has; nothing to hold out
    if len(own) <= heldout_per_speaker:
      raise DataError(
        f"speaker {audio_set.speaker_names[speaker]} has {len(own)} utterances: holding out {heldout_per_speaker} "
        "leaves none to train on; lower heldout_per_speaker or drop the speaker"
      )
    test.extend(rng.choice(own, heldout_per_speaker, replace=False).tolist())
  is_test = np.zeros(len(audio_set), bool)
  is_test[test] = True
  return audio_set.subset(np.flatnonzero(~is_test)), audio_set.subset(np.flatnonzero(is_test))


def segments(
  audio_set: AudioSet, *, length: int, hop: int | None = None, max_per_utterance: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(windows (M, length) float32, their speakers (M,) int32, their utterances (M,) int32 indices into
  `audio_set`): windows at 0, hop, 2 hop, ... of every utterance.

  `hop` defaults to `length` (no overlap); the tail after the last whole window is dropped. An utterance shorter
  than `length` gives one window, zero-padded at its end, rather than none: a probe then scores every utterance, and
  CPC sees a few windows that end in silence, which speech has anyway. `max_per_utterance` > 0 keeps at most that
  many windows, spread evenly over the utterance (the first and the last among them), so a few windows still cover
  the whole sentence.
  """
  hop = length if hop is None else hop
  if length < 1 or hop < 1:
    raise DataError(f"segments: length={length} and hop={hop} must be at least 1 sample")
  starts_of = []
  for waveform in audio_set.waveforms:
    starts = np.arange(0, max(len(waveform) - length, 0) + 1, hop)
    if 0 < max_per_utterance < len(starts):
      starts = starts[np.round(np.linspace(0, len(starts) - 1, max_per_utterance)).astype(np.int64)]
    starts_of.append(starts)
  windows = np.zeros((sum(len(s) for s in starts_of), length), np.float32)
  speakers = np.empty(len(windows), np.int32)
  utterances = np.empty(len(windows), np.int32)
  row = 0
  for utterance, (waveform, speaker, starts) in enumerate(zip(audio_set.waveforms, audio_set.speakers, starts_of)):
    for start in starts:
      piece = waveform[start : start + length]
      windows[row, : len(piece)] = piece
      speakers[row], utterances[row] = speaker, utterance
      row += 1
  return windows, speakers, utterances
