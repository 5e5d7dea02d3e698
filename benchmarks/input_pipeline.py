"""Host input pipeline vs train step, side by side, for one config (default: the `cpu` preset).

  python benchmarks/input_pipeline.py [--config configs/simclr.py:cpu] [--batches 300]

Prints batches/s that the seeded tf.data stream delivers as global jax.Arrays on the mesh, the steps/s that
the train step consumes, and last the ratio (must be >= 2 so the step never waits on the host).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax

from ssljax import config as config_lib
from ssljax import sharding
from ssljax.data import images
from step_throughput import measure


def pipeline_batches_per_s(config, split, batches: int) -> float:
  mesh = sharding.make_mesh()
  stream = images.train_stream(split, batch_size=config.batch_size, seed=config.seed, start_step=0)
  for _ in range(5):  # tf.data warm-up
    jax.block_until_ready(sharding.global_batch(next(stream), mesh))
  t0 = time.perf_counter()
  for _ in range(batches):
    jax.block_until_ready(sharding.global_batch(next(stream), mesh))
  return batches / (time.perf_counter() - t0)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/simclr.py:cpu")
  parser.add_argument("--batches", type=int, default=300)
  parser.add_argument("--steps", type=int, default=5)
  args = parser.parse_args()
  config = config_lib.get_config(args.config)
  split = images.load_split(config.data, config.data.train_split)
  host = pipeline_batches_per_s(config, split, args.batches)
  step = measure(config, image_shape=split.images.shape[1:], steps=args.steps, warmup=1)
  consumed = 1e3 / step["step_ms"]
  print(f"input pipeline: {host:.1f} batches/s of {config.batch_size} images ({args.config}, tf.data -> mesh)")
  print(f"train step:     {consumed:.2f} steps/s ({step['step_ms']:.0f} ms/step on {step['devices']}x {step['device']})")
  print(f"ratio pipeline/step: {host / consumed:.1f}x")


if __name__ == "__main__":
  main()
