"""SimCLR (Chen et al. 2020): two strongly augmented views, a projection head, NT-Xent over the global batch.

Presets (`--config configs/simclr.py:PRESET`; shared defaults in configs/vision_base.py):
  cpu      SmallCNN on Fashion-MNIST (offline IDX files). The default of `make run`.
           python launch/run.py --config configs/simclr.py:cpu --workdir workdirs/simclr_cpu
           2-core CPU: 16 minutes end to end (13.6 min training, 10 epochs; 2.1 min evals).
           Measured (test set): linear/top1 0.879, linear_10pct 0.855, linear_1pct 0.802, knn/top1 0.814,
           against raw pixels 0.846 / 0.829 / 0.781 / 0.789 and the random-init encoder with the same
           readout 0.840 / 0.810 / 0.739 / 0.782.
  tiny     a few steps on a slice of Fashion-MNIST, for tests (seconds).
  cifar10  ResNet-18 (CIFAR stem), batch 512, LARS, lr 0.3*bs/256 (sqrt scaling off), 100 epochs, T=0.5,
           as in the SimCLR paper's CIFAR-10 appendix. One GPU (H100): about 1 h; expected linear/top1 ~0.83
           (the paper reports ~0.83 at 100 epochs, batch 512... 0.94 at 1000 epochs).
  imagenet ResNet-50, batch 4096, LARS lr 0.3*bs/256, 100 epochs, T=0.1, 10 warm-up epochs (paper, Table B.1).
           TPU v3-32 / 8xA100; expected linear/top1 ~0.66 at 100 epochs.

Overrides: --config.optim.learning_rate=0.5 --config.batch_size=256 ...
"""

import ml_collections
import vision_base


def get_config(arg=None) -> ml_collections.ConfigDict:
  preset = arg or "cifar10"
  c = vision_base.base("simclr", preset)
  c.batch_size = 512
  c.keep_checkpoints = 3
  c.model.proj_hidden_dim = 2048
  c.model.proj_out_dim = 128
  c.model.proj_layers = 2
  c.model.proj_bn = True  # BatchNorm after each Dense of the head, the last one without scale or bias (SimCLR v2)

  c.simclr = ml_collections.ConfigDict()
  c.simclr.temperature = 0.5

  c.augment.crop_scale = (0.08, 1.0)
  c.augment.flip = True
  c.augment.jitter_strength = 0.5
  c.augment.jitter_p = 0.8
  c.augment.grayscale_p = 0.2
  c.augment.blur_p = 0.0  # the paper drops blur on CIFAR-10
  c.augment.solarize_p = 0.0

  c.optim.name = "lars"
  c.optim.learning_rate = 0.3  # base rate: scaled by batch_size/256 when lr_scaling == 'linear'
  c.optim.weight_decay = 1e-6
  c.optim.warmup_epochs = 10.0
  c.epochs = 100

  c.evals.baselines = ("raw_pixels", "random_init")
  # The probes are SimCLR's published figures, so fine-tuning is off; turned on, it runs the full-size schedule
  # in every preset, not the pretext tasks' shortened CPU one.
  c.evals.finetune = False
  c.evals.update(finetune_batch_size=256, finetune_epochs=30.0, finetune_min_steps=100, finetune_max_steps=10000)

  if preset == "imagenet":
    c.batch_size = 4096
    c.simclr.temperature = 0.1
    c.augment.blur_p = 0.5
    c.evals.baselines = ("random_init",)
  elif preset in ("cpu", "tiny"):
    c.model.proj_hidden_dim = 256
    c.model.proj_out_dim = 64
    c.augment.crop_scale = (0.2, 1.0)  # 28x28 images: tiny crops leave too little to match
    c.optim.name = "adamw"
    c.optim.learning_rate = 2e-3
    c.optim.weight_decay = 1e-4
    c.optim.warmup_epochs = 1.0
    c.batch_size = 256
    # 10 epochs since the CPU flags (ssljax/cpu_flags.py) halved the step: 5 gave linear/top1 0.873, 1% 0.776
    c.epochs = 10
    if preset == "tiny":
      c.batch_size = 32
      c.optim.warmup_epochs = 0.0
      c.model.proj_hidden_dim = 32
      c.model.proj_out_dim = 16
  return c
