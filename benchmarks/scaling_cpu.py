"""What collectives cost: the SimCLR `cpu` preset's train step on 1, 2 and 4 fake CPU devices in one process and
on 2 processes (jax.distributed on 127.0.0.1, gloo between them), with the share of the step an all-reduce of the
gradients takes, and the per-step cost of agreeing on preemption (an all-gather of a flag, as ssljax did before,
against JAX's preemption sync point, as it does now).

  python benchmarks/scaling_cpu.py [--steps 8] [--config configs/simclr.py:cpu]

Not a speed claim: every setting shares the same 2 cores, so more devices only split the same compute. What it
shows is the collectives' share, which on a pod is the part that does not shrink with more chips. Each setting
runs in its own processes, one setting at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SETTINGS = (
  ("1 process x 1 device", 1, 1),
  ("1 process x 2 devices", 1, 2),
  ("1 process x 4 devices", 1, 4),
  ("2 processes x 1 device", 2, 1),
  ("2 processes x 2 devices", 2, 2),
)


def _timed(fn, repeats: int) -> float:
  import jax

  jax.block_until_ready(fn())  # compiled and warm
  t0 = time.perf_counter()
  for _ in range(repeats):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - t0) / repeats


def worker(config_spec: str, steps: int) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np

  from ssljax import config as config_lib
  from ssljax import methods, optim, sharding, train

  sharding.initialize_distributed()
  config = config_lib.get_config(config_spec, [])
  method = methods.get_method(config.method)
  mesh = sharding.make_mesh()
  repl = sharding.replicated(mesh)
  data = method.load_train_data(config)
  tx, schedule = optim.make_optimizer(
    config.optim,
    batch_size=config.batch_size,
    total_steps=1000,
    steps_per_epoch=data.steps_per_epoch(config.batch_size),
  )
  example = jax.tree.map(jnp.asarray, data.example_batch(config.batch_size))

  def init(rng):
    params, state = method.init(config, rng, example, data=data)
    return train.TrainState(
      step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), method_state=state, rng=rng
    )

  state = jax.jit(init, out_shardings=repl)(jax.random.PRNGKey(0))
  stream = data.stream(
    batch_size=config.batch_size,
    seed=0,
    start_step=0,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  step = jax.jit(
    train.make_train_step(method, config, tx, schedule),
    donate_argnums=0,
    in_shardings=(repl, sharding.batch_sharded(mesh)),
    out_shardings=(repl, repl),
  )
  batches = [sharding.global_batch(next(stream), mesh) for _ in range(steps + 2)]
  for batch in batches[:2]:  # compile, warm
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  t0 = time.perf_counter()
  for batch in batches[2:]:
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  step_s = (time.perf_counter() - t0) / steps

  # The gradient all-reduce of a data-parallel step: one float32 row of the params' size per device, summed.
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  rows = jax.make_array_from_callback(
    (mesh.size, num_params), sharding.batch_sharded(mesh), lambda index: np.ones((1, num_params), np.float32)
  )
  all_reduce = jax.jit(lambda x: x.sum(0), out_shardings=repl)
  all_reduce_s = _timed(lambda: all_reduce(rows), 10) if mesh.size > 1 else 0.0

  out = {
    "step_ms": 1e3 * step_s,
    "all_reduce_ms": 1e3 * all_reduce_s,
    "params": num_params,
    "devices": mesh.size,
    "processes": jax.process_count(),
    "batch": config.batch_size,
  }
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    flag = np.array(False)
    gather_s = _timed(lambda: multihost_utils.process_allgather(flag), 20)
    t0 = time.perf_counter()
    for i in range(10_000):
      multihost_utils.reached_preemption_sync_point(i)
    out["preempt_allgather_ms"] = 1e3 * gather_s
    out["preempt_sync_point_us"] = 1e6 * (time.perf_counter() - t0) / 10_000
  return out


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_setting(processes: int, devices: int, config_spec: str, steps: int) -> dict:
  port = _free_port()
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", TF_CPP_MIN_LOG_LEVEL="3")
  procs = []
  for i in range(processes):
    process_env = dict(env)
    if processes > 1:
      process_env.update(
        SSLJAX_COORDINATOR=f"127.0.0.1:{port}", SSLJAX_NUM_PROCESSES=str(processes), SSLJAX_PROCESS_ID=str(i)
      )
    procs.append(
      subprocess.Popen(
        [sys.executable, __file__, "--worker", "--config", config_spec, "--steps", str(steps)],
        env=process_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
      )
    )
  outs = [p.communicate() for p in procs]
  for p, (_, err) in zip(procs, outs):
    if p.returncode:
      raise SystemExit(f"error: a worker failed ({p.returncode}): {err.strip().splitlines()[-1:]}")
  return json.loads(outs[0][0].strip().splitlines()[-1])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default="configs/simclr.py:cpu")
  parser.add_argument("--steps", type=int, default=8)
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    print(json.dumps(worker(args.config, args.steps)), flush=True)
    return 0
  print(f"{args.config}, {args.steps} timed steps per setting, on {os.cpu_count()} CPU cores shared by all devices")
  print(
    f"{'setting':<26}{'step ms':>10}{'all-reduce ms':>15}{'share':>8}{'flag all-gather ms':>20}{'sync point us':>15}"
  )
  results = {}
  for name, processes, devices in SETTINGS:
    r = results[name] = run_setting(processes, devices, args.config, args.steps)
    share = r["all_reduce_ms"] / r["step_ms"]
    gather = f"{r['preempt_allgather_ms']:.3f}" if "preempt_allgather_ms" in r else "-"
    sync = f"{r['preempt_sync_point_us']:.2f}" if "preempt_sync_point_us" in r else "-"
    print(f"{name:<26}{r['step_ms']:>10.1f}{r['all_reduce_ms']:>15.2f}{share:>8.1%}{gather:>20}{sync:>15}", flush=True)
  two = results["2 processes x 2 devices"]
  print(
    f"params {two['params']:,}, batch {two['batch']}; preemption check per step: all-gather "
    f"{two['preempt_allgather_ms']:.3f} ms before, sync point {two['preempt_sync_point_us']:.2f} us now"
  )
  ratio = two["step_ms"] / results["1 process x 4 devices"]["step_ms"]
  print(f"step time, 2 processes x 2 devices / 1 process x 4 devices: {ratio:.2f}x")
  return 0


if __name__ == "__main__":
  sys.exit(main())
