"""Colorization (Zhang et al. 2016) and split-brain autoencoders (Zhang et al. 2017): predict ab from L in Lab space
(and, split-brain, L from ab); the representation is the encoder's (both halves', concatenated).

Presets (`--config configs/colorization.py:PRESET`; shared defaults in configs/vision_base.py):
  cpu      SmallCNN on 28x28 random crops of the nine colour photographs inside the scikit-image wheel (offline),
           evaluated on Fashion-MNIST (grayscale: the encoder reads L) through `evals.data`.
           python launch/run.py --config configs/colorization.py:cpu --workdir workdirs/colorization_cpu
           python launch/run.py --config configs/colorization.py:cpu --workdir workdirs/split_brain_cpu \\
               --config.colorization.mode=split_brain
           Current figures: README.md's Methods table. Those below predate the CPU flags and fine-tuning's
           epoch budget; they stay for the comparisons they make.
           400 steps with two 64-wide colour layers above the encoder (`colorization.head_widths`): 8.4 min on 2
           idle cores (3 of pre-training at 0.39 s a step, 5.4 of evals). Against the random-init encoder on
           Fashion-MNIST: linear probe 0.851 / 0.841 (10% 0.830 / 0.813, 1% 0.757 / 0.752), kNN 0.788 / 0.785,
           fine-tuned 0.748 / 0.733 (10% 0.665 / 0.661, 1% 0.646 / 0.643); held-out ab RMSE 25.9 against 27.0
           for gray. Above random init on every readout, clearly so on the linear probe only.
           Without the colour layers (900 steps, 10.4 min) the encoder was level with random init: linear 0.845
           (10% 0.815, 1% 0.745), kNN 0.774, fine-tuned 0.729 (10% 0.625, 1% 0.616). With them at 900 steps
           (11.7 min) the probes rose (kNN 0.793, linear 0.851 / 0.833 / 0.752) but fine-tuning at 10% and 1% fell
           below random init (0.645, 0.631), most likely as longer training on nine photos specializes the encoder.
           Split-brain (the second command, 8.3 min): fine-tuned 0.619 / 0.597 (10% 0.545 / 0.504, 1% 0.537 /
           0.487), but linear 0.813 / 0.824 (10% 0.793 / 0.802, 1% 0.720 / 0.718), kNN 0.762 / 0.760: on gray
           images its ab half sees no colour, so half its features are constant (random init likewise).
           Nine photographs are a narrow world to learn Fashion-MNIST's shapes from; the cifar10 preset trains
           and evaluates on one domain.
  tiny     a few steps on a few hundred photo crops, evaluated on a slice of Fashion-MNIST, for tests.
  cifar10  ResNet-18 on tfds cifar10 (colour), trained and evaluated there.
  imagenet ResNet-50 on tfds imagenet2012, trained and evaluated there, bfloat16.

Mode: --config.colorization.mode=colorize|split_brain. Loss: --config.colorization.loss=classification|regression.
"""

import ml_collections
import vision_base


def get_config(arg=None):
  preset = arg or "cpu"
  c = vision_base.base("colorization", preset)
  c.colorization = ml_collections.ConfigDict()
  c.colorization.mode = "colorize"  # colorize (L -> ab) | split_brain (L -> ab and ab -> L, features concatenated)
  c.colorization.loss = "classification"  # classification over ab bins (and L bins) | regression (L2)
  c.colorization.ab_bin_size = 10.0  # side of the ab bins (ssljax.color.ab_grid: 262 in-gamut bins at 10)
  c.colorization.neighbours = 5  # soft encoding: nearest bins sharing a target's mass (the paper: 5)
  c.colorization.sigma = 5.0  # soft encoding: Gaussian width in ab units (the paper: 5)
  c.colorization.l_bins = 20  # split-brain, classification: equal bins of L in [0, 100]
  c.colorization.split_width = 0.5  # split-brain: each half's share of model.encoder's channels
  c.colorization.standardize_l = False  # L input at zero mean, unit deviation per image (contrast-normalized)
  c.colorization.input_jitter = 0.0  # random gamma/contrast of the L input (saturation of ab): exp(U(-s, s))
  c.colorization.head_widths = ()  # decoder: 3x3 conv-BN-ReLU layers at the feature map's resolution, first
  c.colorization.decoder_widths = (32,)  # one 2x upsampling + conv-BN-ReLU each; prediction at feature map x 2^k
  c.colorization.conv_impl = "xla"  # decoder convolutions: xla | patches (ssljax.models.cnn.PatchConv)
  c.colorization.annealed_temperature = 0.38  # pictures: the paper's annealed mean
  c.colorization.eval_examples = 1024  # held-out colour images for colorization/*_rmse; 0: none (no pictures)
  c.colorization.plot_examples = 8  # of those, shown in workdir/colorizations.png

  # Where the suite's probes and fine-tuning read labelled images; empty name: the training data's own splits.
  c.evals.data = ml_collections.ConfigDict()
  c.evals.data.name = ""
  c.evals.data.path = ""
  c.evals.data.train_split = "train"
  c.evals.data.eval_split = "test"
  c.evals.data.image_size = c.data.image_size
  c.evals.data.max_train_examples = 0
  c.evals.data.max_eval_examples = 0

  if preset in ("cpu", "tiny"):
    # Train on colour photo crops; evaluate on the Fashion-MNIST that vision_base's cpu preset trains on.
    c.evals.data.update(c.data.to_dict())
    c.data.name = "skimage_photos"
    c.data.path = ""
    c.data.max_train_examples = 16384  # crops
    c.data.max_eval_examples = 1024
    # Measured on this pair of domains (see the module docstring): regression beat classification, and the encoder
    # transfers to Fashion-MNIST only when it cannot map absolute lightness to colour.
    c.colorization.loss = "regression"
    c.colorization.standardize_l = True
    c.colorization.input_jitter = 0.5
    if preset == "cpu":
      c.epochs = 0
      # Two colour layers above the encoder (Zhang et al.'s conv6-8) take the photo-specific colour lookup off the
      # encoder's last stage, which the probes read: without them the encoder was level with its random init.
      c.colorization.head_widths = (64, 64)
      c.total_steps = 400
    else:
      c.data.max_train_examples = 256
      c.data.max_eval_examples = 64
      c.colorization.decoder_widths = (8,)
      c.colorization.eval_examples = 64
      c.colorization.plot_examples = 4
      c.evals.data.max_train_examples = 512
      c.evals.data.max_eval_examples = 256
  elif preset == "cifar10":
    c.colorization.decoder_widths = (128,)  # ResNet-18's 4x4 map -> 8x8 ab
  elif preset == "imagenet":
    c.batch_size = 256
    c.colorization.decoder_widths = (256, 128, 64)  # ResNet-50's 7x7 map -> 56x56 ab: the paper's stride 4
  return c
