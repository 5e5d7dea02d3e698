"""MAE (He et al. 2021): a ViT encodes 25% of the patches, a light decoder predicts the hidden 75%.

Presets (`--config configs/mae.py:PRESET`; shared defaults in configs/vision_base.py):
  cpu      a 4-block, 128-wide ViT with 7x7 patches (16 per image, 4 visible) on Fashion-MNIST (offline IDX
           files, `make data`); decoder 64 wide, 1 block. Judged by fine-tuning against the same ViT from
           scratch.
           python launch/run.py --config configs/mae.py:cpu --workdir workdirs/mae_cpu
           Current figures: README.md's Methods table. Those below predate the CPU flags and fine-tuning's
           epoch budget; they stay for the comparisons they make.
           2 epochs, 10.6 min on 2 idle cores (pre-training 2 min at 980 images/s, then the evals). Measured:
           fine-tuned at 10% of the labels 0.696 against 0.654 for the same ViT from scratch (1% 0.689 / 0.625,
           100% 0.714 / 0.707: 100-200 fine-tuning steps); linear probe 0.804 / 0.768, kNN 0.749 / 0.670.
  tiny     a few steps of a 2-block ViT on a slice of Fashion-MNIST, for tests.
  cifar10  ViT-S/4 on 32x32, decoder 256 x 4, 400 epochs at batch 1024... one accelerator.
  imagenet ViT-B/16 at 224, decoder 512 x 8, batch 4096, AdamW lr 1.5e-4 * bs / 256, 800 epochs (the paper).

Overrides: --config.mae.mask_ratio=0.6 --config.mae.norm_pix=False ...
"""

import ml_collections
import vision_base


def get_config(arg=None):
  preset = arg or "cpu"
  c = vision_base.base("mae", preset)
  c.model.encoder = "vit"  # the encoder is the ViT below, not the vision_base CNN
  c.model.encoder_kwargs = ml_collections.ConfigDict()
  c.model.readout = "pre_logits"
  c.mae = ml_collections.ConfigDict()
  c.mae.size = "B"  # Ti | S | B | L | H, or 'custom' with hidden/depth/heads below
  c.mae.hidden = 192
  c.mae.depth = 12
  c.mae.heads = 3
  c.mae.patch_size = 16
  c.mae.pool = "mean"  # what probes and fine-tuning read: the mean patch token (MAE fine-tunes on it)
  c.mae.mask_ratio = 0.75
  c.mae.norm_pix = True  # targets normalized per patch (the paper's better default)
  c.mae.decoder_hidden = 512
  c.mae.decoder_depth = 8
  c.mae.decoder_heads = 16
  c.augment.crop_scale = (0.2, 1.0)
  c.optim.name = "adamw"
  c.optim.learning_rate = 1.5e-4
  c.optim.lr_scaling = "linear"
  c.optim.weight_decay = 0.05
  c.optim.b2 = 0.95
  c.optim.warmup_epochs = 40
  c.epochs = 800
  c.batch_size = 4096
  c.evals.finetune_learning_rate = 1e-3
  if preset in ("cpu", "tiny"):
    c.mae.size = "custom"
    # 7x7 patches (16 per image, 4 visible) and a one-block decoder (MAE's Table 1a: depth 1 fine-tunes as
    # well as 8): with 4x4 patches and a 2-block 128-wide decoder a step cost 5.5x more, and fine-tuning on
    # 49 tokens alone would have spent the 15 minutes.
    c.mae.hidden, c.mae.depth, c.mae.heads = 128, 4, 4
    c.mae.patch_size = 7
    c.mae.decoder_hidden, c.mae.decoder_depth, c.mae.decoder_heads = 64, 1, 4
    c.augment.crop_scale = (0.5, 1.0)
    c.optim.learning_rate = 1.5e-3
    c.optim.lr_scaling = "none"
    c.optim.warmup_epochs = 0.2
    c.batch_size = 256
    c.epochs = 2
    c.evals.finetune_learning_rate = 1e-3
    if preset == "tiny":
      c.mae.hidden, c.mae.depth, c.mae.heads = 32, 2, 2
      c.mae.decoder_hidden, c.mae.decoder_depth, c.mae.decoder_heads = 32, 1, 2
      c.batch_size = 32
      c.optim.warmup_epochs = 0.0
  elif preset == "cifar10":
    c.mae.size = "S"
    c.mae.patch_size = 4
    c.mae.decoder_hidden, c.mae.decoder_depth, c.mae.decoder_heads = 256, 4, 8
    c.batch_size = 1024
    c.epochs = 400
    c.optim.warmup_epochs = 20
  elif preset == "imagenet":
    c.model.dtype = "bfloat16"
  return c
