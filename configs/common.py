"""What every config has, whatever its data: the run's keys (method, seed, length, checkpoints, logging, init_from)
and AdamW with a cosine schedule. The family bases (vision_base, text_base, the audio config) start from these."""

import ml_collections


def run(
  method: str, *, batch_size: int, epochs: float, checkpoint_every: int, log_every: int
) -> ml_collections.ConfigDict:
  """The run: method, seed, length (`epochs`, unless total_steps > 0), checkpoints and logging."""
  c = ml_collections.ConfigDict()
  c.method = method
  c.seed = 0
  c.init_from = ""  # a workdir whose newest checkpoint's encoder this run starts from
  c.batch_size = batch_size
  c.total_steps = 0  # > 0 wins over epochs
  c.epochs = epochs
  c.checkpoint_every = checkpoint_every
  c.keep_checkpoints = 2
  c.log_every = log_every
  return c


def adamw(*, learning_rate: float, warmup_epochs: float, weight_decay: float, b2: float) -> ml_collections.ConfigDict:
  """AdamW with a cosine schedule and global-norm clipping at 1.0; the learning rate is not scaled by batch."""
  o = ml_collections.ConfigDict()
  o.name = "adamw"
  o.learning_rate = learning_rate
  o.lr_scaling = "none"
  o.schedule = "cosine"
  o.warmup_epochs = warmup_epochs
  o.weight_decay = weight_decay
  o.momentum = 0.9  # adam's b1
  o.b2 = b2
  o.grad_clip_norm = 1.0
  return o
