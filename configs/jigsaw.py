"""Jigsaw puzzles (Noroozi and Favaro 2016): which of a maximal-Hamming set of permutations shuffled 3x3 tiles.

Presets (`--config configs/jigsaw.py:PRESET`; shared defaults and the tile geometry, which relative position
uses too, in configs/vision_base.py):
  cpu      SmallCNN on Fashion-MNIST (offline IDX files, `make data`): crops resized to 27x27, nine 7x7 tiles
           from 9x9 cells (up to 2 pixels of gap and jitter), 100 permutations, 3 epochs.
           python launch/run.py --config configs/jigsaw.py:cpu --workdir workdirs/jigsaw_cpu
           Current figures: README.md's Methods table. Those below predate the CPU flags and fine-tuning's
           epoch budget; they stay for the comparisons they make.
           The tiles are cut at the pixel scale the evals read (28x28 images). Cut from images upscaled to
           48x48 (12x12 tiles), the puzzle was learned as well but the features lost to the random-init encoder
           (linear probe 0.832 / 0.841, kNN 0.700 / 0.782): filters learned on 2x-magnified pixels do not fit
           the images the probes read. Measured (3 epochs, 11.5 min on 2 cores, about 3 of them shared with a
           pip install and a test run), against the random-init encoder: linear probe 0.852 / 0.841 (10% 0.831 /
           0.810, 1% 0.751 / 0.739), kNN 0.800 / 0.782, fine-tuned 0.751 / 0.720 (10% 0.666 / 0.635, 1% 0.659 /
           0.595). Puzzle loss 4.6 -> 0.18 over 100 permutations.
  tiny     a few steps on a slice of Fashion-MNIST, for tests.
  cifar10  ResNet-18 on 32x32 images resized to 96: 27x27 tiles from 32x32 cells. Not measured; the cpu preset's
           finding suggests trying native-scale tiles too (--config.jigsaw.image_size=33 --config.jigsaw.tile_size=9).
  imagenet ResNet-50 on 225x225 crops: 64x64 tiles from 75x75 cells (the paper's geometry), 1000 permutations.

Overrides: --config.jigsaw.num_permutations=1000 --config.jigsaw.tile_size=10 ...
"""

import vision_base


def get_config(arg=None):
  preset = arg or "cpu"
  c = vision_base.tile_task("jigsaw", preset)
  c.jigsaw.num_permutations = 100
  c.jigsaw.permutation_seed = 0
  if preset == "tiny":
    c.jigsaw.num_permutations = 10
  elif preset == "imagenet":
    c.jigsaw.num_permutations = 1000
  return c
