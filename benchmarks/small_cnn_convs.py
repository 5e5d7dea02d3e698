"""SmallCNN's two convolutions side by side on this CPU: images/s at inference and for a training step
(forward + backward, BatchNorm in training mode), XLA's conv against the patch matmul (`ssljax.models.cnn`).

  python benchmarks/small_cnn_convs.py [--widths 16 32 64] [--size 28] [--seconds 5]

SmallCNN trains and embeds with XLA's conv ('xla', the default) since ssljax.cpu_flags turns YNNPACK's
convolutions off; before that, the patches trained faster. The ratio xla/patches of each mode is printed last.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np

from ssljax.models.cnn import SmallCNN


def images_per_second(fn, batch, seconds: float) -> float:
  jax.block_until_ready(fn(batch))  # compile
  start, n = time.perf_counter(), 0
  while time.perf_counter() - start < seconds:
    jax.block_until_ready(fn(batch))
    n += len(batch)
  return n / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
  parser.add_argument("--size", type=int, default=28)
  parser.add_argument("--infer-batch", type=int, default=1024)
  parser.add_argument("--train-batch", type=int, default=512)
  parser.add_argument("--seconds", type=float, default=5.0)
  args = parser.parse_args()
  print(
    f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; SmallCNN{tuple(args.widths)} on "
    f"{args.size}x{args.size}x1, jax {jax.__version__}"
  )
  x = np.random.default_rng(0).random((max(args.infer_batch, args.train_batch), args.size, args.size, 1), np.float32)
  rates = {}
  for impl in ("xla", "patches"):
    model = SmallCNN(widths=tuple(args.widths), conv_impl=impl)
    variables = model.init(jax.random.PRNGKey(0), x[:2], train=False)
    infer = jax.jit(lambda b: model.apply(variables, b, train=False)[1]["pooled_grid"])

    def loss(params, b):
      (_, aux), _ = model.apply(
        {"params": params, "batch_stats": variables["batch_stats"]}, b, train=True, mutable=["batch_stats"]
      )
      return jnp.sum(aux["pooled_grid"] ** 2)

    grad = jax.jit(lambda b: jax.grad(loss)(variables["params"], b))
    rates[impl] = (
      images_per_second(infer, x[: args.infer_batch], args.seconds),
      images_per_second(grad, x[: args.train_batch], args.seconds),
    )
    print(
      f"  {impl:7s}: inference {rates[impl][0]:7.0f} images/s (batch {args.infer_batch}) | training step "
      f"{rates[impl][1]:6.0f} images/s (batch {args.train_batch})",
      flush=True,
    )
  print(
    f"ratio xla/patches, images/s: inference {rates['xla'][0] / rates['patches'][0]:.2f}x, "
    f"training {rates['xla'][1] / rates['patches'][1]:.2f}x"
  )


if __name__ == "__main__":
  main()
