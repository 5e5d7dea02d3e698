"""Context Encoders (Pathak et al. 2016): fill in a missing region of an image from its context.

Presets (`--config configs/inpainting.py:PRESET`; shared defaults in configs/vision_base.py):
  cpu      SmallCNN encoder + a small upsampling decoder on Fashion-MNIST (offline IDX files, `make data`), random
           region holes covering a quarter of each image.
           python launch/run.py --config configs/inpainting.py:cpu --workdir workdirs/inpainting_cpu
           3 epochs, about 300 ms a step on 2 idle cores (CPU time / 2; 0.96 s on 2 cores shared at load 6), so
           ~7 min of pre-training and ~14 min with the evals. Measured (shared cores, 33 min): linear probe 0.857
           against 0.841 for the random-init encoder (10% labels 0.829 / 0.810, 1% 0.765 / 0.739), kNN 0.784 /
           0.782, fine-tuning 0.720 / 0.720 (10% 0.623 / 0.634, 1% 0.606 / 0.594); hole MSE on test images 0.43
           against 1.88 for filling the hole with the mean of its context (normalized pixels).
  tiny     a few steps on a slice of Fashion-MNIST, for tests.
  cifar10  ResNet-18 encoder, decoder 256-128-64 from its 4x4 map, XLA convolutions.
  imagenet ResNet-50 encoder, decoder from its 7x7 map to 224, bfloat16.

Holes: --config.inpainting.mask=center|blocks|regions (the paper trained its features with random regions).
Adversarial term (the paper's inpainting setting): --config.inpainting.adversarial_weight=0.001.
"""

import ml_collections
import vision_base


def get_config(arg=None):
  preset = arg or "cpu"
  c = vision_base.base("inpainting", preset)
  c.inpainting = ml_collections.ConfigDict()
  c.inpainting.mask = "regions"  # center | blocks | regions
  c.inpainting.coverage = 0.25  # fraction of the image removed
  c.inpainting.block_size = 0.25  # blocks: side of one square / image side
  c.inpainting.region_grid = 4  # regions: side of the noise lattice upsampled to the image (smaller: bigger blobs)
  c.inpainting.adversarial_weight = 0.0  # w: (1 - w) L2 + w adversarial; the paper's inpainting used 0.001
  # One resize + conv-BN-ReLU stage per width, then a conv to pixels. On the cpu preset (16, 8) cost 300 ms a step
  # against 400 ms for (32, 16) (2 cores, batch 128): the encoder gets more steps in the same time.
  c.inpainting.decoder_widths = (16, 8)
  c.inpainting.channel_fc = True  # the paper's channel-wise fully-connected layer between encoder and decoder
  c.inpainting.discriminator_widths = (16, 32)
  c.inpainting.conv_impl = "patches"  # decoder and discriminator: patches (fast on CPU) | xla
  c.inpainting.eval_examples = 1024  # test images whose hole MSE eval.json reports
  c.inpainting.plot_examples = 8  # of those, drawn in workdir/inpaintings.png; 0: none
  if preset == "cpu":
    c.epochs = 3
  elif preset == "tiny":
    c.inpainting.decoder_widths = (8,)
    c.inpainting.eval_examples = 256
    c.inpainting.plot_examples = 4
  elif preset == "cifar10":
    c.inpainting.decoder_widths = (256, 128, 64)
    c.inpainting.conv_impl = "xla"
  elif preset == "imagenet":
    c.batch_size = 256
    c.inpainting.region_grid = 8
    c.inpainting.decoder_widths = (512, 256, 128, 64, 32)
    c.inpainting.discriminator_widths = (64, 128, 256)
    c.inpainting.conv_impl = "xla"
  return c
