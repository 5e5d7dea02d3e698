"""Host input pipeline vs train step, side by side: the in-memory stream of one config (default: the SimCLR `cpu`
preset) and the streamed tfds pipeline at an ImageNet shape.

  python benchmarks/input_pipeline.py [--config configs/simclr.py:cpu] [--batches 300]
      [--streamed-images 3000] [--streamed-batches 30] [--step-batch 8] [--synthetic-dir DIR] [--skip-streamed]

In memory: batches/s that the seeded tf.data stream delivers as global jax.Arrays on the mesh, against the steps/s
that the config's train step consumes.

Streamed: a synthetic tfds dataset of `--streamed-images` variable-size JPEGs (300-400 x 350-450, about 80 KB each,
ImageNet's typical size), prepared in a temp dir (or `--synthetic-dir`, kept and reused), read by the imagenet
preset's source (`images.TfdsTrainData`: its num_shards and shuffle buffer, decode and resize to 224 on the host)
at batch 256 for one process, against the imagenet preset's train step (SimCLR, ResNet-50 at 224). That step
at batch 256 takes minutes on a CPU, so it is timed at `--step-batch` images and reported per image: the
images/s a CPU-bound step would consume. On an accelerator the step is far faster; there the pipeline figure is
what a host delivers per process, and the figure to compare with is the step's images/s per host.

The ratio lines say how many times faster the host is than the step; under 1 the step waits on the host.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax
import numpy as np
from step_throughput import measure

from ssljax import config as config_lib
from ssljax import sharding
from ssljax.data import images

SYNTHETIC_NAME = "ssljax_synthetic_imagenet_jpegs"
STREAMED_CONFIG = "configs/simclr.py:imagenet"
STREAMED_BATCH = 256  # per process: the preset's 4096 on 16 hosts


def pipeline_batches_per_s(stream, mesh, batches: int, warmup: int = 5) -> float:
  for _ in range(warmup):  # tf.data warm-up: threads, the first shuffle buffers
    jax.block_until_ready(sharding.global_batch(next(stream), mesh))
  t0 = time.perf_counter()
  for _ in range(batches):
    jax.block_until_ready(sharding.global_batch(next(stream), mesh))
  return batches / (time.perf_counter() - t0)


@functools.cache
def _synthetic_builder():
  import tensorflow_datasets as tfds  # lazy, as everywhere: tensorflow is heavy

  class SsljaxSyntheticImagenetJpegs(tfds.core.GeneratorBasedBuilder):
    """Photo-like JPEGs (a smooth random field plus grain) of ImageNet's typical size, 1000 classes."""

    VERSION = tfds.core.Version("1.0.0")
    num_images = 3000  # set by prepare_synthetic

    def _info(self):
      return tfds.core.DatasetInfo(
        builder=self,
        supervised_keys=("image", "label"),
        features=tfds.features.FeaturesDict(
          {
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(num_classes=1000),
          }
        ),
      )

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(self.num_images)}

    def _generate_examples(self, n):
      from PIL import Image

      rng = np.random.default_rng(0)
      for i in range(n):
        h, w = int(rng.integers(300, 401)), int(rng.integers(350, 451))
        field = Image.fromarray(rng.integers(0, 256, (6, 6, 3), np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
        pixels = np.asarray(field, np.int16) + rng.normal(0, 20, (h, w, 3)).astype(np.int16)
        out = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
        yield i, {"image": out.getvalue(), "label": i % 1000}

  return SsljaxSyntheticImagenetJpegs


def prepare_synthetic(directory: str, num_images: int) -> float:
  """Prepares the synthetic dataset in `directory` (reused when there); returns the mean JPEG size in KB."""
  import tensorflow_datasets as tfds

  tfds.disable_progress_bar()
  cls = _synthetic_builder()
  cls.num_images = num_images
  builder = cls(data_dir=directory)
  if builder.is_prepared() and builder.info.splits["train"].num_examples != num_images:
    raise SystemExit(
      f"{directory} holds {builder.info.splits['train'].num_examples} synthetic images, not "
      f"{num_images}: pass another --synthetic-dir"
    )
  builder.download_and_prepare()
  return builder.info.splits["train"].num_bytes / num_images / 1e3


def in_memory(args) -> None:
  config = config_lib.get_config(args.config)
  split = images.load_split(config.data, config.data.train_split)
  stream = images.train_stream(split, batch_size=config.batch_size, seed=config.seed, start_step=0)
  host = pipeline_batches_per_s(stream, sharding.make_mesh(), args.batches)
  step = measure(config, image_shape=split.images.shape[1:], steps=args.steps, warmup=1)
  consumed = 1e3 / step["step_ms"]
  print(
    f"input pipeline: {host:.1f} batches/s of {config.batch_size} images = {host * config.batch_size:.0f} "
    f"images/s ({args.config}, in memory, tf.data -> mesh)"
  )
  print(
    f"train step:     {consumed:.2f} steps/s = {consumed * config.batch_size:.0f} images/s "
    f"({step['step_ms']:.0f} ms/step on {step['devices']}x {step['device']})"
  )
  print(f"ratio pipeline/step: {host / consumed:.1f}x", flush=True)


def streamed(args) -> None:
  directory = args.synthetic_dir or tempfile.mkdtemp(prefix="ssljax-synthetic-jpegs-")
  try:
    t0 = time.perf_counter()
    kb = prepare_synthetic(directory, args.streamed_images)
    prepare_s = time.perf_counter() - t0
    config = config_lib.get_config(STREAMED_CONFIG)
    config.data.name, config.data.tfds_data_dir = SYNTHETIC_NAME, directory
    source = images.load_train_data(config.data)
    spe = source.steps_per_epoch(STREAMED_BATCH)
    stream = source.stream(batch_size=STREAMED_BATCH, seed=config.seed, start_step=0)
    host = pipeline_batches_per_s(stream, sharding.make_mesh(), args.streamed_batches) * STREAMED_BATCH
    d = config.data
    print(
      f"streamed input pipeline: {host:.0f} images/s, batch {STREAMED_BATCH} of {d.image_size}x{d.image_size}x3 "
      f"uint8 from {args.streamed_images} JPEGs of 300-400 x 350-450 ({kb:.0f} KB mean; prepared in "
      f"{prepare_s:.0f} s), {d.num_shards} shards, shuffle buffer {d.shuffle_buffer}, {spe} steps/epoch, "
      f"1 process on {os.cpu_count()} CPUs, decode + resize on the host, tf.data -> mesh",
      flush=True,
    )
  finally:
    if not args.synthetic_dir:
      shutil.rmtree(directory, ignore_errors=True)
  config.batch_size = args.step_batch
  step = measure(config, image_shape=(d.image_size, d.image_size, 3), steps=args.step_steps, warmup=1)
  consumed = 1e3 * args.step_batch / step["step_ms"]
  print(
    f"train step:              {consumed:.1f} images/s ({STREAMED_CONFIG}: {config.model.encoder} "
    f"{config.model.dtype} at {d.image_size}, timed at batch {args.step_batch}: {step['step_ms']:.0f} ms/step on "
    f"{step['devices']}x {step['device']}, compile {step['compile_s']:.0f} s; per image, so batch "
    f"{STREAMED_BATCH} would take ~{STREAMED_BATCH / consumed:.0f} s)"
  )
  print(f"ratio streamed pipeline/step: {host / consumed:.1f}x")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/simclr.py:cpu")
  parser.add_argument("--batches", type=int, default=300)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--streamed-images", type=int, default=3000)
  parser.add_argument("--streamed-batches", type=int, default=30)
  parser.add_argument("--step-batch", type=int, default=8)
  parser.add_argument("--step-steps", type=int, default=3)
  parser.add_argument("--synthetic-dir", default="", help="keep the synthetic dataset here (reused when prepared)")
  parser.add_argument("--skip-streamed", action="store_true")
  args = parser.parse_args()
  in_memory(args)
  if not args.skip_streamed:
    streamed(args)


if __name__ == "__main__":
  main()
