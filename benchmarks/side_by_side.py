"""The driver the side-by-side step benchmarks share (image_step_vs_pytorch.py, moco_vs_pytorch.py,
clip_vs_open_clip.py): each side runs in its own fresh process, pinned to the same cores, from the same weights
(an .npz file ours writes and the peer reads), and the step-0 losses of the two must agree.

Pinning each side to `--threads` cores with os.sched_setaffinity (from which XLA sizes its thread pool; the peer
sets torch.set_num_threads as well) keeps the two frameworks' pools from ever competing, and a fresh process per
side keeps one side's compile caches and allocator out of the other's timing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE = 1e-5


def load_config(s: dict):
  """The setting's config ('path.py:preset'), its batch size overridden when the setting names one."""
  sys.path.insert(0, ROOT)
  from ssljax import config as config_lib

  path, _, preset = s["config"].partition(":")
  config = config_lib.get_config(f"{os.path.join(ROOT, path)}:{preset}", [])
  if s.get("batch"):
    config.batch_size = s["batch"]
  return config


def random_images(s: dict, config):
  """The raw batch the one augmented batch is made from: uniform [0, 1) pixels at the preset's image size."""
  import numpy as np

  size = config.data.image_size
  return np.random.default_rng(0).random((config.batch_size, size, size, s["channels"]), dtype=np.float32)


def time_steps(step, warmup: int, steps: int) -> dict:
  """Runs `step` (which returns the loss as a float, so waits for it) warmup + steps times; times the last steps."""
  losses, times = [], []
  for i in range(warmup + steps):
    t0 = time.perf_counter()
    losses.append(step())
    if i >= warmup:
      times.append(time.perf_counter() - t0)
  return {"times": times, "losses": losses}


@contextlib.contextmanager
def swapped(module, replacements: dict):
  """Module attributes replaced for the duration (while ours is traced); yields the set of names that were called,
  so a loss that stops calling a swapped augmentation is an error rather than a silently timed augmentation."""
  missing = [name for name in replacements if not hasattr(module, name)]
  if missing:
    raise SystemExit(f"{module.__name__} has no {', '.join(missing)}: this benchmark's swaps are out of date")
  called, saved = set(), {name: getattr(module, name) for name in replacements}

  def recording(name, fn):
    def wrapper(*args, **kwargs):
      called.add(name)
      return fn(*args, **kwargs)

    return wrapper

  for name, fn in replacements.items():
    setattr(module, name, recording(name, fn))
  try:
    yield called
  finally:
    for name, fn in saved.items():
      setattr(module, name, fn)


def time_ours(args, module, swaps, config, tx, params, state, batch, inputs: dict) -> dict:
  """Ours, timed: one jitted step of `module.loss_fn` (value_and_grad) and `tx`, with the functions `swaps(inputs)`
  names in place in `module` while the step is traced, so that both sides train on the fixed `inputs` every step;
  params, method state and optimizer state donated; the step count an argument, as in train.py. A loss that no
  longer calls every swapped function is refused: the step would time augmentation."""
  import jax
  import jax.numpy as jnp
  import optax

  rng = jax.random.PRNGKey(2)  # what loss_fn would hand its (swapped) augmentation
  called = set()

  def loss(params, state, batch, inputs, step):
    with swapped(module, swaps(inputs)) as calls:
      value, (_, new_state) = module.loss_fn(params, state, batch, rng, config, step)
    called.update(calls)
    return value, new_state

  def train_step(params, state, opt_state, batch, inputs, step):
    (value, state), grads = jax.value_and_grad(loss, has_aux=True)(params, state, batch, inputs, step)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), state, opt_state, value

  opt_state = tx.init(params)
  t0 = time.perf_counter()
  lowered = jax.jit(train_step, donate_argnums=(0, 1, 2)).lower(params, state, opt_state, batch, inputs, jnp.int32(0))
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t0
  if called != set(swaps(inputs)):
    raise SystemExit(
      f"{module.__name__}.loss_fn no longer calls {', '.join(sorted(set(swaps(inputs)) - called))}: the step would "
      "time augmentation; update this benchmark's swaps"
    )
  live = {"params": params, "state": state, "opt_state": opt_state, "step": 0}

  def step():
    live["params"], live["state"], live["opt_state"], value = compiled(
      live["params"], live["state"], live["opt_state"], batch, inputs, jnp.int32(live["step"])
    )
    live["step"] += 1
    return float(value)  # waits for the step

  return {
    **time_steps(step, args.warmup, args.steps),
    "compile_s": compile_s,
    "batch": config.batch_size,
    "params": sum(x.size for x in jax.tree.leaves(params)),
    "version": f"jax {jax.__version__} ({jax.devices()[0].platform})",
  }


def agreement(ours: float, peer: float) -> tuple[float, float, str]:
  """(|diff|, its bound, 'abs' or 'rel'): within 1e-5 absolute up to a loss of 1, relative above."""
  diff = abs(ours - peer)
  return diff, TOLERANCE * max(1.0, abs(ours)), "abs" if abs(ours) <= 1.0 else "rel"


def parser(doc: str, sides, *, steps: int = 20) -> argparse.ArgumentParser:
  """The options every side-by-side script takes; --child, --child-setting and --npz start one side."""
  p = argparse.ArgumentParser(description=doc.split("\n")[0])
  p.add_argument("--steps", type=int, default=steps, help="timed steps of each side; the median is reported")
  p.add_argument("--warmup", type=int, default=3, help="untimed steps of each side (ours: after compiling)")
  p.add_argument("--threads", type=int, default=2, help="cores (and torch threads) each side gets")
  p.add_argument("--batch", type=int, help="batch size of every setting (quick checks; not the benchmark)")
  p.add_argument("--child", choices=sides, help=argparse.SUPPRESS)
  p.add_argument("--child-setting", help=argparse.SUPPRESS)
  p.add_argument("--npz", help=argparse.SUPPRESS)
  return p


def run_child(args, runners: dict) -> None:
  """In a side's own process: pinned to --threads cores, runs runners[side](setting, args, npz), prints its JSON."""
  os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
  print(json.dumps(runners[args.child](json.loads(args.child_setting), args, args.npz)))


def run_side(script: str, side: str, s: dict, npz: str, args, *extra: str) -> dict:
  """One side in a fresh process of `script`; its JSON with the median step time added."""
  cmd = [sys.executable, os.path.abspath(script), "--child", side, "--child-setting", json.dumps(s), "--npz", npz]
  cmd += ["--warmup", str(args.warmup), "--steps", str(args.steps), "--threads", str(args.threads), *extra]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
  if proc.returncode:
    raise SystemExit(f"the {side} process failed:\n{proc.stderr[-3000:]}")
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  return {**out, "median_ms": 1e3 * statistics.median(out["times"])}


def start(args, peer_module: str, install: str, what: str) -> None:
  """Refuses a missing peer or too few steps (one line), then prints the header: cores, load, what is timed."""
  if importlib.util.find_spec(peer_module) is None:
    raise SystemExit(f"the peer needs {peer_module}: {install}")
  if args.steps < 1 or args.warmup < 0 or args.warmup + args.steps < 2:
    raise SystemExit("need --steps >= 1 and at least 2 steps in all, for the step-0 and step-1 losses")
  threads = min(args.threads, len(os.sched_getaffinity(0)))
  print(
    f"{os.cpu_count()} cores, {threads} per side, load average {os.getloadavg()[0]:.1f}; {what}; {args.warmup} "
    f"warm-up + {args.steps} timed steps (median), each side in a fresh process"
    f"{'; BATCH OVERRIDDEN: not the benchmark' if args.batch else ''}",
    flush=True,
  )


def against_torch_layouts(script: str, args, settings: dict, *extra: str) -> None:
  """Per setting: ours, torch contiguous and torch channels_last (sides 'ours', 'torch', 'torch_cl'), the shapes,
  ms/step and images/s, the step-0 and step-1 losses; last the ratios torch ms / ours ms, then a non-zero exit
  when a step-0 loss disagrees."""
  results, failures, versions = {}, [], {}
  for name in args.settings:
    s = dict(settings[name], **({"batch": args.batch} if args.batch else {}))
    with tempfile.TemporaryDirectory() as tmp:
      npz = os.path.join(tmp, "ours.npz")
      r = results[name] = {side: run_side(script, side, s, npz, args, *extra) for side in ("ours", "torch", "torch_cl")}
    o = r["ours"]
    versions.update(ours=o["version"], torch=r["torch"]["version"])
    shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in o["inputs"].items())
    optimizer = f"; {o['optimizer']}" if "optimizer" in o else ""
    print(
      f"{name}: {s['config']}, batch {o['batch']}: {shapes}; {o['params']:,} params{optimizer}; compiled in "
      f"{o['compile_s']:.1f} s",
      flush=True,
    )
    checks = []
    for side, label in (("torch", "torch"), ("torch_cl", "channels_last")):
      diff, bound, kind = agreement(o["losses"][0], r[side]["losses"][0])
      diff1, _, _ = agreement(o["losses"][1], r[side]["losses"][1])
      checks.append(f"{label} {r[side]['losses'][0]:.6f} |diff| {diff:.1e} ({kind}), step 1 |diff| {diff1:.1e}")
      if diff > bound:
        failures.append(f"{name} {label} |diff| {diff:.1e} > {bound:.1e} ({kind})")
    rate = lambda side: f"{r[side]['median_ms']:8.1f} ms ({1e3 * o['batch'] / r[side]['median_ms']:7.1f} images/s)"
    print(
      f"  ours {rate('ours')} | torch {rate('torch')} | torch channels_last {rate('torch_cl')}\n"
      f"  step-0 loss ours {o['losses'][0]:.6f}, " + "; ".join(checks),
      flush=True,
    )
  print(f"{versions['ours']} against {versions['torch']}")
  print("ratio torch ms / ours ms (> 1: ours faster), contiguous | channels_last:")
  for name, r in results.items():
    ours = r["ours"]["median_ms"]
    print(f"  {name:18s} {r['torch']['median_ms'] / ours:5.2f}x | {r['torch_cl']['median_ms'] / ours:5.2f}x")
  if failures:
    raise SystemExit(f"step-0 losses disagree beyond {TOLERANCE:g}: " + "; ".join(failures))
