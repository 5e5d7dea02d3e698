#!/usr/bin/env python
"""The one entry point: train and evaluate a method locally, on a TPU pod, or on a SLURM cluster.

  python launch/run.py --config configs/simclr.py:cpu --workdir workdirs/simclr [--config.KEY=VALUE ...]
  python launch/run.py --config configs/simclr.py:imagenet --workdir /nfs/runs/simclr \
      --target tpu --tpu-name my-pod --zone us-central2-b --dry-run
  python launch/run.py --config configs/simclr.py:cifar10 --workdir /shared/runs/c10 --target slurm --nodes 2 \
      --gpus-per-node 8 --dry-run

Exit status: 0 done, 2 bad input (one line on stderr says what), 3 training stopped (non-finite loss),
143 preempted by SIGTERM after saving a checkpoint (run the same command again to resume).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# tf.data here only shuffles and gathers uint8 rows, so oneDNN's kernels change nothing but add a log line
# (printed before TF's log level applies) that would break the one-line error contract.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def _parse(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True, help="path/to/config.py[:preset]")
  parser.add_argument("--workdir", required=True, help="checkpoints, metrics, eval.json, summary.json, plots")
  parser.add_argument("--target", choices=("local", "tpu", "slurm"), default="local")
  parser.add_argument("--dry-run", action="store_true", help="print the config and the command, run nothing")
  parser.add_argument("--tpu-name", default="")
  parser.add_argument("--zone", default="")
  parser.add_argument("--project", default="")
  parser.add_argument("--nodes", type=int, default=1)
  parser.add_argument("--gpus-per-node", type=int, default=8)
  parser.add_argument("--partition", default="")
  parser.add_argument("--time", default="24:00:00")
  args, rest = parser.parse_known_args(argv)
  overrides = []
  for item in rest:
    if not item.startswith("--config."):
      raise SystemExit(f"error: unrecognised argument {item} (overrides look like --config.KEY=VALUE)")
    overrides.append(item[len("--config."):])
  return args, overrides


def _local_command(args, overrides) -> list[str]:
  return ["python", "launch/run.py", "--config", args.config, "--workdir", args.workdir,
          *[f"--config.{o}" for o in overrides]]


def tpu_command(args, overrides) -> str:
  """Every worker of a Cloud TPU VM pod runs the same command; jax finds its peers itself."""
  if not args.tpu_name or not args.zone:
    raise ValueError("--target tpu needs --tpu-name and --zone")
  inner = "cd ~/ssljax && SSLJAX_DISTRIBUTED=1 .venv/bin/" + shlex.join(_local_command(args, overrides))
  project = ["--project", args.project] if args.project else []
  return shlex.join(["gcloud", "compute", "tpus", "tpu-vm", "ssh", args.tpu_name, "--zone", args.zone, *project,
                     "--worker=all", "--command", inner])


def slurm_script(args, overrides) -> str:
  """One process per node; process 0's host is the coordinator."""
  partition = f"#SBATCH --partition={args.partition}\n" if args.partition else ""
  run = shlex.join(_local_command(args, overrides))
  return f"""#!/bin/bash
#SBATCH --job-name=ssljax
#SBATCH --nodes={args.nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={args.gpus_per_node}
#SBATCH --time={args.time}
#SBATCH --signal=TERM@120
#SBATCH --requeue
{partition}export SSLJAX_COORDINATOR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1):12355
export SSLJAX_NUM_PROCESSES=$SLURM_NNODES
srun bash -c 'SSLJAX_PROCESS_ID=$SLURM_PROCID .venv/bin/{run}'
"""


def _remote(args, overrides) -> str:
  return tpu_command(args, overrides) if args.target == "tpu" else slurm_script(args, overrides)


def _submit(args, overrides) -> int:
  """Hands the job to gcloud or sbatch; their own output says what happened."""
  tool = "gcloud" if args.target == "tpu" else "sbatch"
  if shutil.which(tool) is None:
    raise ValueError(f"--target {args.target} needs `{tool}` on PATH (use --dry-run to print the command)")
  if args.target == "tpu":
    return subprocess.call(tpu_command(args, overrides), shell=True)
  os.makedirs(args.workdir, exist_ok=True)
  script = os.path.join(args.workdir, "slurm.sh")
  with open(script, "w") as f:
    f.write(slurm_script(args, overrides))
  return subprocess.call([tool, script])


def _result_table(results: dict) -> str:
  columns = [("", "trained"), ("baseline/random_init/", "random init"), ("baseline/raw_pixels/", "raw pixels")]
  columns = [(p, t) for p, t in columns if any(k.startswith(p) and (p or not k.startswith("baseline/"))
                                                for k in results)]
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
    config = config_lib.get_config(args.config, overrides)
    if args.dry_run:
      print(config)
      print(_remote(args, overrides) if args.target != "local" else shlex.join(_local_command(args, overrides)))
      return 0
    if args.target != "local":
      return _submit(args, overrides)
  except (config_lib.ConfigError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2

  cpu_devices = config.get("cpu_devices", 0)
  if cpu_devices and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    # Read when the backend starts; only the CPU platform takes it, so an accelerator host is unaffected.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={cpu_devices}").strip()
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
  except (config_lib.ConfigError, DataError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(_result_table(out["eval"]))
  s = out["summary"]
  print(f"steps {s['steps']} | final loss {s['final_loss']:.4f} | wall {s['wall_s']:.0f} s | "
        f"params sha256 {s['params_sha256'][:16]} | {os.path.abspath(args.workdir)}/eval.json")
  return 0


if __name__ == "__main__":
  sys.exit(main())
