"""MoCo v2 (He et al. 2020; Chen et al. 2020): a momentum key encoder, a queue of K keys, InfoNCE over [positive,
queue], an MLP head and SimCLR's strong augmentation with blur.

Presets (`--config configs/moco.py:PRESET`; shared defaults in configs/vision_base.py):
  cpu      SmallCNN on Fashion-MNIST (offline IDX files), queue 4096, m 0.99, T 0.2.
           python launch/run.py --config configs/moco.py:cpu --workdir workdirs/moco_cpu
           2-core CPU: 11.5 min end to end (9.1 min training, 10 epochs at 1126 images/s; 2.4 min evals).
           Measured (test set): linear/top1 0.874, linear_10pct 0.849, linear_1pct 0.787, knn/top1 0.814,
           against raw pixels 0.846 / 0.829 / 0.781 / 0.789 and the random-init encoder 0.846 / 0.818 / 0.755 /
           0.773 (SimCLR's cpu preset: 0.879 / 0.855 / 0.802 / 0.814).
  tiny     a few steps on a slice of Fashion-MNIST, for tests (seconds).
  cifar10  ResNet-18 (CIFAR stem), batch 256, SGD lr 0.06 cosine, queue 4096, m 0.99 -> 1 (cosine), T 0.2,
           200 epochs. One GPU; not measured here.
  imagenet ResNet-50, batch 256, SGD lr 0.03, weight decay 1e-4, 200 epochs, queue 65536, m 0.999, T 0.2, blur:
           MoCo v2's recipe (paper: 67.5% linear top-1 at 200 epochs). 8 GPUs / a TPU slice.

Overrides: --config.moco.queue_size=8192 --config.moco.momentum_schedule=cosine ...
"""

import ml_collections
import vision_base


def get_config(arg=None) -> ml_collections.ConfigDict:
  preset = arg or "cifar10"
  c = vision_base.base("moco", preset)
  c.batch_size = 256
  c.keep_checkpoints = 3
  # MoCo v2's head: fc-ReLU-fc, no BatchNorm.
  c.model.proj_hidden_dim = 2048
  c.model.proj_out_dim = 128
  c.model.proj_layers = 2
  c.model.proj_bn = False

  c.moco = ml_collections.ConfigDict()
  c.moco.queue_size = 4096  # K: a multiple of batch_size
  c.moco.momentum = 0.99  # m of the key encoder's update
  c.moco.momentum_schedule = "cosine"  # constant | cosine (from m toward 1 over the run)
  c.moco.temperature = 0.2

  c.augment.crop_scale = (0.2, 1.0)
  c.augment.flip = True
  c.augment.jitter_strength = 0.5  # ColorJitter(0.4, 0.4, 0.4, 0.1)
  c.augment.jitter_p = 0.8
  c.augment.grayscale_p = 0.2
  c.augment.blur_p = 0.5
  c.augment.solarize_p = 0.0

  c.optim.name = "sgd"
  c.optim.learning_rate = 0.06  # base rate: scaled by batch_size/256 ('linear')
  c.optim.weight_decay = 5e-4
  c.optim.warmup_epochs = 0.0
  c.epochs = 200

  c.evals.baselines = ("raw_pixels", "random_init")
  # MoCo's published figures are linear probes (and kNN), as SimCLR's; `evals.finetune=True` adds fine-tuning.
  c.evals.finetune = False

  if preset == "imagenet":
    c.moco.queue_size = 65536
    c.moco.momentum = 0.999
    c.moco.momentum_schedule = "constant"
    c.optim.learning_rate = 0.03
    c.optim.weight_decay = 1e-4
    c.model.proj_out_dim = 128
    c.batch_size = 256
    c.evals.baselines = ("random_init",)
  elif preset in ("cpu", "tiny"):
    c.model.proj_hidden_dim = 256
    c.model.proj_out_dim = 64
    c.augment.blur_p = 0.0  # 28x28 images: a blur leaves too little (SimCLR's cpu preset drops it too)
    c.moco.momentum_schedule = "constant"
    c.optim.name = "adamw"
    c.optim.learning_rate = 2e-3
    c.optim.weight_decay = 1e-4
    c.optim.warmup_epochs = 1.0
    c.epochs = 10
    if preset == "tiny":
      c.batch_size = 32
      c.moco.queue_size = 64
      c.optim.warmup_epochs = 0.0
      c.model.proj_hidden_dim = 32
      c.model.proj_out_dim = 16
  return c
