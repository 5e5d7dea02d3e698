"""The one training loop: `train_and_evaluate(config, workdir)`, used by every method.

It builds the mesh, streams global batches, jits `value_and_grad(method.loss_fn)` with donated state,
applies the optax update, writes metrics, saves and resumes Orbax checkpoints, and runs the evals at the end.
It knows nothing about any one method: `ssljax.methods` maps `config.method` to the module.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import time
import uuid
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssljax import config as config_lib
from ssljax import methods, optim, preemption, sharding, storage
from ssljax import metrics as metrics_lib
from ssljax.checkpoint import Checkpointer


class TrainingError(RuntimeError):
  """A run that cannot go on; the message is one line for the user."""


class Preempted(RuntimeError):
  """SIGTERM arrived; every process saved a checkpoint of the same step."""


# Seconds a run may take, after SIGTERM, to reach the agreed step and save it before the watchdog ends it.
PREEMPTION_GRACE_S = float(os.environ.get("SSLJAX_PREEMPTION_GRACE_S", "120"))
# Seconds a process waits to see the file that process 0 wrote into the workdir.
SHARED_WORKDIR_TIMEOUT_S = 30.0


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  method_state: Any  # non-trained state of the method: batch stats, queues, EMA targets
  rng: jax.Array


def params_sha256(params) -> str:
  """sha256 over every leaf's path, dtype, shape and bytes, in sorted path order: equal hashes, equal params."""
  h = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(sharding.to_host(params))[0]
  for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
    leaf = np.ascontiguousarray(leaf)
    h.update(f"{jax.tree_util.keystr(path)}|{leaf.dtype}|{leaf.shape}|".encode())
    h.update(leaf.tobytes())
  return h.hexdigest()


def make_train_step(method: methods.Method, config, tx: optax.GradientTransformation, schedule):
  """The pure update: one global batch in, the next state and this step's metrics out.

  By default the step is `value_and_grad(method.loss_fn)` and the optax update; a method whose update is not a
  dense gradient step gives `update` instead (see `ssljax.methods.base`).
  """

  def train_step(state: TrainState, batch):
    rng = jax.random.fold_in(state.rng, state.step)  # the step decides the randomness, so resume is exact
    learning_rate = schedule(state.step)
    if method.update is not None:
      params, method_state, metrics = method.update(
        state.params, state.method_state, batch, rng, learning_rate, config, state.step
      )
      opt_state, loss, grad_norm = state.opt_state, metrics.pop("loss"), metrics.pop("grad_norm")
    else:
      grad_fn = jax.value_and_grad(functools.partial(method.loss_fn, config=config, step=state.step), has_aux=True)
      (loss, (metrics, method_state)), grads = grad_fn(state.params, state.method_state, batch, rng)
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      grad_norm = optax.tree.norm(grads)
    metrics = dict(
      metrics,
      loss=loss,
      grad_norm=grad_norm,
      learning_rate=learning_rate,
      finite=jnp.isfinite(loss) & jnp.isfinite(grad_norm),
    )
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, method_state=method_state)
    return new_state, metrics

  return train_step


def _check_workdir(workdir, config) -> None:
  """Refuses a workdir that is not a directory, or that holds a run of another config; writes nothing."""
  if workdir.exists() and not workdir.is_dir():
    raise config_lib.ConfigError(f"--workdir {workdir} is a file, not a directory")
  path = workdir / "config.json"
  if path.exists():
    try:
      previous = json.loads(path.read_text())
    except ValueError:
      raise config_lib.ConfigError(f"{path} is not JSON: not a workdir of ssljax, or damaged") from None
    current = config_lib.to_dict(config)
    if config_lib.fingerprint(previous) != config_lib.fingerprint(current):
      changed = config_lib.config_diff(previous, current)
      raise config_lib.ConfigError(
        f"workdir {workdir} holds a run of a different config (changed: "
        f"{', '.join(changed)}); use a new --workdir or the original config"
      )


def _start_from(state: TrainState, source: str) -> TrainState:
  """`state` with the encoder of `source`'s newest checkpoint: params['encoder'] and, when both have them, the
  BatchNorm statistics at method_state['batch_stats']['encoder']. Everything else starts as initialised."""
  from ssljax import runs

  other = runs.load(source)

  def encoder_of(tree, where):
    if not isinstance(tree, dict) or "encoder" not in tree:
      raise config_lib.ConfigError(f"init_from={source}: {where} holds no 'encoder' to start from")
    return tree["encoder"]

  def take(mine, theirs, where):
    mine_leaves = jax.tree_util.tree_flatten_with_path(mine)[0]
    theirs_leaves = dict((jax.tree_util.keystr(p), x) for p, x in jax.tree_util.tree_flatten_with_path(theirs)[0])
    for path, leaf in mine_leaves:
      other_leaf = theirs_leaves.get(jax.tree_util.keystr(path))
      if other_leaf is None or other_leaf.shape != leaf.shape:
        found = "missing" if other_leaf is None else f"shape {other_leaf.shape}"
        raise config_lib.ConfigError(
          f"init_from={source}: {where}{jax.tree_util.keystr(path)} has shape {leaf.shape} here, {found} there"
        )
    return jax.tree_util.tree_map_with_path(
      lambda path, leaf: theirs_leaves[jax.tree_util.keystr(path)].astype(leaf.dtype), mine
    )

  params = dict(state.params)
  params["encoder"] = take(encoder_of(state.params, "params"), encoder_of(other.params, "its params"), "encoder")
  method_state = state.method_state
  stats, their_stats = method_state.get("batch_stats", {}), other.method_state.get("batch_stats", {})
  if "encoder" in stats and "encoder" in their_stats:
    method_state = dict(
      method_state, batch_stats=dict(stats, encoder=take(stats["encoder"], their_stats["encoder"], "batch_stats"))
    )
  print(f"encoder from step {other.step} of {source}", flush=True)
  return state.replace(params=params, method_state=method_state)


def _write_run_files(workdir, config, example_batch) -> None:
  """config.json (what the run is) and inputs.json (what one example is, for `ssljax.load(...).embed`), once the
  config and the data have passed every check."""
  workdir.mkdir(parents=True, exist_ok=True)
  if not (workdir / "config.json").exists():
    storage.write_json_atomic(workdir / "config.json", config_lib.to_dict(config))
  spec = jax.tree.map(lambda x: {"shape": list(np.shape(x)[1:]), "dtype": str(np.asarray(x).dtype)}, example_batch)
  storage.write_json_atomic(workdir / "inputs.json", spec)


def _check_shared_workdir(workdir) -> None:
  """Every process must see the workdir process 0 writes (Orbax's collective saves hang otherwise): process 0
  writes a token file there, and each process looks for it."""
  if jax.process_count() == 1:
    return
  from jax.experimental import multihost_utils

  token = int(multihost_utils.broadcast_one_to_all(np.int64(uuid.uuid4().int % 2**62)))
  marker = workdir / f".ssljax-process-check-{token:x}"
  if jax.process_index() == 0:
    marker.write_text("written by process 0; removed once every process has seen it\n")
  deadline = time.monotonic() + SHARED_WORKDIR_TIMEOUT_S
  while not (seen := marker.exists()) and time.monotonic() < deadline:
    time.sleep(0.5)
  seen_by = multihost_utils.process_allgather(np.array(seen))
  if jax.process_index() == 0:
    marker.unlink()
  if not seen_by.all():
    blind = [int(p) for p in np.flatnonzero(~seen_by)]
    raise sharding.DistributedError(
      f"processes {blind} of {jax.process_count()} do not see the workdir {workdir} that process 0 writes "
      "(checked for 30 s): every process needs the same workdir, on a shared filesystem or gs://"
    )


def _total_steps(config, steps_per_epoch: int) -> int:
  total = config.total_steps if config.total_steps > 0 else config.epochs * steps_per_epoch
  if total <= 0:
    raise config_lib.ConfigError("set total_steps or epochs to a positive number")
  return int(total)


def _check_finite(pending: list, last_good: int | None, checkpoint_dir: str) -> list[dict]:
  """Fetches the metrics of the steps run since the last check; raises at the first non-finite one."""
  fetched = jax.device_get(pending)
  for step, m in fetched:
    if not bool(m["finite"]):
      where = (
        f"the last good checkpoint is step {last_good} in {checkpoint_dir}"
        if last_good is not None
        else "no checkpoint was saved before it"
      )
      raise TrainingError(
        f"non-finite loss or gradients at step {step} (loss={float(m['loss']):.4g}, "
        f"grad_norm={float(m['grad_norm']):.4g}); {where}; "
        "lower optim.learning_rate or set optim.grad_clip_norm"
      )
  return [m for _, m in fetched]


def _release_free_memory() -> None:
  """Hands the heap that compiling freed back to the OS (glibc keeps it otherwise: ~150 MiB for word2vec)."""
  try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
  except (OSError, AttributeError):  # not glibc
    pass


def _last_logged_loss(workdir) -> float:
  """The loss last written to metrics.jsonl: the final loss of a run resumed at its last step."""
  try:
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return float(lines[-1]["loss"])
  except (OSError, ValueError, KeyError, IndexError):
    return float("nan")


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config.method` in `workdir` (resuming from its checkpoint if any) and runs the evals.

  Returns the eval results (also written to `workdir/eval.json`); `workdir/summary.json` gets the run's
  steps, final loss, wall time and the sha256 of the final params.
  """
  t_start = time.perf_counter()
  workdir = storage.path(workdir)
  method = methods.get_method(config.method)
  is_main = jax.process_index() == 0
  mesh = sharding.make_mesh()

  # Everything that can be checked is checked before anything is written: a corrected rerun in the same workdir
  # is then welcome. Every process checks; `agree` turns one process's error into every process's.
  def check():
    config_lib.check_common(config)
    optim.check_config(config.optim)
    method.check_config(config)
    sharding.check_batch_size(config.batch_size, mesh)
    _check_workdir(workdir, config)
    if config.get("init_from", ""):
      from ssljax import runs

      runs.config_of(config.init_from, with_checkpoint=True)

  sharding.agree(check, "checking the config")
  if jax.process_count() > 1:
    sharding.agree(lambda: is_main and workdir.mkdir(parents=True, exist_ok=True), "creating the workdir")
    _check_shared_workdir(workdir)
  train_data = method.load_train_data(config, workdir=os.fspath(workdir))  # opens the eval data too
  steps_per_epoch = train_data.steps_per_epoch(config.batch_size)
  total_steps = _total_steps(config, steps_per_epoch)
  tx, schedule = optim.make_optimizer(
    config.optim, batch_size=config.batch_size, total_steps=total_steps, steps_per_epoch=steps_per_epoch
  )
  example_np = train_data.example_batch(config.batch_size)
  sharding.agree(lambda: is_main and _write_run_files(workdir, config, example_np), "writing config.json")

  # Shapes only: init runs under jit straight into replicated buffers, so nothing is copied to the mesh.
  example = jax.tree.map(jnp.asarray, example_np)
  repl = sharding.replicated(mesh)

  def init_state(rng):
    init_rng, train_rng = jax.random.split(rng)
    params, method_state = method.init(config, init_rng, example, data=train_data)
    return TrainState(
      step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), method_state=method_state, rng=train_rng
    )

  init_fn = jax.jit(init_state, out_shardings=repl)
  state = init_fn(jax.random.PRNGKey(config.seed))

  checkpointer = Checkpointer(workdir, keep=config.keep_checkpoints, fingerprint=config_lib.fingerprint(config))
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
  found = checkpointer.restore_latest(lambda step: target)  # an unreadable newest one is skipped, in one line
  start_step = 0
  if found is not None:
    start_step, state = found
    print(f"resumed from step {start_step} of {total_steps} in {checkpointer.directory}", flush=True)
  elif config.get("init_from", ""):
    state = _start_from(state, config.init_from)

  train_step = jax.jit(
    make_train_step(method, config, tx, schedule),
    donate_argnums=0,
    in_shardings=(repl, sharding.batch_sharded(mesh)),
    out_shardings=(repl, repl),
  )
  writer = metrics_lib.MetricWriter(workdir, enabled=is_main)
  # A row of a language model's batch is many tokens: throughput counts what the method's unit names.
  per_row = method.units_per_example(config)
  progress = metrics_lib.Progress(
    total_steps=total_steps,
    batch_size=config.batch_size * per_row,
    num_devices=mesh.size,
    start_step=start_step,
    unit=method.example_unit,
  )
  stream = train_data.stream(
    batch_size=config.batch_size,
    seed=config.seed,
    start_step=start_step,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )

  pending, last_good, compiled, flops, examples_per_sec = [], start_step or None, None, None, 0.0
  final_loss = _last_logged_loss(workdir)
  step = start_step
  try:
    with preemption.Preemption(PREEMPTION_GRACE_S) as preempt:
      while step < total_steps:
        batch = sharding.global_batch(next(stream), mesh)
        if compiled is None:
          with jax.set_mesh(mesh):  # a method's shard_map finds the mesh here
            compiled = train_step.lower(state, batch).compile()
          _release_free_memory()
          flops = (compiled.cost_analysis() or {}).get("flops")
        state, step_metrics = compiled(state, batch)
        if pending:
          # At most two steps in flight. A multi-device CPU step blocks a host thread per device in each
          # collective; with many queued steps, threads held by different steps wait for each other forever.
          jax.block_until_ready(pending[-1][1])
        step += 1
        pending.append((step, step_metrics))
        if step == start_step + 1:
          progress.start(step)
        save_now = step % config.checkpoint_every == 0 or step == total_steps
        stop_now = preempt.stop_after(step)
        if save_now or stop_now or step % config.log_every == 0:
          fetched = _check_finite(pending, last_good, checkpointer.directory)
          pending = []
          means = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[-1] if k != "finite"}
          final_loss = float(fetched[-1]["loss"])
          # Measured once this step's results are in and before its checkpoint: training throughput only.
          # The clock starts at the first step's end, so the first row has no rate: none is written, not 0.
          rate = progress.examples_per_sec(step)
          if rate > 0:
            means["examples_per_sec"] = examples_per_sec = rate
          writer.write_scalars(step, means)
          progress.print(step, means)
        if save_now or stop_now:
          checkpointer.save(step, state, force=stop_now)
          last_good = step
        if stop_now:
          checkpointer.wait()
          raise Preempted(
            f"SIGTERM: every process saved step {step} in {checkpointer.directory}; "
            "run the same command again to resume"
          )
    checkpointer.wait()
    train_s = time.perf_counter() - t_start
    train_peak_rss_mib = metrics_lib.peak_rss_mib()  # before the evals' own
    context = methods.EvalContext(
      config=config,
      workdir=os.fspath(workdir),
      mesh=mesh,
      method=method,
      params=state.params,
      method_state=state.method_state,
      train_data=train_data,
      step=step,
      writer=writer,
      initial_state=lambda: init_fn(jax.random.PRNGKey(config.seed)),
    )
    results = method.evaluate(context)
    writer.write_scalars(step, {f"eval/{k}": v for k, v in results.items()}, jsonl=False)
  finally:
    writer.close()
    checkpointer.close()

  summary = {
    "steps": int(step),
    "total_steps": total_steps,
    "resumed_from": start_step,
    "final_loss": final_loss,
    "wall_s": time.perf_counter() - t_start,
    "train_wall_s": train_s,
    "train_peak_rss_mib": train_peak_rss_mib,
    "peak_rss_mib": metrics_lib.peak_rss_mib(),
    "examples_per_sec": examples_per_sec,
    "num_devices": mesh.size,
    "flops_per_step": flops,
    "params_sha256": params_sha256(state.params),
    **context.summary,
  }
  if is_main:
    storage.write_json_atomic(workdir / "eval.json", results)
    storage.write_json_atomic(workdir / "summary.json", summary)
  return {"eval": results, "summary": summary}
