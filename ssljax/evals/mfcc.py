"""MFCC statistics: the hand-made speech features a CPC speaker probe has to beat.

Per utterance, the mean and the standard deviation over time of each MFCC: the classic i-vector-free speaker
baseline (timbre in the means, its variability in the deviations), read by the same linear probe as CPC's features.
Framing follows speech practice rather than librosa's music defaults (2048-sample frames, 128 mel bands): 25 ms
windows every 10 ms and 40 mel bands, as in the CPC paper's MFCC baseline and Kaldi.

librosa is imported lazily. Its first import in a fresh environment compiles numba kernels (about 20 s on this
repository's 2-core CPU, cached next to the package afterwards).
"""

from __future__ import annotations

import warnings

import numpy as np

WINDOW_S = 0.025
HOP_S = 0.010
N_MELS = 40
LIBROSA_PIN = "librosa==0.11.0"


def mfcc_features(waveforms, *, sample_rate: int, n_mfcc: int = 20) -> np.ndarray:
  """(N, 2 * n_mfcc) float32: per waveform, the mean then the standard deviation over frames of its MFCCs.

  `waveforms` is a sequence of 1-D float arrays (lengths may differ) or an (N, T) array. A waveform shorter than one
  window is zero-padded by librosa's centred framing and still gives a row.
  """
  try:
    import librosa
  except ModuleNotFoundError:
    raise ModuleNotFoundError(f"MFCC features need librosa: pip install {LIBROSA_PIN}") from None
  win_length = int(round(WINDOW_S * sample_rate))
  n_fft = 1 << (win_length - 1).bit_length()  # the power of two that holds the window: the FFT's fast size
  hop_length = int(round(HOP_S * sample_rate))
  rows = np.empty((len(waveforms), 2 * n_mfcc), np.float32)
  for i, waveform in enumerate(waveforms):
    waveform = np.asarray(waveform, np.float32)
    if waveform.ndim != 1 or waveform.size == 0:
      raise ValueError(f"mfcc_features: waveform {i} has shape {waveform.shape}; each must be 1-D and non-empty")
    with warnings.catch_warnings():
      warnings.filterwarnings("ignore", "n_fft=.* is too large", UserWarning)  # padded, as documented above
      coefficients = librosa.feature.mfcc(
        y=waveform,
        sr=sample_rate,
        n_mfcc=n_mfcc,
        n_fft=n_fft,
        win_length=win_length,
        hop_length=hop_length,
        n_mels=N_MELS,
      )
    rows[i, :n_mfcc] = coefficients.mean(axis=1)
    rows[i, n_mfcc:] = coefficients.std(axis=1)
  return rows
