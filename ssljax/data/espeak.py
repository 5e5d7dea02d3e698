"""Real speech offline: English sentences read by espeak-ng speakers, for CPC and its speaker probe.

A speaker is an English voice (an accent: en-us, en-gb-scotland, en-029, ...) with a voice variant (m1..m8,
f1..f5, klatt, ...: the timbre), a base pitch (`-p`) and a base speed (`-s`, words per minute), all drawn from the
seed. Each utterance jitters the pitch and speed a little around the speaker's, so a speaker is a distribution of
recordings rather than one fixed waveform generator, and it reads its own sentences (5 to 25 words) from the
public-domain texts in tests/data/lm. espeak-ng writes 22050 Hz; we resample to `sample_rate`, trim the silence at
both ends and write 16-bit PCM mono:

  out/speakers.tsv                     speaker, voice, variant, pitch, speed
  out/utterances.tsv                   utterance, speaker, pitch, speed, text
  out/<speaker>/<speaker>-<nnn>.wav    one utterance

which `ssljax.data.audio.load_wav_dir` reads. Command line (these defaults: 5.0 h of audio, 557 MB, in 1.5 minutes
on this repository's 2-core CPU):

  python -m ssljax.data.espeak --out data/speech --speakers 100 --utterances 40

espeak-ng is the Debian package of the same name (`make data` installs it). The output is a function of the
arguments and the espeak-ng version alone: every draw happens before synthesis, in one seeded generator.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import glob
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import wave

import numpy as np

from ssljax.data import DataError
from ssljax.data.audio import write_wav

ESPEAK = "espeak-ng"
INSTALL = "install the Debian package espeak-ng (`sudo apt-get install espeak-ng`, or `make data`)"
TEXTS = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "lm")
DEFAULT_SPEAKERS = 100
DEFAULT_UTTERANCES = 40
WORDS = (5, 25)  # words per sentence: 2 to 10 seconds of speech
PITCH = (20, 80)  # espeak -p (0..99; 50 is the variant's own pitch): speakers' base pitch, drawn uniformly
SPEED = (140, 210)  # espeak -s, words per minute (default 175): speakers' base speed
PITCH_JITTER = 4  # per utterance, uniform in +-: a person's pitch moves between sentences too
SPEED_JITTER = 10
# Variants that are not voices: `fast_test` tunes espeak's fastest speed and its own file calls it unstable.
NOT_VOICES = ("fast",)
SILENCE_DB = -40  # relative to the utterance's peak: what trimming calls silence
MARGIN_S = 0.02  # kept on both sides of the first and last loud sample, so onsets and releases stay whole
ESPEAK_TIMEOUT_S = 60


@dataclasses.dataclass(frozen=True)
class Speaker:
  id: str
  voice: str  # an English espeak-ng voice: the accent
  variant: str  # an espeak-ng variant file: the timbre
  pitch: int  # base -p
  speed: int  # base -s


@dataclasses.dataclass(frozen=True)
class Summary:
  path: str
  speakers: int
  utterances: int
  audio_seconds: float
  wall_seconds: float

  def line(self) -> str:
    return (
      f"{self.path}: {self.speakers} speakers, {self.utterances} utterances, {self.audio_seconds / 3600:.2f} h of "
      f"audio, {self.wall_seconds:.1f} s"
    )


# ------------------------------------------------------------------------------------------------------- espeak-ng


def _espeak() -> str:
  path = shutil.which(ESPEAK)
  if path is None:
    raise DataError(f"{ESPEAK} is not on PATH; {INSTALL}")
  return path


def _listing(*args: str) -> str:
  try:
    return subprocess.run([_espeak(), *args], capture_output=True, text=True, check=True, timeout=30).stdout
  except (OSError, subprocess.SubprocessError) as e:
    raise DataError(f"`{ESPEAK} {' '.join(args)}` failed ({type(e).__name__}: {e}); {INSTALL}") from None


def english_voices() -> tuple[str, ...]:
  """The English voices of `espeak-ng --voices=en` that espeak-ng synthesizes itself, in its listed order.

  MBROLA voices (`mb/...`) need the separately packaged mbrola binary and its diphone databases; `variant` rows are
  timbres, listed among the voices when they name English.
  """
  voices = []
  for row in _listing("--voices=en").splitlines()[1:]:
    fields = row.split()
    if len(fields) >= 5 and fields[1] != "variant" and not fields[4].startswith("mb/") and fields[1] not in voices:
      voices.append(fields[1])
  return tuple(voices)


def variants() -> tuple[str, ...]:
  """The variant names espeak-ng accepts after `+`, sorted: the files of `espeak-ng --voices=variant`.

  Only those whose file exists under the data directory: espeak-ng ignores an unknown `+variant` silently
  (`Mr serious` is listed as `!v/Mr`), which would give two speakers one timbre under different names.
  """
  match = re.search(r"Data at:\s*(\S+)", _listing("--version"))
  variant_dir = os.path.join(match.group(1), "voices", "!v") if match else None
  names = set()
  for row in _listing("--voices=variant").splitlines()[1:]:
    fields = row.split()
    if len(fields) >= 5 and fields[4].startswith("!v/"):
      name = fields[4][3:]
      if name not in NOT_VOICES and (variant_dir is None or os.path.isfile(os.path.join(variant_dir, name))):
        names.add(name)
  return tuple(sorted(names))


def _synthesize(espeak: str, speaker: Speaker, pitch: int, speed: int, text: str, wav: str) -> tuple[np.ndarray, int]:
  """(int16 samples, rate) as espeak-ng writes them. The text goes through stdin: a sentence that starts with `-`
  is then not an option."""
  cmd = [espeak, "-v", f"{speaker.voice}+{speaker.variant}", "-p", str(pitch), "-s", str(speed), "-w", wav, "--stdin"]
  try:
    done = subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=ESPEAK_TIMEOUT_S)
  except (OSError, subprocess.SubprocessError) as e:
    raise DataError(f"`{' '.join(cmd)}` failed ({type(e).__name__}: {e}); {INSTALL}") from None
  if done.returncode != 0 or not os.path.isfile(wav):
    why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[0]
    raise DataError(f"`{' '.join(cmd)}` failed ({why}); check `{ESPEAK} --voices=en` lists {speaker.voice}")
  with wave.open(wav, "rb") as f:
    rate, data = f.getframerate(), f.readframes(f.getnframes())
  os.remove(wav)
  return np.frombuffer(data, "<i2"), rate


def _trim(waveform: np.ndarray, rate: int) -> np.ndarray:
  loud = np.flatnonzero(np.abs(waveform) > np.abs(waveform).max() * 10 ** (SILENCE_DB / 20))
  margin = int(MARGIN_S * rate)
  return waveform[max(loud[0] - margin, 0) : loud[-1] + margin + 1]


def _utterance(espeak, speaker, pitch, speed, text, path, sample_rate) -> float:
  """Synthesizes, resamples, trims and writes one utterance; its duration in seconds."""
  from scipy.signal import resample_poly

  samples, rate = _synthesize(espeak, speaker, pitch, speed, text, path + ".espeak.wav")
  if not samples.any():
    raise DataError(f"{ESPEAK} -v {speaker.voice}+{speaker.variant} wrote silence for {text!r}; drop the sentence")
  g = math.gcd(sample_rate, rate)
  waveform = _trim(resample_poly(samples.astype(np.float32) / 32768, sample_rate // g, rate // g), sample_rate)
  write_wav(path, waveform, sample_rate)
  return len(waveform) / sample_rate


# ------------------------------------------------------------------------------------------------------ sentences

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]*[A-Z])")
_TITLE = re.compile(r"\b(Mr|Mrs|Messrs|Dr|St|Capt|Col|Rev)\.")  # not sentence ends; espeak-ng reads "Mr" as "mister"
_NOT_SPOKEN = re.compile(r"[^A-Za-z0-9 ,.;:!?'-]+")  # `[[` would switch espeak-ng to phoneme input


def text_sentences(paths) -> tuple[str, ...]:
  """Sentences of `WORDS` words from plain-text files (paragraphs separated by blank lines), deduplicated, in file
  order; quotes, brackets and dashes become pauses or go."""
  sentences = {}
  for path in paths:
    with open(path, encoding="utf-8", errors="replace") as f:
      paragraphs = re.split(r"\n\s*\n", f.read())
    for paragraph in paragraphs:
      for sentence in _SENTENCE_END.split(_TITLE.sub(r"\1", " ".join(paragraph.split()))):
        sentence = _NOT_SPOKEN.sub(" ", sentence.replace("--", ", ").replace("_", ""))
        sentence = " ".join(sentence.split()).strip(" ,;:'-")
        if WORDS[0] <= len(sentence.split()) <= WORDS[1] and re.match(r"[A-Z]", sentence):
          sentences[sentence] = None
  return tuple(sentences)


def default_sentences() -> tuple[str, ...]:
  paths = sorted(glob.glob(os.path.join(TEXTS, "*.txt")))
  if not paths:
    raise DataError(f"{os.path.normpath(TEXTS)}: no .txt files (ssljax outside its repository?); pass sentences=")
  return text_sentences(paths)


# ------------------------------------------------------------------------------------------------------ generation


def pick_speakers(
  num_speakers: int, rng: np.random.Generator, voices: tuple[str, ...], variant_names: tuple[str, ...]
) -> list[Speaker]:
  """Distinct (voice, variant) pairs in a seeded order; past the number of pairs they repeat, told apart by pitch
  and speed alone."""
  pairs = [(voice, variant) for voice in voices for variant in variant_names]
  if not pairs:
    raise DataError(f"no English voice or no variant in this espeak-ng (`{ESPEAK} --voices=en`); {INSTALL}")
  order = np.concatenate([rng.permutation(len(pairs)) for _ in range(-(-num_speakers // len(pairs)))])
  width = max(3, len(str(num_speakers - 1)))
  return [
    Speaker(
      f"spk{i:0{width}d}",
      *pairs[order[i]],
      int(rng.integers(PITCH[0], PITCH[1] + 1)),
      int(rng.integers(SPEED[0], SPEED[1] + 1)),
    )
    for i in range(num_speakers)
  ]


def generate(
  out_dir: str,
  *,
  num_speakers: int = DEFAULT_SPEAKERS,
  utterances_per_speaker: int = DEFAULT_UTTERANCES,
  seed: int = 0,
  sample_rate: int = 16000,
  sentences=None,
  voices=None,
  variant_names=None,
  workers: int = 2,
  overwrite: bool = False,
) -> Summary:
  """Writes `num_speakers` x `utterances_per_speaker` utterances to `out_dir` (layout in the module docstring).

  `voices` / `variant_names` narrow the choice (default: every English voice and every variant espeak-ng has).
  Atomic: everything is written into a temporary directory beside `out_dir` and renamed into place at the end, so
  an interrupted run leaves no half corpus that `load_wav_dir` would read as a whole one. `workers` espeak-ng
  processes run at a time.
  """
  start = time.perf_counter()
  espeak = _espeak()
  out_dir = os.path.abspath(out_dir)
  if os.path.exists(out_dir) and not overwrite:
    raise DataError(f"{out_dir} exists; remove it, choose another --out, or pass --overwrite")
  if num_speakers < 1 or utterances_per_speaker < 1:
    raise DataError(f"num_speakers={num_speakers}, utterances_per_speaker={utterances_per_speaker}: need 1 or more")
  all_voices, all_variants = english_voices(), variants()
  for asked, known, what in ((voices, all_voices, "voice"), (variant_names, all_variants, "variant")):
    unknown = sorted(set(asked or ()) - set(known))
    if unknown:
      raise DataError(f"unknown espeak-ng {what} {unknown[0]!r}; known: {', '.join(known)}")
  sentences = tuple(sentences) if sentences is not None else default_sentences()
  if len(sentences) < utterances_per_speaker:
    raise DataError(
      f"{len(sentences)} sentences for {utterances_per_speaker} utterances per speaker: each utterance of a speaker "
      "reads a different sentence; give more sentences or ask for fewer utterances"
    )
  rng = np.random.default_rng(seed)
  speakers = pick_speakers(num_speakers, rng, tuple(voices or all_voices), tuple(variant_names or all_variants))
  jobs = []  # every draw before any synthesis: the corpus does not depend on the order the pool finishes in
  for speaker in speakers:
    for j, k in enumerate(rng.choice(len(sentences), utterances_per_speaker, replace=False)):
      pitch = int(np.clip(speaker.pitch + rng.integers(-PITCH_JITTER, PITCH_JITTER + 1), 0, 99))
      speed = int(speaker.speed + rng.integers(-SPEED_JITTER, SPEED_JITTER + 1))
      jobs.append(
        (speaker, f"{speaker.id}-{j:0{max(3, len(str(utterances_per_speaker - 1)))}d}", pitch, speed, sentences[k])
      )

  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", dir=parent)
  try:
    for speaker in speakers:
      os.mkdir(os.path.join(tmp, speaker.id))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:  # threads wait on processes
      durations = list(
        pool.map(
          lambda job: _utterance(
            espeak, job[0], job[2], job[3], job[4], os.path.join(tmp, job[0].id, job[1] + ".wav"), sample_rate
          ),
          jobs,
        )
      )
    with open(os.path.join(tmp, "speakers.tsv"), "w") as f:
      f.write("speaker\tvoice\tvariant\tpitch\tspeed\n")
      f.writelines(f"{s.id}\t{s.voice}\t{s.variant}\t{s.pitch}\t{s.speed}\n" for s in speakers)
    with open(os.path.join(tmp, "utterances.tsv"), "w") as f:
      f.write("utterance\tspeaker\tpitch\tspeed\ttext\n")
      f.writelines(f"{u}\t{s.id}\t{p}\t{v}\t{t}\n" for s, u, p, v, t in jobs)
    if os.path.exists(out_dir):  # overwrite: the old corpus leaves only once the new one is complete
      old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old.", dir=parent)
      os.rename(out_dir, os.path.join(old, "x"))
      os.rename(tmp, out_dir)
      shutil.rmtree(old)
    else:
      os.rename(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return Summary(out_dir, len(speakers), len(jobs), sum(durations), time.perf_counter() - start)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", required=True, help="directory to create (e.g. data/speech)")
  parser.add_argument("--speakers", type=int, default=DEFAULT_SPEAKERS)
  parser.add_argument("--utterances", type=int, default=DEFAULT_UTTERANCES, help="per speaker")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--sample-rate", type=int, default=16000)
  parser.add_argument("--workers", type=int, default=2, help="espeak-ng processes at a time")
  parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
  args = parser.parse_args(argv)
  try:
    summary = generate(
      args.out,
      num_speakers=args.speakers,
      utterances_per_speaker=args.utterances,
      seed=args.seed,
      sample_rate=args.sample_rate,
      workers=args.workers,
      overwrite=args.overwrite,
    )
  except DataError as e:
    print(f"error: {e}", file=sys.stderr)
    raise SystemExit(2) from None
  print(summary.line())


if __name__ == "__main__":
  main()
