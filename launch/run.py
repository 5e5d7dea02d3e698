#!/usr/bin/env python
"""The one entry point: train and evaluate a method locally, on a Cloud TPU slice, or on a SLURM cluster.

  python launch/run.py --config configs/simclr.py:cpu --workdir workdirs/simclr [--config.KEY=VALUE ...]
  python launch/run.py --config configs/simclr.py:imagenet --workdir gs://bucket/runs/simclr --target tpu \
      --tpu-name my-pod --zone us-central2-b --accelerator-type v4-32 [--queued] [--provisioning spot] [--dry-run]
  python launch/run.py --target tpu --tpu-name my-pod --zone us-central2-b --delete
  python launch/run.py --config configs/simclr.py:cifar10 --workdir /shared/runs/c10 --target slurm --nodes 2 \
      --gpus-per-node 8 [--processes per-gpu] [--dry-run]

--target tpu packs this checkout (the files git lists: tracked ones as they are now, untracked ones not
ignored), creates the slice unless `describe` finds it, copies the checkout to every worker, installs `.[tpu]`
there when pyproject.toml changed, and runs the same command on all workers; worker 0's log streams here, every
worker's is in /opt/ssljax/logs/ on that worker. --target slurm writes a new WORKDIR/slurm-<time>.sh and hands it
to sbatch; at the time limit the run saves a checkpoint and the job requeues itself. --dry-run prints the config
and then every command in order (the packing as its shell equivalent), and runs nothing.

Exit status: 0 done, 2 bad input (one line on stderr says what), 3 training stopped (non-finite loss),
143 preempted by SIGTERM after saving a checkpoint (run the same command again to resume); a gcloud or sbatch
command that fails passes its own status on.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# tf.data here only shuffles and gathers uint8 rows, so oneDNN's kernels change nothing but add a log line
# (printed before TF's log level applies) that would break the one-line error contract.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

# A fixed absolute home on every worker, whoever logs in: the checkout (src/, replaced on each launch), the venv,
# uv, its Python, and the logs.
TPU_DIR = "/opt/ssljax"
TPU_TARBALL = "/tmp/ssljax-src.tar.gz"
# jaxlib 0.10.2 has no wheel for the Python 3.10 of the TPU VM images, so uv brings its own interpreter.
WORKER_PYTHON = "3.12"
UV_VERSION = "0.13.9"
WORKER_NUMBER_URL = "http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number"
POLL_S = 30
# Runtime images per TPU generation, as Cloud TPU's JAX guides give them; --version overrides.
RUNTIME_VERSIONS = {
  "v2": "tpu-ubuntu2204-base",
  "v3": "tpu-ubuntu2204-base",
  "v4": "tpu-ubuntu2204-base",
  "v5litepod": "v2-alpha-tpuv5-lite",
  "v5p": "v2-alpha-tpuv5",
  "v6e": "v2-alpha-tpuv6e",
}
# States a slice (tpu-vm) or a queued resource passes through on its way to READY / ACTIVE.
WAITING_STATES = {
  "CREATING",
  "STARTING",
  "RESTARTING",
  "REPAIRING",
  "ACCEPTED",
  "WAITING_FOR_RESOURCES",
  "PROVISIONING",
}


class StepFailed(RuntimeError):
  """A gcloud or sbatch command exited non-zero; its own output has said why."""

  def __init__(self, what: str, returncode: int):
    super().__init__(f"could not {what} (exit {returncode})")
    self.returncode = returncode


def _bad_input(message: str):
  print(f"error: {message}", file=sys.stderr)
  raise SystemExit(2)


def _parse(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", help="path/to/config.py[:preset]")
  parser.add_argument("--workdir", help="checkpoints, metrics, eval.json, summary.json, plots")
  parser.add_argument("--target", choices=("local", "tpu", "slurm"), default="local")
  parser.add_argument("--dry-run", action="store_true", help="print the config and every command, run nothing")
  tpu = parser.add_argument_group("--target tpu")
  tpu.add_argument("--tpu-name", default="", help="the slice (and, with --queued, its queued resource)")
  tpu.add_argument("--zone", default="")
  tpu.add_argument("--project", default="", help="default: gcloud's configured project")
  tpu.add_argument("--accelerator-type", default="", help="v4-32, v5litepod-16, v6e-8, ...")
  tpu.add_argument("--version", default="", help="TPU runtime image (default by generation; v4: tpu-ubuntu2204-base)")
  tpu.add_argument(
    "--queued", action="store_true", help="create the slice through `queued-resources create`, which waits for capacity"
  )
  tpu.add_argument(
    "--provisioning",
    choices=("on-demand", "spot", "reserved", "best-effort"),
    default="on-demand",
    help="best-effort needs --queued",
  )
  tpu.add_argument(
    "--tfds-data-dir",
    default=os.environ.get("TFDS_DATA_DIR", ""),
    help="TFDS_DATA_DIR on the workers, e.g. gs://bucket/tfds (default: $TFDS_DATA_DIR)",
  )
  tpu.add_argument("--delete", action="store_true", help="delete the slice (or the queued resource) and exit")
  slurm = parser.add_argument_group("--target slurm")
  slurm.add_argument("--nodes", type=int, default=1)
  slurm.add_argument("--gpus-per-node", type=int, default=8)
  slurm.add_argument(
    "--processes",
    choices=("per-node", "per-gpu"),
    default="per-node",
    help="one process per node driving all its GPUs, or one process per GPU",
  )
  slurm.add_argument("--partition", default="")
  slurm.add_argument("--time", default="24:00:00")
  slurm.add_argument("--python", default=sys.executable, help="the interpreter the nodes run (default: this one)")
  args, rest = parser.parse_known_args(argv)
  overrides = []
  for item in rest:
    if not item.startswith("--config."):
      if overrides and "=" not in overrides[-1]:
        _bad_input(f"--config.{overrides[-1]} {item}: an override takes '=', as in --config.{overrides[-1]}={item}")
      _bad_input(f"unrecognised argument {item} (overrides look like --config.KEY=VALUE)")
    overrides.append(item[len("--config.") :])
  if not args.delete and not (args.config and args.workdir):
    parser.error("the following arguments are required: --config, --workdir")
  return args, overrides


def _local_command(args, overrides) -> list[str]:
  return [
    "python",
    "launch/run.py",
    "--config",
    args.config,
    "--workdir",
    args.workdir,
    *[f"--config.{o}" for o in overrides],
  ]


def _multi_worker(accelerator_type: str) -> bool:
  size = accelerator_type.rsplit("-", 1)[-1]
  if "-" not in accelerator_type or not size.isdigit():
    raise ValueError(f"--accelerator-type={accelerator_type}: expected a generation and a size, e.g. v4-32")
  # Every generation's one-host slices end at -8 (v3-8, v4-8, v5litepod-8, v5p-8, v6e-8); larger ones span hosts.
  return int(size) > 8


def _runtime_version(args) -> str:
  generation = args.accelerator_type.rsplit("-", 1)[0]
  version = args.version or RUNTIME_VERSIONS.get(generation)
  if not version:
    raise ValueError(f"no default runtime for {args.accelerator_type}: pass --version")
  return version


def _worker_config(args) -> str:
  """The config as a path inside the shipped checkout, the only files a worker has."""
  path, sep, preset = args.config.partition(":")
  relative = os.path.relpath(os.path.abspath(path), REPO)
  if relative == os.pardir or relative.startswith(os.pardir + os.sep):
    raise ValueError(f"--config {path} is outside this checkout ({REPO}), so the TPU workers would not have it")
  return relative + sep + preset


def _check(args) -> None:
  """Input no command should get as far as: a one-line ValueError before anything runs."""
  if args.delete and args.target != "tpu":
    raise ValueError("--delete tears down a TPU slice: it needs --target tpu")
  if args.target == "tpu":
    if not args.tpu_name or not args.zone or not (args.accelerator_type or args.delete):
      raise ValueError("--target tpu needs --tpu-name, --zone and --accelerator-type")
    if args.delete:
      return
    _runtime_version(args)
    if args.provisioning == "best-effort" and not args.queued:
      raise ValueError("--provisioning best-effort exists only for queued resources: add --queued")
    workdir, multi_worker = args.workdir, _multi_worker(args.accelerator_type)
    if not workdir.startswith("gs://"):
      if multi_worker:
        raise ValueError(
          f"--workdir {workdir}: the workers of a {args.accelerator_type} slice share only GCS, "
          f"so the workdir must be gs://..."
        )
      if not os.path.isabs(workdir) or (workdir + "/").startswith(f"{TPU_DIR}/src/"):
        raise ValueError(
          f"--workdir {workdir}: on a TPU worker give gs://... or an absolute path outside "
          f"{TPU_DIR}/src (the checkout there is replaced on every launch)"
        )
    _worker_config(args)
  elif args.target == "slurm":
    if args.nodes < 1 or args.gpus_per_node < 1:
      raise ValueError("--nodes and --gpus-per-node must be at least 1")
    if any(c.isspace() or c == "%" for c in os.path.abspath(args.workdir)):
      raise ValueError(f"--workdir {args.workdir!r}: #SBATCH --output takes no spaces and reads % as a pattern")


# --- Cloud TPU ---------------------------------------------------------------------------------------------


def _gcloud(args, *words: str) -> list[str]:
  return ["gcloud", *words, f"--zone={args.zone}", *([f"--project={args.project}"] if args.project else [])]


def tpu_describe(args) -> list[str]:
  """Prints `STATE<TAB>ACCELERATOR_TYPE`; fails when there is no such slice (queued resource)."""
  if args.queued:
    return _gcloud(
      args,
      "compute",
      "tpus",
      "queued-resources",
      "describe",
      args.tpu_name,
      "--format=value(state.state,tpu.nodeSpec[0].node.acceleratorType)",
    )
  return _gcloud(args, "compute", "tpus", "tpu-vm", "describe", args.tpu_name, "--format=value(state,acceleratorType)")


def tpu_create(args) -> list[str]:
  provisioning = {"on-demand": [], "spot": ["--spot"], "reserved": ["--reserved"], "best-effort": ["--best-effort"]}[
    args.provisioning
  ]
  shape = f"--accelerator-type={args.accelerator_type}"
  if args.queued:
    # --best-effort is in gcloud's alpha track only.
    track = ["alpha"] if args.provisioning == "best-effort" else []
    return _gcloud(
      args,
      *track,
      "compute",
      "tpus",
      "queued-resources",
      "create",
      args.tpu_name,
      f"--node-id={args.tpu_name}",
      shape,
      f"--runtime-version={_runtime_version(args)}",
      *provisioning,
    )
  return _gcloud(
    args,
    "compute",
    "tpus",
    "tpu-vm",
    "create",
    args.tpu_name,
    shape,
    f"--version={_runtime_version(args)}",
    *provisioning,
  )


def tpu_delete(args) -> list[str]:
  if args.queued:  # --force takes the slice the queued resource holds with it
    return _gcloud(args, "compute", "tpus", "queued-resources", "delete", args.tpu_name, "--force", "--quiet")
  return _gcloud(args, "compute", "tpus", "tpu-vm", "delete", args.tpu_name, "--quiet")


def tpu_scp(args, tarball: str) -> list[str]:
  return _gcloud(args, "compute", "tpus", "tpu-vm", "scp", tarball, f"{args.tpu_name}:{TPU_TARBALL}", "--worker=all")


def _tpu_ssh(args, script: str) -> list[str]:
  return _gcloud(args, "compute", "tpus", "tpu-vm", "ssh", args.tpu_name, "--worker=all", f"--command={script}")


def tpu_install(args) -> list[str]:
  """Unpacks the checkout into TPU_DIR/src; rebuilds the venv only when pyproject.toml differs from the one it was
  built from (its sha256 is kept in the venv)."""
  d = TPU_DIR
  marker = f"{d}/venv/.pyproject-sha256"
  return _tpu_ssh(
    args,
    "; ".join(
      [
        "set -eo pipefail",
        f'sudo mkdir -p {d} && sudo chown "$(id -u):$(id -g)" {d}',
        f"rm -rf {d}/src.new && mkdir {d}/src.new && tar -xzf {TPU_TARBALL} -C {d}/src.new",
        f"rm -rf {d}/src && mv {d}/src.new {d}/src",
        f'h=$(sha256sum {d}/src/pyproject.toml | cut -d" " -f1)',
        f'if [ "$(cat {marker} 2>/dev/null)" != "$h" ]; then '
        f"[ -x {d}/bin/uv ] || curl -LsSf https://astral.sh/uv/{UV_VERSION}/install.sh"
        f" | env UV_INSTALL_DIR={d}/bin UV_NO_MODIFY_PATH=1 sh; "
        f"rm -rf {d}/venv; "
        f"UV_PYTHON_INSTALL_DIR={d}/python {d}/bin/uv venv --python {WORKER_PYTHON} {d}/venv; "
        f"{d}/bin/uv pip install --python {d}/venv/bin/python -e '{d}/src[tpu]'; "
        f'echo "$h" > {marker}; fi',
      ]
    ),
  )


def tpu_run(args, overrides) -> list[str]:
  """The same command on every worker; each appends to its own log, worker 0's also streams back through ssh."""
  env = ["SSLJAX_DISTRIBUTED=1"]
  if args.tfds_data_dir:
    env.append(f"TFDS_DATA_DIR={shlex.quote(args.tfds_data_dir)}")
  command = shlex.join(
    [
      f"{TPU_DIR}/venv/bin/python",
      "launch/run.py",
      "--config",
      _worker_config(args),
      "--workdir",
      args.workdir,
      *[f"--config.{o}" for o in overrides],
    ]
  )
  return _tpu_ssh(
    args,
    "; ".join(
      [
        f"cd {TPU_DIR}/src || exit 1",
        f"mkdir -p {TPU_DIR}/logs",
        f"w=$(curl -sf -H Metadata-Flavor:Google {WORKER_NUMBER_URL} || echo unknown)",
        f'log={TPU_DIR}/logs/worker-"$w".log',
        # tee -p goes on into the log when ssh hangs up, so the run outlives this terminal.
        'if [ "$w" = 0 ]; then exec > >(tee -pa "$log") 2>&1; else exec >> "$log" 2>&1; fi',
        f"export {' '.join(env)}",
        f"exec {command}",
      ]
    ),
  )


def _local_tarball(args) -> str:
  return os.path.join(tempfile.gettempdir(), f"ssljax-{args.tpu_name}.tar.gz")


def _pack_shell(tarball: str) -> str:
  """What `pack_checkout` does, as a shell pipeline (for --dry-run)."""
  return (
    shlex.join(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    + " | "
    + shlex.join(["tar", "-czf", tarball, "-C", REPO, "--null", "-T", "-"])
  )


def pack_checkout(tarball: str) -> int:
  """This checkout as git sees it (tracked files as they are now, untracked ones not ignored) into `tarball`;
  returns the number of files."""
  if shutil.which("git") is None:
    raise ValueError("--target tpu ships this checkout through `git ls-files`: put git on PATH")
  listed = subprocess.run(
    ["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], capture_output=True
  )
  if listed.returncode:
    raise ValueError(f"--target tpu ships this checkout through `git ls-files`, but {REPO} is not a git work tree")
  # A tracked file deleted from the work tree is still listed; the work tree is what ships.
  names = sorted(
    {n for n in map(os.fsdecode, listed.stdout.split(b"\0")) if n and os.path.lexists(os.path.join(REPO, n))}
  )
  fd, partial = tempfile.mkstemp(prefix=os.path.basename(tarball), dir=os.path.dirname(tarball))
  os.close(fd)
  try:
    with tarfile.open(partial, "w:gz") as tar:
      for name in names:
        tar.add(os.path.join(REPO, name), arcname=name, recursive=False)
    os.replace(partial, tarball)
  finally:
    if os.path.exists(partial):
      os.unlink(partial)
  return len(names)


def _describe(args) -> tuple[str, str] | None:
  """(state, accelerator type) of the slice or queued resource; None when gcloud finds none."""
  found = subprocess.run(tpu_describe(args), capture_output=True, text=True)
  if found.returncode:
    return None
  fields = found.stdout.split()
  return (fields[0] if fields else "", fields[1] if len(fields) > 1 else "")


def _what(args) -> str:
  return f"queued resource {args.tpu_name}" if args.queued else f"slice {args.tpu_name}"


def _check_shape(args, found) -> None:
  if found and found[1] and found[1] != args.accelerator_type:
    raise ValueError(
      f"{_what(args)} exists as {found[1]}, not {args.accelerator_type}: pass "
      f"--accelerator-type={found[1]}, or --delete it first"
    )


def _wait_until_ready(args, found) -> None:
  ready = "ACTIVE" if args.queued else "READY"
  what = _what(args)
  shown = None
  while True:
    if found is None:
      raise ValueError(f"{what} was created but `describe` does not find it (check --project and --zone)")
    _check_shape(args, found)
    state = found[0]
    if state == ready:
      return
    if state not in WAITING_STATES:
      raise ValueError(f"{what} is {state or 'in no state'}: --delete it and run again")
    if state != shown:
      print(f"{what}: {state}, waiting for {ready}", file=sys.stderr, flush=True)
      shown = state
    time.sleep(POLL_S)
    found = _describe(args)


def _step(argv: list[str], what: str) -> None:
  returncode = subprocess.call(argv)
  if returncode:
    raise StepFailed(what, returncode)


def run_tpu(args, overrides) -> int:
  """Packs before creating, so that what ships is the checkout at launch even when the slice takes hours."""
  found = _describe(args)
  _check_shape(args, found)
  tarball = _local_tarball(args)
  count = pack_checkout(tarball)
  print(f"packed {count} files of {REPO} into {tarball}", file=sys.stderr, flush=True)
  if found is None:
    _step(tpu_create(args), f"create {args.tpu_name}")
    found = _describe(args)
  _wait_until_ready(args, found)
  _step(tpu_scp(args, tarball), f"copy the checkout to the workers of {args.tpu_name}")
  _step(tpu_install(args), f"install the checkout on the workers of {args.tpu_name}")
  try:
    return subprocess.call(tpu_run(args, overrides))
  except KeyboardInterrupt:
    print(
      f"interrupted here only: the workers go on, logging to {TPU_DIR}/logs/ (--delete ends the slice)", file=sys.stderr
    )
    return 130


def tpu_plan(args, overrides) -> list[str]:
  tarball = _local_tarball(args)
  ready = "ACTIVE" if args.queued else "READY"
  return [
    shlex.join(tpu_describe(args)),
    _pack_shell(tarball),
    shlex.join(tpu_create(args)) + "  # only when describe finds nothing",
    shlex.join(tpu_describe(args)) + f"  # every {POLL_S} s until {ready}",
    shlex.join(tpu_scp(args, tarball)),
    shlex.join(tpu_install(args)),
    shlex.join(tpu_run(args, overrides)),
  ]


# --- SLURM -------------------------------------------------------------------------------------------------


def slurm_script(args, overrides) -> str:
  """The sbatch script: one process per node or per GPU, node 0 coordinates.

  The run's command line is quoted once, as srun's own arguments; the per-task variables come from a fixed
  `bash -c` wrapper that `exec`s them ("$@"), so no override is ever quoted inside another quoted string.
  """
  per_gpu = args.processes == "per-gpu"
  workdir = os.path.abspath(args.workdir)
  path, sep, preset = args.config.partition(":")
  python = os.path.abspath(args.python) if os.sep in args.python else args.python
  config = os.path.abspath(path) + sep + preset
  run = shlex.join(
    [
      python,
      os.path.join(REPO, "launch", "run.py"),
      "--config",
      config,
      "--workdir",
      workdir,
      *[f"--config.{o}" for o in overrides],
    ]
  )
  # Set either way: under srun, jax.distributed gives each process only the GPU at its SLURM_LOCALID, which
  # would leave one process per node with one GPU.
  devices = "$SLURM_LOCALID" if per_gpu else ",".join(map(str, range(args.gpus_per_node)))
  task = (
    f"export SSLJAX_NUM_PROCESSES=$SLURM_NTASKS SSLJAX_PROCESS_ID=$SLURM_PROCID "
    f'JAX_LOCAL_DEVICE_IDS={devices}; exec "$@"'
  )
  partition = f"#SBATCH --partition={args.partition}\n" if args.partition else ""
  return f"""#!/bin/bash
#SBATCH --job-name=ssljax
#SBATCH --nodes={args.nodes}
#SBATCH --ntasks-per-node={args.gpus_per_node if per_gpu else 1}
#SBATCH --gpus-per-node={args.gpus_per_node}
#SBATCH --time={args.time}
#SBATCH --signal=TERM@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output={workdir}/slurm-%j.out
{partition}# Written by launch/run.py. TERM reaches the job steps 120 s before the time limit: the run saves a
# checkpoint and exits 143; this script then requeues the job, which Slurm never does after a time limit.
cd {shlex.quote(REPO)} || exit 1
# The port follows the job id, above Linux's ephemeral range (32768-60999), so jobs sharing a node differ.
first_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)
export SSLJAX_COORDINATOR="$first_node:$((61440 + SLURM_JOB_ID % 4096))"
srun --export=ALL bash -c {shlex.quote(task)} ssljax-task {run}
status=$?
if [ "$status" -eq 143 ]; then scontrol requeue "$SLURM_JOB_ID"; fi
exit "$status"
"""


def _write_new(directory: str, stem: str, text: str) -> str:
  """Writes `text` to directory/stem.sh, or stem-2.sh, ...: complete before it appears, never over a file."""
  fd, partial = tempfile.mkstemp(prefix=f".{stem}.", dir=directory)
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
    os.chmod(partial, 0o644)
    for n in range(1, 1000):
      path = os.path.join(directory, f"{stem}.sh" if n == 1 else f"{stem}-{n}.sh")
      try:
        os.link(partial, path)  # unlike a rename, fails when `path` exists
        return path
      except FileExistsError:
        continue
    raise ValueError(f"{directory} already holds {stem}.sh to {stem}-999.sh")
  finally:
    os.unlink(partial)


def submit_slurm(args, overrides) -> int:
  workdir = os.path.abspath(args.workdir)
  os.makedirs(workdir, exist_ok=True)
  script = _write_new(workdir, "slurm-" + time.strftime("%Y%m%d-%H%M%S"), slurm_script(args, overrides))
  print(f"wrote {script}", file=sys.stderr, flush=True)
  return subprocess.call(["sbatch", script])


def _plan(args, overrides) -> str:
  if args.target == "tpu":
    return "\n".join(tpu_plan(args, overrides))
  if args.target == "slurm":
    return slurm_script(args, overrides).rstrip("\n")
  return shlex.join(_local_command(args, overrides))


def _submit(args, overrides) -> int:
  """Hands the job to gcloud or sbatch; their own output says what happened."""
  tool = "gcloud" if args.target == "tpu" else "sbatch"
  if shutil.which(tool) is None:
    raise ValueError(f"--target {args.target} needs `{tool}` on PATH (use --dry-run to print the commands)")
  if args.delete:
    return subprocess.call(tpu_delete(args))
  return run_tpu(args, overrides) if args.target == "tpu" else submit_slurm(args, overrides)


def _result_table(results: dict) -> str:
  columns = [("", "trained"), ("baseline/random_init/", "random init"), ("baseline/raw_pixels/", "raw pixels")]
  columns = [
    (p, t) for p, t in columns if any(k.startswith(p) and (p or not k.startswith("baseline/")) for k in results)
  ]
  rows = sorted({k for k in results if not k.startswith("baseline/")})
  width = max([len("metric"), *map(len, rows)]) + 2
  lines = [f"{'metric':<{width}}" + "".join(f"{t:>14}" for _, t in columns)]
  for row in rows:
    cells = "".join(f"{results[p + row]:>14.4f}" if p + row in results else f"{'-':>14}" for p, _ in columns)
    lines.append(f"{row:<{width}}{cells}")
  return "\n".join(lines)


def main(argv=None) -> int:
  args, overrides = _parse(sys.argv[1:] if argv is None else argv)
  from ssljax import config as config_lib

  try:
    _check(args)
    if args.delete:
      if args.dry_run:
        print(shlex.join(tpu_delete(args)))
        return 0
      return _submit(args, overrides)
    config = config_lib.get_config(args.config, overrides)
    if args.dry_run:
      print(config)
      print(_plan(args, overrides))
      return 0
    if args.target != "local":
      return _submit(args, overrides)
  except StepFailed as e:
    print(f"error: {e}", file=sys.stderr)
    return e.returncode
  except (config_lib.ConfigError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2

  cpu_devices = config.get("cpu_devices", 0)
  if cpu_devices and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    # Read when the backend starts; only the CPU platform takes it, so an accelerator host is unaffected.
    os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={cpu_devices}"
    ).strip()
  from ssljax import sharding, train
  from ssljax.data import DataError

  try:
    sharding.initialize_distributed()
    out = train.train_and_evaluate(config, args.workdir)
  except train.Preempted as e:
    print(f"preempted: {e}", file=sys.stderr)
    return 143
  except train.TrainingError as e:
    print(f"error: {e}", file=sys.stderr)
    return 3
  except (config_lib.ConfigError, DataError, sharding.DistributedError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except OSError as e:  # the filesystem said no: a read-only workdir, a full disk, a path that is a file
    where = f"{e.filename}: " if e.filename else ""
    print(f"error: {where}{e.strerror or e}", file=sys.stderr)
    return 2
  print(_result_table(out["eval"]))
  s = out["summary"]
  print(
    f"steps {s['steps']} | final loss {s['final_loss']:.4f} | wall {s['wall_s']:.0f} s | "
    f"params sha256 {s['params_sha256'][:16]} | {os.path.abspath(args.workdir)}/eval.json"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
