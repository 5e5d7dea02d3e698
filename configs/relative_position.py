"""Relative patch position (Doersch et al. 2015): where, of 8 places, a tile sits around the centre tile.

Presets (`--config configs/relative_position.py:PRESET`; shared defaults and the tile geometry, which jigsaw uses
too, in configs/vision_base.py):
  cpu      SmallCNN on Fashion-MNIST (offline IDX files, `make data`): crops resized to 27x27, nine 7x7 tiles
           from 9x9 cells (up to 2 pixels of gap and jitter); all 8 pairs of each image; 3 epochs.
           python launch/run.py --config configs/relative_position.py:cpu --workdir workdirs/relpos_cpu
           Current figures: README.md's Methods table. Those below predate the CPU flags and fine-tuning's
           epoch budget; they stay for the comparisons they make.
           10.4 min on 2 idle cores (3 of pre-training). Measured against the random-init encoder: linear probe
           0.868 / 0.841 (10% 0.841 / 0.810, 1% 0.774 / 0.739), kNN 0.809 / 0.782, fine-tuned 0.768 / 0.720
           (10% 0.710 / 0.635, 1% 0.674 / 0.595). The tiles are cut at the pixel scale the evals read: cut from
           images upscaled to 48x48 (12x12 tiles, 1 epoch, 13.7 min) the lift was a third of this (linear 0.854,
           kNN 0.778, fine-tuned 0.731 / 0.640 / 0.613), as jigsaw's was nil (configs/jigsaw.py).
  tiny     a few steps on a slice of Fashion-MNIST, for tests.
  cifar10  ResNet-18 on 32x32 images resized to 96: 27x27 tiles from 32x32 cells. Not measured; the cpu preset's
           finding suggests trying native-scale tiles too (--config.relative_position.image_size=33
           --config.relative_position.tile_size=9).
  imagenet ResNet-50 on 225x225 crops: 64x64 tiles from 75x75 cells.

Overrides: --config.relative_position.tile_size=10 ...
"""

import vision_base


def get_config(arg=None):
  return vision_base.tile_task("relative_position", arg or "cpu")
