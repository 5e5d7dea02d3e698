"""Train-step throughput and MFU of a config on one GPU (images/s, tokens/s for BERT, words/s for word2vec).

  python benchmarks/step_throughput.py --config configs/simclr.py:cifar10 [--steps 50] [--config.KEY=VALUE ...]
  python benchmarks/step_throughput.py --smoke --config configs/simclr.py:tiny --image-shape 28,28,1

The step is the one `train.py` runs (same method, optimizer, shardings, donation), fed a fixed batch of the
config's shape (uint8 images, with one full-length caption of random tokens each for CLIP; full-length BERT pairs
of random tokens; or word2vec tokens drawn from a Zipf vocabulary), so neither a dataset nor the input pipeline is
involved (benchmarks/input_pipeline.py measures that).

It measures a GPU, so it refuses (exit 2, one line on stderr) when jax's backend is anything else: a CPU-only
jaxlib would otherwise be timed and reported as the GPU figure. `--smoke` runs the same code for 2 steps on
whatever backend there is and labels every figure as a smoke run; the tests use it to keep the scripts alive.

FLOPs come from XLA's cost analysis of the compiled step (per device). MFU divides the achieved FLOP/s by the
chip's dense peak in the precision the matmuls run in: bf16 when the model computes in bfloat16, TF32 for
float32 on Ampere and later (jax's default matmul precision on GPU), FP32 when TF32 is off. A chip not in
`GPU_PEAK_TFLOPS`, or a step whose FLOPs XLA cannot count, gets "MFU n/a" and the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import config as config_lib
from ssljax import methods, optim, sharding, train
from ssljax.data import text

REFUSAL_EXIT = 2
SMOKE_STEPS, SMOKE_WARMUP = 2, 1
TEXT8_VOCAB = 71290  # text8's vocabulary at min_count 5: word2vec's synthetic corpus has as many words

# Dense (no 2:4 sparsity) peak TFLOP/s per chip from NVIDIA's datasheets: tensor cores for bf16 and tf32, the
# CUDA cores for fp32. The datasheets print the sparse tensor figures; these are half of them. Rows are tried
# in order against `device.device_kind` ("NVIDIA H100 80GB HBM3" is the SXM part; NVL and PCIe parts are
# slower and must not match the SXM rows).
GPU_PEAK_TFLOPS = (
  (r"H100.*PCIe", "H100 PCIe", {"bf16": 756.5, "tf32": 378.0, "fp32": 51.2}),
  (r"H100 (80GB HBM3|SXM)", "H100 SXM", {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
  (r"GH200", "GH200", {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
  (r"\bH200\b(?!.*NVL)", "H200 SXM", {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
  (r"A100", "A100", {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}),
  (r"\bL4\b", "L4", {"bf16": 121.0, "tf32": 60.0, "fp32": 30.3}),
  (r"\bA10\b", "A10", {"bf16": 125.0, "tf32": 62.5, "fp32": 31.2}),
  # Volta: no bf16 or TF32 tensor cores; f32 matmuls run on the CUDA cores.
  (r"V100-SXM2", "V100 SXM2", {"fp32": 15.7}),
  (r"V100-PCIE", "V100 PCIe", {"fp32": 14.0}),
)


@dataclasses.dataclass(frozen=True)
class Peak:
  flops: float | None  # FLOP/s per chip; None when unknown, and `note` says why
  note: str  # what the figure is, or why there is none


def matmul_precision(
  compute_dtype: str, *, default_matmul_precision: str | None = None, tf32_override: str | None = None
) -> str:
  """The precision a GPU runs the model's matmuls in: 'bf16', 'tf32', 'fp32', or jax's own name for a
  multi-pass precision ('bfloat16_3x', 'high', ...), which has no single peak.

  Args:
    compute_dtype: the config's `model.dtype`, 'bfloat16' or 'float32'.
    default_matmul_precision: `jax.config.jax_default_matmul_precision` (None is jax's default, which on
      Ampere and later runs float32 matmuls as TF32).
    tf32_override: the NVIDIA_TF32_OVERRIDE environment variable; '0' makes cuBLAS and cuDNN refuse TF32.
  """
  if compute_dtype == "bfloat16":
    return "bf16"
  if compute_dtype != "float32":
    raise ValueError(f"compute dtype '{compute_dtype}' is not bfloat16 or float32")
  precision = (default_matmul_precision or "default").lower()
  if precision in ("highest", "float32") or tf32_override == "0":
    return "fp32"
  if precision in ("default", "fastest", "tensorfloat32"):
    return "tf32"
  if precision == "bfloat16":
    return "bf16"
  return precision


def peak_flops(device_kind: str, precision: str) -> Peak:
  """The dense peak FLOP/s of one chip in `precision` ('bf16', 'tf32' or 'fp32'), from `GPU_PEAK_TFLOPS`.

  >>> peak_flops("NVIDIA H200", "bf16").flops
  989400000000000.0
  """
  for pattern, name, tflops in GPU_PEAK_TFLOPS:
    if not re.search(pattern, device_kind):
      continue
    if precision == "tf32" and "tf32" not in tflops and "fp32" in tflops:
      # A chip without TF32 runs a TF32-permitted matmul in full FP32.
      return Peak(tflops["fp32"] * 1e12, f"{tflops['fp32']:g} TFLOP/s, {name} FP32 (no TF32 on this chip)")
    if precision not in tflops:
      return Peak(None, f"no {precision} peak listed for {name}")
    return Peak(tflops[precision] * 1e12, f"{tflops[precision]:g} TFLOP/s, {name} dense {precision}")
  return Peak(None, f"no peak listed for device '{device_kind}' (benchmarks/step_throughput.py GPU_PEAK_TFLOPS)")


def model_flops_utilization(flops_per_device: float | None, step_s: float, peak: Peak) -> float | None:
  """Achieved over peak FLOP/s of one chip; XLA's cost analysis of an SPMD program counts one device's FLOPs."""
  if not flops_per_device or peak.flops is None:
    return None
  return flops_per_device / step_s / peak.flops


_MATMUL = re.compile(r'\s(dot|convolution)\(|custom_call_target="[^"]*(gemm|matmul|conv)', re.IGNORECASE)


def loop_hides_matmuls(hlo_text: str) -> bool:
  """Whether a while loop of the compiled HLO module runs a matmul or convolution, at any depth of calls.

  XLA's HloCostAnalysis counts a loop body once whatever its trip count, so such a step's FLOPs are too low.
  Loops without matmuls (the CPU's threefry rounds) add no FLOPs worth counting and are let through.
  """
  computations, name, body = {}, None, []
  for line in hlo_text.splitlines():
    if name is None and line.endswith("{") and line[:1] not in (" ", "\t", ""):
      name, body = line.removeprefix("ENTRY ").split()[0].lstrip("%"), []
    elif name is not None and line == "}":
      computations[name] = "\n".join(body)
      name = None
    elif name is not None:
      body.append(line)

  def runs_matmul(computation: str, seen: set) -> bool:
    if computation in seen or computation not in computations:
      return False
    seen.add(computation)
    code = computations[computation]
    return bool(_MATMUL.search(code)) or any(
      runs_matmul(c, seen) for c in re.findall(r"%([\w.\-]+)", code) if c in computations
    )

  loops = re.findall(r"\swhile\(.*?body=%?([\w.\-]+)", hlo_text)
  return any(runs_matmul(b, set()) for b in loops)


class _Collect(logging.Handler):
  def __init__(self):
    super().__init__(logging.WARNING)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


def backend_refusal(smoke: bool) -> str | None:
  """None when this run may go on; otherwise the one line that says why not."""
  # jax explains a CPU fallback (a CPU-only jaxlib, a CUDA plugin that failed) in log warnings of its own:
  # they go into the refusal, so stderr stays one line.
  log = logging.getLogger("jax._src.xla_bridge")
  collect, propagate = _Collect(), log.propagate
  log.addHandler(collect)
  log.propagate = False
  try:
    backend = jax.default_backend()
  except RuntimeError as e:
    return f"error: jax could not start a backend: {' '.join(str(e).split())}"
  finally:
    log.removeHandler(collect)
    log.propagate = propagate
  if backend == "gpu" or smoke:
    for message in collect.messages:
      print(message, file=sys.stderr)
    return None
  said = f" (jax: {' '.join(' '.join(collect.messages).split())})" if collect.messages else ""
  return (
    f"error: jax backend is '{backend}', not a GPU: this script measures a GPU; install jax[cuda] "
    f"(or run with --smoke on CPU to test the script){said}"
  )


# word2vec.c cuts text into sentences of at most 1000 words (text8 has no line breaks at all).
_SENTENCE_WORDS = 1000


def synthetic_token_data(config, vocab_size: int) -> text.TokenData:
  """A word2vec corpus of one batch: word ids drawn i.i.d. from a Zipf (1/rank) vocabulary whose counts, those
  of a 17.6M-word corpus (the `cpu` preset's), feed the subsampling and negative tables as a real one's would."""
  rng, b = np.random.default_rng(0), config.batch_size
  zipf = 1.0 / np.arange(1, vocab_size + 1)
  counts = np.maximum(np.round(17.6e6 * zipf / zipf.sum()), 5).astype(np.int64)  # min_count 5
  tokens = rng.choice(vocab_size, size=b, p=counts / counts.sum()).astype(np.int32)
  line_starts = np.arange(b) % _SENTENCE_WORDS == 0
  vocab = text.Vocab(words=tuple(f"w{i}" for i in range(vocab_size)), counts=counts)
  return text.TokenData(
    text.Corpus(vocab=vocab, tokens=tokens, line_starts=line_starts, raw_tokens=b, undecodable_lines=0)
  )


def synthetic_batch(config, image_shape, vocab_size: int = TEXT8_VOCAB) -> tuple[dict, int, object]:
  """A fixed batch of the config's shape, how many examples (images, tokens or words) it holds, and the
  `data` a method's init reads (None but for word2vec)."""
  rng, b = np.random.default_rng(0), config.batch_size
  if config.method == "bert":  # full-length pairs [CLS] A [SEP] B [SEP], as pre-training builds them
    t = config.data.max_len
    tokens = rng.integers(5, config.data.vocab_size, (b, t)).astype(np.int32)
    tokens[:, 0], tokens[:, t // 2], tokens[:, -1] = 2, 3, 3
    segments = (np.arange(t)[None, :] > t // 2).astype(np.int32).repeat(b, 0)
    return {"tokens": tokens, "segments": segments, "is_next": rng.integers(0, 2, b).astype(np.int32)}, b * t, None
  if config.method == "word2vec":
    data = synthetic_token_data(config, vocab_size)
    return data.batch(0, b), b, data
  images = rng.integers(0, 256, (b, *image_shape), np.uint8)
  if config.method == "clip":  # one full-length caption per image, [CLS] ... [SEP], as the data pipeline makes it
    t = config.data.max_caption_tokens
    tokens = rng.integers(5, config.data.vocab_size, (b, 1, t)).astype(np.int32)
    tokens[:, :, 0], tokens[:, :, -1] = 2, 3
    return {"image": images, "tokens": tokens, "num_captions": np.ones((b,), np.int32)}, b, None
  return {"image": images, "label": np.zeros((b,), np.int32)}, b, None


def measure(config, *, image_shape, steps: int, warmup: int = 3, vocab_size: int = TEXT8_VOCAB) -> dict:
  """Compiles the train step, runs `warmup` then `steps` steps on the synthetic batch; the figures, on any
  backend (the GPU check is main's)."""
  method = methods.get_method(config.method)
  mesh = sharding.make_mesh()
  repl = sharding.replicated(mesh)
  tx, schedule = optim.make_optimizer(
    config.optim, batch_size=config.batch_size, total_steps=10_000, steps_per_epoch=100
  )
  batch_np, examples, data = synthetic_batch(config, image_shape, vocab_size)

  def init(rng):
    params, state = method.init(config, rng, jax.tree.map(jnp.asarray, batch_np), data=data)
    return train.TrainState(
      step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), method_state=state, rng=rng
    )

  state = jax.jit(init, out_shardings=repl)(jax.random.PRNGKey(0))
  batch = sharding.global_batch(batch_np, mesh)
  step_fn = jax.jit(
    train.make_train_step(method, config, tx, schedule),
    donate_argnums=0,
    in_shardings=(repl, sharding.batch_sharded(mesh)),
    out_shardings=(repl, repl),
  )
  t0 = time.perf_counter()
  with jax.set_mesh(mesh):  # a method's shard_map (word2vec's) finds the mesh here, as in train.py
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

  device = jax.devices()[0]
  precision = matmul_precision(
    config.get("model", {}).get("dtype", "float32"),
    default_matmul_precision=jax.config.jax_default_matmul_precision,
    tf32_override=os.environ.get("NVIDIA_TF32_OVERRIDE"),
  )
  peak = peak_flops(device.device_kind, precision)
  mfu = model_flops_utilization(flops, step_s, peak)
  if loop_hides_matmuls(compiled.as_text()):
    mfu, peak = (
      None,
      Peak(
        peak.flops,
        "the step runs matmuls in a while loop, whose body XLA's cost analysis "
        "counts once (its FLOPs are a lower bound)",
      ),
    )
  elif not flops:
    peak = Peak(peak.flops, "XLA's cost analysis gave no FLOP count")
  out = {
    "device": device.device_kind,
    "devices": mesh.size,
    "batch": config.batch_size,
    "step_ms": 1e3 * step_s,
    "examples_per_s": examples / step_s,
    "compile_s": compile_s,
    "tflops_per_step": flops * mesh.size / 1e12 if flops else None,
    "precision": precision,
    "peak_note": peak.note,
    "mfu": mfu,
  }
  if "kept_fraction" in metrics:
    out["kept_fraction"] = float(metrics["kept_fraction"])
  return out


def report(spec: str, config, r: dict, *, smoke: bool, steps: int) -> list[str]:
  """The figure lines; the last one, `summary: ...`, is what benchmarks/gpu_all.sh collects."""
  unit = {"bert": "tokens", "word2vec": "words"}.get(config.method, "images")
  flops = f"{r['tflops_per_step']:.4g} TFLOP/step (XLA cost analysis)" if r["tflops_per_step"] else "FLOPs n/a"
  rate = f"{unit}/s {r['examples_per_s']:.0f}"
  if "kept_fraction" in r:  # word2vec trains on what subsampling of frequent words keeps
    rate += f" raw, {r['kept_fraction'] * r['examples_per_s']:.0f} effective (kept {r['kept_fraction']:.2f})"
  if r["mfu"] is not None:
    mfu = f"MFU {100 * r['mfu']:.1f}% of {r['peak_note']}"
    mfu_short = f"MFU {100 * r['mfu']:.1f}% ({r['precision']})"
  else:
    mfu, mfu_short = f"MFU n/a: {r['peak_note']}", "MFU n/a"
  where = f"{r['devices']}x {r['device']}"
  lines = [
    f"{spec} on {where}: batch {r['batch']}, {r['step_ms']:.1f} ms/step over {steps} steps, "
    f"compile {r['compile_s']:.0f} s, {flops}",
    f"{rate} | matmuls in {r['precision']} | {mfu}",
  ]
  summary = f"{config.method} | {where} | {rate} | {r['step_ms']:.1f} ms/step"
  if not smoke:
    return lines + [f"summary: {summary} | {mfu_short}"]
  return (
    [
      f"SMOKE RUN: {steps} steps of a tiny config on {where}; these figures check the script, they are "
      "not a GPU measurement"
    ]
    + [f"smoke: {line}" for line in lines]
    + [f"summary: SMOKE, not a GPU figure | {summary}"]
  )


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default="configs/simclr.py:cifar10")
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--image-shape", default="32,32,3", help="H,W,C of the raw uint8 images")
  parser.add_argument(
    "--vocab-size",
    type=int,
    default=TEXT8_VOCAB,
    help="words in word2vec's synthetic vocabulary (default: text8's at min_count 5)",
  )
  parser.add_argument(
    "--smoke",
    action="store_true",
    help=f"{SMOKE_STEPS} steps on any backend, labelled as a smoke run: tests the script",
  )
  args, rest = parser.parse_known_args(argv)
  refusal = backend_refusal(args.smoke)  # before anything is built or timed
  if refusal:
    print(refusal, file=sys.stderr)
    return REFUSAL_EXIT
  unknown = [r for r in rest if not r.startswith("--config.")]
  if unknown:
    print(f"error: unrecognised argument {unknown[0]} (overrides look like --config.KEY=VALUE)", file=sys.stderr)
    return 2
  try:
    config = config_lib.get_config(args.config, [r[len("--config.") :] for r in rest])
  except config_lib.ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  steps, warmup = (SMOKE_STEPS, SMOKE_WARMUP) if args.smoke else (args.steps, args.warmup)
  shape = tuple(int(s) for s in args.image_shape.split(","))
  r = measure(config, image_shape=shape, steps=steps, warmup=warmup, vocab_size=args.vocab_size)
  for line in report(args.config, config, r, smoke=args.smoke, steps=steps):
    print(line)
  return 0


if __name__ == "__main__":
  sys.exit(main())
