"""Context Encoders (Pathak et al. 2016): fill in a missing region of an image from its context.

Presets (`--config configs/inpainting.py:PRESET`; shared defaults in configs/vision_base.py):
  cpu      SmallCNN encoder + a small upsampling decoder on Fashion-MNIST (offline IDX files, `make data`), random
           region holes covering a quarter of each image.
           python launch/run.py --config configs/inpainting.py:cpu --workdir workdirs/inpainting_cpu
           Current figures: README.md's Methods table. Those below predate the CPU flags and fine-tuning's
           epoch budget; they stay for the comparisons they make.
           700 steps (1.5 epochs), 13.7 min on 2 idle cores (6 of pre-training at 0.51 s a step, the rest evals).
           Measured against the random-init encoder: linear probe 0.846 / 0.841 (10% 0.820 / 0.810, 1% 0.751 /
           0.739), kNN 0.773 / 0.782, fine-tuned 0.701 / 0.720 (10% 0.621 / 0.635, 1% 0.580 / 0.595); hole MSE
           on test images 0.50 against 1.88 for filling the hole with the mean of its context (normalized
           pixels). It fills holes well but its features barely beat random ones on the probes and lose on
           fine-tuning; 3 epochs (about 19 min, over budget; measured on shared cores) gave linear 0.857 and
           fine-tuning level with random init. With --config.inpainting.mask=center (700 steps, 13.6 min)
           fine-tuning beats random init (0.729 / 0.657 / 0.630 against 0.720 / 0.635 / 0.595) but the probes
           are level (linear 0.845, 10% 0.806, 1% 0.735; kNN 0.782). Two 64-wide conv-BN-ReLU layers at the start
           of the decoder (an option tried at commit e26e208 and removed, 1000 steps, 13.7 min on 2 idle cores,
           0.48 s a step) did not help either: linear 0.850 / 0.840 (10% 0.799 / 0.810, 1% 0.753 / 0.739),
           kNN 0.784 / 0.782, fine-tuned 0.700 / 0.720 (10% 0.606 / 0.634, 1% 0.580 / 0.594). At 400 steps,
           probes only, neither a centre hole, coverage 0.5 nor dropping the channel-wise FC moved the probes
           by more than their noise (about half a point).
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
  c.inpainting.conv_impl = "xla"  # decoder and discriminator: xla | patches (ssljax.models.cnn.PatchConv)
  c.inpainting.eval_examples = 1024  # test images whose hole MSE eval.json reports
  c.inpainting.plot_examples = 8  # of those, drawn in workdir/inpaintings.png; 0: none
  if preset == "cpu":
    c.epochs = 0
    c.total_steps = 700  # 1.5 epochs: the 15-minute budget with the evals
  elif preset == "tiny":
    c.inpainting.decoder_widths = (8,)
    c.inpainting.eval_examples = 256
    c.inpainting.plot_examples = 4
  elif preset == "cifar10":
    c.inpainting.decoder_widths = (256, 128, 64)
  elif preset == "imagenet":
    c.batch_size = 256
    c.inpainting.region_grid = 8
    c.inpainting.decoder_widths = (512, 256, 128, 64, 32)
    c.inpainting.discriminator_widths = (64, 128, 256)
  return c
