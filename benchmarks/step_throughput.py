"""Train-step throughput and MFU of a config (images/s, or tokens/s for BERT), on whatever accelerator jax sees.

  python benchmarks/step_throughput.py --config configs/simclr.py:cifar10 [--steps 50] [--config.KEY=VALUE ...]

The step is the one `train.py` runs (same method, optimizer, shardings, donation), fed a fixed batch of the
config's shape (uint8 images, or full-length BERT pairs of random tokens), so the input pipeline is out of the
picture (benchmarks/input_pipeline.py measures that).
FLOPs come from XLA's cost analysis of the compiled step; MFU divides achieved FLOP/s by the chip's peak.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import config as config_lib
from ssljax import methods, optim, sharding, train

# Dense peak FLOP/s per chip for the compute dtype (vendor datasheets, SXM parts).
PEAK_FLOPS = {
    ("H100", "bfloat16"): 989e12, ("H100", "float32"): 67e12,
    ("H200", "bfloat16"): 989e12, ("H200", "float32"): 67e12,
    ("A100", "bfloat16"): 312e12, ("A100", "float32"): 19.5e12,
    ("TPU v4", "bfloat16"): 275e12, ("TPU v5", "bfloat16"): 197e12,
}


def peak_flops(device, dtype: str) -> float | None:
  kind = device.device_kind
  for (name, dt), value in PEAK_FLOPS.items():
    if name in kind and dt == dtype:
      return value
  return None


def synthetic_batch(config, image_shape) -> tuple[dict, int]:
  """A fixed batch of the config's shape, and how many examples (images, or tokens for text) it holds."""
  rng, b = np.random.default_rng(0), config.batch_size
  if config.method == "bert":  # full-length pairs [CLS] A [SEP] B [SEP], as pre-training builds them
    t = config.data.max_len
    tokens = rng.integers(5, config.data.vocab_size, (b, t)).astype(np.int32)
    tokens[:, 0], tokens[:, t // 2], tokens[:, -1] = 2, 3, 3
    segments = (np.arange(t)[None, :] > t // 2).astype(np.int32).repeat(b, 0)
    return {"tokens": tokens, "segments": segments, "is_next": rng.integers(0, 2, b).astype(np.int32)}, b * t
  return {"image": rng.integers(0, 256, (b, *image_shape), np.uint8), "label": np.zeros((b,), np.int32)}, b


def measure(config, *, image_shape, steps: int, warmup: int = 3) -> dict:
  method = methods.get_method(config.method)
  mesh = sharding.make_mesh()
  repl = sharding.replicated(mesh)
  tx, schedule = optim.make_optimizer(config.optim, batch_size=config.batch_size, total_steps=10_000,
                                      steps_per_epoch=100)
  batch_np, examples = synthetic_batch(config, image_shape)

  def init(rng):
    params, state = method.init(config, rng, jax.tree.map(jnp.asarray, batch_np), data=None)
    return train.TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                            method_state=state, rng=rng)

  state = jax.jit(init, out_shardings=repl)(jax.random.PRNGKey(0))
  batch = sharding.global_batch(batch_np, mesh)
  step_fn = jax.jit(train.make_train_step(method, config, tx, schedule), donate_argnums=0,
                    in_shardings=(repl, sharding.batch_sharded(mesh)), out_shardings=(repl, repl))
  t0 = time.perf_counter()
  compiled = step_fn.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  flops = (compiled.cost_analysis() or {}).get("flops")
  for _ in range(warmup):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  t0 = time.perf_counter()
  for _ in range(steps):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  step_s = (time.perf_counter() - t0) / steps
  peak = peak_flops(jax.devices()[0], config.model.dtype)
  out = {"device": jax.devices()[0].device_kind, "devices": mesh.size, "batch": config.batch_size,
         "step_ms": 1e3 * step_s, "examples_per_s": examples / step_s, "compile_s": compile_s,
         "tflops_per_step": flops / 1e12 if flops else None}
  out["mfu"] = flops / step_s / (peak * mesh.size) if flops and peak else None
  return out


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/simclr.py:cifar10")
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--image-shape", default="32,32,3", help="H,W,C of the raw uint8 images")
  args, rest = parser.parse_known_args()
  config = config_lib.get_config(args.config, [r[len("--config."):] for r in rest])
  shape = tuple(int(s) for s in args.image_shape.split(","))
  r = measure(config, image_shape=shape, steps=args.steps)
  mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a (unknown peak for this chip)"
  print(f"{args.config} on {r['devices']}x {r['device']}: batch {r['batch']}, {r['step_ms']:.1f} ms/step, "
        f"compile {r['compile_s']:.0f} s, {r['tflops_per_step']:.3f} TFLOP/step (XLA cost analysis)")
  unit = "tokens" if config.method == "bert" else "images"
  print(f"{unit}/s {r['examples_per_s']:.0f} | MFU {mfu}")


if __name__ == "__main__":
  main()
