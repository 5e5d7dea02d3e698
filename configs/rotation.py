"""Rotation prediction (Gidaris et al. 2018): which of 0/90/180/270 degrees each image was turned by.

Presets (`--config configs/rotation.py:PRESET`; shared defaults in configs/vision_base.py):
  cpu      SmallCNN on Fashion-MNIST (offline IDX files, `make data`).
           python launch/run.py --config configs/rotation.py:cpu --workdir workdirs/rotation_cpu
           Current figures: README.md's Methods table. Those below predate the CPU flags and fine-tuning's
           epoch budget; they stay for the comparisons they make.
           320 steps (0.68 epoch, each image at all 4 rotations), 13.0 min on 2 idle cores (5.7 of pre-training).
           Measured against the random-init encoder: linear probe 0.858 / 0.841 (10% 0.828 / 0.810, 1% 0.750 /
           0.739), kNN 0.759 / 0.782, fine-tuned 0.753 / 0.720 (10% 0.688 / 0.635, 1% 0.660 / 0.595). A full
           epoch (468 steps, 16.7 min, over budget) gave within 0.5 points of these on the probes and 1-1.6 more
           on fine-tuning. kNN stays below random init in every rotation run so far.
  tiny     a few steps on a slice of Fashion-MNIST, for tests.
  cifar10  ResNet-18, SGD 0.1 with batch 128 x 4 rotations, 100 epochs (the paper's CIFAR setting uses a NIN;
           ResNet-18 is the common re-implementation).
  imagenet ResNet-50, batch 256 x 4 rotations, 35 epochs.

Overrides: --config.augment.crop_scale='(0.3, 1.0)' --config.epochs=2 ...
"""

import vision_base


def get_config(arg=None):
  preset = arg or "cpu"
  c = vision_base.base("rotation", preset)
  if preset == "cpu":
    c.epochs = 0
    c.total_steps = 320  # the 15-minute budget with the evals
  elif preset == "cifar10":
    c.batch_size = 128  # x 4 rotations
  elif preset == "imagenet":
    c.batch_size = 256
  return c
