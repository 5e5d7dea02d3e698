"""CPC on raw audio (van den Oord et al. 2018): strided 1-D convolutions turn 16 kHz speech into 100 frames a
second, a GRU summarizes them, InfoNCE predicts the next K frames; speaker identity by a linear probe on the pooled
c_t of held-out utterances, beside MFCCs and the random-init encoder. Images: configs/cpc.py.

Presets (`--config configs/cpc_audio.py:PRESET`):
  cpu          real speech made offline by espeak-ng (`make speech`: 100 speakers, each a voice, variant, pitch and
               speed, 40 utterances each; ssljax/data/espeak.py), 10 held out per speaker for the probe.
               python launch/run.py --config configs/cpc_audio.py:cpu --workdir workdirs/cpc_audio_cpu
               2-core CPU: 12.3 min of training (3000 steps at 135 windows/s), 1.7 min of evals. Measured on the
               1000 held-out utterances: speaker linear probe 0.800 (MFCC 0.803, random-init encoder 0.530), kNN
               0.690 (0.679, 0.371); held-out accuracy of the frames k = 1, 2, 4, 12 ahead 0.836 / 0.677 / 0.233 /
               0.033 (chance 0.008). At 2000 steps the probe read 0.770: still rising with training.
  tiny         a few steps on a handful of espeak-ng speakers, for tests (`data.path` set by the test).
  librispeech  tfds `librispeech` (train_clean100, 251 speakers), the paper's encoder (512 channels) and GRU
               (256), windows of 20480 samples, K = 12, batch 256, Adam 2e-4. One GPU; the paper reports 97.4%
               speaker accuracy (MFCC 17.6%).

A directory of your own WAV files: --config.data.name=wav_dir --config.data.path=DIR (one directory per speaker,
every file at data.sample_rate).
"""

import os

import common
import ml_collections

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = ("cpu", "tiny", "librispeech")


def get_config(arg=None) -> ml_collections.ConfigDict:
  preset = arg or "cpu"
  if preset not in PRESETS:
    raise ValueError(f"unknown preset '{preset}' (known: {', '.join(PRESETS)})")
  c = common.run("cpc", batch_size=32, epochs=4, checkpoint_every=500, log_every=20)
  if preset == "cpu":
    c.total_steps = 3000  # 4.9 epochs of the 19,513 training windows at batch 32: what 15 minutes allow

  c.data = ml_collections.ConfigDict()
  c.data.name = "wav_dir"  # wav_dir | librispeech (tfds)
  c.data.path = os.path.join(ROOT, "data", "speech")  # wav_dir: one directory per speaker
  c.data.train_split = "train_clean100"  # librispeech only
  c.data.tfds_data_dir = ""
  c.data.sample_rate = 16000
  c.data.segment_length = 10240  # samples per training window: 0.64 s, 64 frames
  c.data.heldout_per_speaker = 10  # utterances of each speaker the probe tests on, never trained on
  c.data.max_utterances = 0  # > 0: the first N utterances
  c.data.max_train_examples = 0  # > 0: the first N training windows

  c.model = ml_collections.ConfigDict()
  c.model.width = 64  # channels of every convolution (the paper: 512); 128 trained at 55 windows/s, 64 at 122
  c.model.kernels = (10, 8, 4, 4, 4)
  c.model.strides = (5, 4, 2, 2, 2)  # 160 samples a frame
  c.model.dtype = "float32"

  c.cpc = ml_collections.ConfigDict()
  c.cpc.modality = "audio"
  c.cpc.context_dim = 128  # g_ar's GRU (the paper: 256)
  c.cpc.prediction_steps = 12  # K frames ahead
  c.cpc.self_negatives = True  # the other frames of the same window are negatives too, beside the other windows
  c.cpc.readout = "context"  # the probe reads the mean c_t of a window ('z': the mean frame encoding)
  c.cpc.eval_batches = 4

  c.optim = common.adamw(learning_rate=2e-3, warmup_epochs=0.1, weight_decay=1e-4, b2=0.999)

  c.evals = ml_collections.ConfigDict()
  c.evals.batch_size = 64
  # The probe pools c_t over this many windows spread over each utterance (the cpu preset's encoder at 2000
  # steps: 4 windows 0.717, 8 windows 0.768, the mean frame encoding z instead of c_t 0.723, 0.741; at 3000 steps:
  # 8 windows 0.789, 16 windows 0.800, MFCC 0.803 at both).
  c.evals.windows_per_utterance = 16
  c.evals.knn_k = 20
  c.evals.knn_temperature = 0.1
  c.evals.label_fractions = (1.0,)
  c.evals.probe_l2_grid = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
  c.evals.baselines = ("mfcc", "random_init")
  c.evals.plots = True

  if preset == "tiny":
    c.batch_size = 16
    c.total_steps = 6
    c.checkpoint_every = 2
    c.log_every = 1
    c.data.segment_length = 2560  # 16 frames
    c.data.heldout_per_speaker = 1
    c.model.width = 32  # 16 channels did not learn in 60 steps; 32 reach 0.2 accuracy at k = 1 (chance 0.03)
    c.cpc.context_dim = 32
    c.cpc.prediction_steps = 4
    c.cpc.eval_batches = 1
    c.evals.batch_size = 8
    c.evals.windows_per_utterance = 1
    c.evals.knn_k = 3
    c.evals.plots = False
    c.optim.warmup_epochs = 0.0
  elif preset == "librispeech":
    c.data.name = "librispeech"
    c.data.path = ""
    c.data.segment_length = 20480
    c.model.width = 512
    c.cpc.context_dim = 256
    c.batch_size = 256
    c.epochs = 100
    c.optim.learning_rate = 2e-4
    c.evals.batch_size = 256
    c.evals.windows_per_utterance = 4
  return c
