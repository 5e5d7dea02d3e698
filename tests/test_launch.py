"""launch/run.py for --target tpu and --target slurm, against fake gcloud / sbatch / srun / scontrol on PATH.

Nothing here trains or imports jax (but the one test of a distributed start-up error, in a subprocess): the
launcher is run as a user runs it, and the commands it would run are recorded instead.
Regenerate the golden dry-runs with SSLJAX_UPDATE_GOLDEN=1 after a deliberate change, and read the diff.
"""

import importlib.util
import json
import os
import shlex
import subprocess
import sys
import tarfile
import time

import pytest

from ssljax import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "data", "launch")
CONFIG = "configs/simclr.py:cifar10"
# Spaces, both quotes, parentheses, $, backquotes, ; and a glob: each must reach the run exactly as typed.
HOSTILE = ["evals.baselines=('random_init',)", 'data.name=it\'s a "name" (x)', "data.path=/a b/$HOME/`id`;*"]
TPU = ["--target", "tpu", "--tpu-name", "pod-1", "--zone", "us-central2-b", "--accelerator-type", "v4-32"]


def _load_launcher():
  spec = importlib.util.spec_from_file_location("ssljax_launch_run", os.path.join(ROOT, "launch", "run.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


run_py = _load_launcher()


def _executable(path, text):
  with open(path, "w") as f:
    f.write(text)
  os.chmod(path, 0o755)


FAKE_GCLOUD = f"""#!{sys.executable}
import json, os, shutil, sys
argv = sys.argv[1:]
fake = os.environ["FAKE_DIR"]
with open(os.path.join(fake, "calls.jsonl"), "a") as f:
  f.write(json.dumps(["gcloud", *argv]) + "\\n")
verb = next(w for w in ("describe", "create", "delete", "scp", "ssh") if w in argv)
queued = "queued-resources" in argv
state = os.path.join(fake, "queued-state" if queued else "tpu-state")
if verb == "describe":
  if not os.path.exists(state):
    sys.exit("ERROR: (gcloud) NOT_FOUND")
  print(open(state).read())
elif verb == "create":
  shape = next(a.split("=", 1)[1] for a in argv if a.startswith("--accelerator-type="))
  open(state, "w").write(("ACTIVE" if queued else "READY") + "\\t" + shape)
elif verb == "delete":
  os.remove(state)
elif verb == "scp":
  shutil.copy(argv[argv.index("scp") + 1], os.path.join(fake, "shipped.tar.gz"))
"""

FAKE_SBATCH = f"""#!{sys.executable}
import json, os, shutil, sys
fake = os.environ["FAKE_DIR"]
with open(os.path.join(fake, "calls.jsonl"), "a") as f:
  f.write(json.dumps(["sbatch", *sys.argv[1:]]) + "\\n")
print("Submitted batch job 4242")
"""

# Runs the task command once per task, as srun does on the nodes, with the variables Slurm sets per task.
FAKE_SRUN = """#!/bin/bash
echo "srun $*" >> "$FAKE_DIR/srun.log"
while [[ $1 == --* ]]; do shift; done
n=${FAKE_NTASKS:-2}
status=0
for ((i = 0; i < n; i++)); do
  SLURM_PROCID=$i SLURM_LOCALID=$((i % 2)) SLURM_NTASKS=$n "$@"
  s=$?
  if [ "$s" -gt "$status" ]; then status=$s; fi
done
exit "$status"
"""

FAKE_SCONTROL = """#!/bin/bash
echo "scontrol $*" >> "$FAKE_DIR/scontrol.log"
if [ "$1" = show ]; then echo node-a; echo node-b; fi
"""

# Stands in for the training run: records its argv and the distributed env, exits with $STUB_STATUS.
STUB_PYTHON = f"""#!{sys.executable}
import json, os, sys
with open(os.path.join(os.environ["FAKE_DIR"], "runs.jsonl"), "a") as f:
  f.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": {{k: v for k, v in os.environ.items()
                                  if k.startswith(("SSLJAX_", "JAX_LOCAL", "TFDS_"))}}}}) + "\\n")
print("stub run", os.environ.get("SSLJAX_PROCESS_ID", ""))
sys.exit(int(os.environ.get("STUB_STATUS", "0")))
"""


@pytest.fixture
def fake(tmp_path):
  """A bin/ of fake tools and the directory they record into; `fake.env(...)` is an environment using them."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  for name, text in [
    ("gcloud", FAKE_GCLOUD),
    ("sbatch", FAKE_SBATCH),
    ("srun", FAKE_SRUN),
    ("scontrol", FAKE_SCONTROL),
    ("stub-python", STUB_PYTHON),
  ]:
    _executable(bin_dir / name, text)
  (tmp_path / "tmp").mkdir()

  class Fake:
    dir = tmp_path
    bin = bin_dir
    tmp = tmp_path / "tmp"

    @staticmethod
    def env(path=None, **extra):
      env = {k: v for k, v in os.environ.items() if not k.startswith(("SSLJAX_", "TFDS_", "JAX_LOCAL"))}
      env.update(
        FAKE_DIR=str(tmp_path),
        TMPDIR=str(tmp_path / "tmp"),
        PATH=path if path is not None else f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        **extra,
      )
      return env

    @staticmethod
    def calls():
      path = tmp_path / "calls.jsonl"
      return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    @staticmethod
    def runs():
      path = tmp_path / "runs.jsonl"
      return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

  return Fake


def _launch(*args, env):
  return subprocess.run(
    [sys.executable, "launch/run.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
  )


def _normalised(text, fake):
  return text.replace(sys.executable, "<python>").replace(ROOT, "<repo>").replace(str(fake.tmp), "<tmp>")


def _verb(call):
  """`tpu-vm describe`, `queued-resources create`, `tpu-vm ssh` ... of a recorded gcloud call."""
  words = [w for w in call[1:] if not w.startswith("-") and w not in ("alpha", "compute", "tpus")]
  return " ".join(words[:2])


def _ssh_script(call):
  return next(a for a in call if a.startswith("--command="))[len("--command=") :]


@pytest.mark.parametrize(
  "name, args, env",
  [
    (
      "tpu_create",
      [*TPU, "--workdir", "gs://bucket/runs/simclr", "--provisioning", "spot"],
      {"TFDS_DATA_DIR": "gs://bucket/tensorflow_datasets"},
    ),
    (
      "tpu_queued",
      [
        *TPU,
        "--workdir",
        "gs://bucket/runs/simclr",
        "--queued",
        "--provisioning",
        "best-effort",
        "--project",
        "my-project",
        "--tfds-data-dir",
        "gs://bucket/tfds",
      ],
      {},
    ),
    ("slurm_per_node", ["--target", "slurm", "--workdir", "/shared/runs/c10", "--nodes", "2"], {}),
    (
      "slurm_per_gpu",
      [
        "--target",
        "slurm",
        "--workdir",
        "/shared/runs/c10",
        "--nodes",
        "2",
        "--gpus-per-node",
        "4",
        "--processes",
        "per-gpu",
        "--partition",
        "gpu",
        "--time",
        "4:00:00",
      ],
      {},
    ),
  ],
)
def test_dry_run_matches_golden(fake, name, args, env):
  overrides = ["evals.baselines=('random_init',)", "optim.learning_rate=0.5"]
  proc = _launch("--config", CONFIG, *args, *[f"--config.{o}" for o in overrides], "--dry-run", env=fake.env(**env))
  assert proc.returncode == 0, proc.stderr
  config_text = str(config_lib.get_config(CONFIG, overrides))
  assert proc.stdout.startswith(config_text + "\n")
  plan = _normalised(proc.stdout[len(config_text) + 1 :], fake)
  path = os.path.join(GOLDEN, f"{name}.txt")
  if os.environ.get("SSLJAX_UPDATE_GOLDEN"):
    with open(path, "w") as f:
      f.write(plan)
  with open(path) as f:
    assert plan == f.read()
  assert fake.calls() == [] and os.listdir(fake.tmp) == []


def test_tpu_dry_run_lines_are_shell_words(fake):
  proc = _launch(
    "--config", CONFIG, *TPU, "--workdir", "gs://b/w", *[f"--config.{o}" for o in HOSTILE], "--dry-run", env=fake.env()
  )
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  run = shlex.split(lines[-1])
  assert run[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod-1"] and "--worker=all" in run
  # The remote shell splits the command once more: the overrides come out as typed.
  command = shlex.split(_ssh_script(run).rsplit("exec ", 1)[1])
  assert command[-len(HOSTILE) :] == [f"--config.{o}" for o in HOSTILE]


def test_tpu_new_slice_is_created_then_shipped_installed_and_run(fake):
  proc = _launch("--config", CONFIG, *TPU, "--workdir", "gs://bucket/w", env=fake.env())
  assert proc.returncode == 0, proc.stderr
  calls = fake.calls()
  assert [_verb(c) for c in calls] == [
    "tpu-vm describe",
    "tpu-vm create",
    "tpu-vm describe",
    "tpu-vm scp",
    "tpu-vm ssh",
    "tpu-vm ssh",
  ]
  assert "--accelerator-type=v4-32" in calls[1] and "--version=tpu-ubuntu2204-base" in calls[1]
  assert all("--zone=us-central2-b" in c for c in calls)
  assert all("--worker=all" in c for c in calls[3:])
  assert "tar -xzf" in _ssh_script(calls[4]) and "launch/run.py" in _ssh_script(calls[5])
  with tarfile.open(fake.dir / "shipped.tar.gz") as tar:
    names = set(tar.getnames())
  assert {"launch/run.py", "pyproject.toml", "ssljax/sharding.py", "tests/test_launch.py"} <= names
  assert not any(n.startswith((".venv", ".git/")) or "__pycache__" in n for n in names)


def test_tpu_existing_slice_is_reused(fake):
  (fake.dir / "tpu-state").write_text("READY\tv4-32")
  proc = _launch("--config", CONFIG, *TPU, "--workdir", "gs://bucket/w", env=fake.env())
  assert proc.returncode == 0, proc.stderr
  assert [_verb(c) for c in fake.calls()] == ["tpu-vm describe", "tpu-vm scp", "tpu-vm ssh", "tpu-vm ssh"]


def test_tpu_queued_resource_is_created_through_the_queue(fake):
  proc = _launch(
    "--config", CONFIG, *TPU, "--workdir", "gs://bucket/w", "--queued", "--provisioning", "spot", env=fake.env()
  )
  assert proc.returncode == 0, proc.stderr
  calls = fake.calls()
  assert [_verb(c) for c in calls] == [
    "queued-resources describe",
    "queued-resources create",
    "queued-resources describe",
    "tpu-vm scp",
    "tpu-vm ssh",
    "tpu-vm ssh",
  ]
  assert {"--node-id=pod-1", "--spot", "--runtime-version=tpu-ubuntu2204-base"} <= set(calls[1])


def test_tpu_existing_slice_of_another_shape_is_refused(fake):
  (fake.dir / "tpu-state").write_text("READY\tv4-8")
  proc = _launch("--config", CONFIG, *TPU, "--workdir", "gs://bucket/w", env=fake.env())
  assert proc.returncode == 2
  assert proc.stderr.count("\n") == 1 and "exists as v4-8" in proc.stderr
  assert [_verb(c) for c in fake.calls()] == ["tpu-vm describe"]


@pytest.mark.parametrize("queued, verb", [(False, "tpu-vm delete"), (True, "queued-resources delete")])
def test_tpu_delete(fake, queued, verb):
  (fake.dir / ("queued-state" if queued else "tpu-state")).write_text("READY\tv4-32")
  args = ["--target", "tpu", "--tpu-name", "pod-1", "--zone", "us-central2-b", "--delete", *(["--queued"] * queued)]
  dry = _launch(*args, "--dry-run", env=fake.env())
  assert dry.returncode == 0 and fake.calls() == []
  proc = _launch(*args, env=fake.env())
  assert proc.returncode == 0, proc.stderr
  assert [_verb(c) for c in fake.calls()] == [verb]
  assert shlex.split(dry.stdout) == fake.calls()[0]


def _remote(script, fake, opt, **env):
  """A worker's script run here: TPU_DIR and the tarball moved under `opt`, sudo and curl faked."""
  script = script.replace(run_py.TPU_TARBALL, str(fake.dir / "shipped.tar.gz")).replace(run_py.TPU_DIR, str(opt))
  return subprocess.run(["bash", "-c", script], env=fake.env(**env), capture_output=True, text=True, timeout=60)


def test_tpu_worker_scripts_install_once_and_run_the_command_as_typed(fake, tmp_path):
  _executable(fake.bin / "sudo", '#!/bin/bash\nexec "$@"\n')
  # uv's installer (from curl) puts a fake uv in UV_INSTALL_DIR; it logs its calls and makes the venv's python.
  _executable(
    fake.dir / "uv",
    f"""#!/bin/bash
echo "$*" >> {fake.dir}/uv.log
if [ "$1" = venv ]; then mkdir -p "${{@: -1}}/bin" && cp {fake.bin}/stub-python "${{@: -1}}/bin/python"; fi
""",
  )
  _executable(
    fake.bin / "curl",
    f"""#!/bin/bash
case "$*" in
  *agent-worker-number*) echo "$FAKE_WORKER";;
  *install.sh*) echo 'mkdir -p "$UV_INSTALL_DIR" && cp {fake.dir}/uv "$UV_INSTALL_DIR/uv"';;
  *) exit 22;;
esac
""",
  )
  (fake.dir / "tpu-state").write_text("READY\tv4-32")
  proc = _launch(
    "--config",
    CONFIG,
    *TPU,
    "--workdir",
    "gs://bucket/w",
    "--tfds-data-dir",
    "gs://b/tfds",
    *[f"--config.{o}" for o in HOSTILE],
    env=fake.env(),
  )
  assert proc.returncode == 0, proc.stderr
  _, _, install, run = fake.calls()
  opt = tmp_path / "opt"
  for _ in range(2):
    done = _remote(_ssh_script(install), fake, opt)
    assert done.returncode == 0, done.stderr
  assert (opt / "src" / "launch" / "run.py").exists()
  uv_calls = (fake.dir / "uv.log").read_text().splitlines()
  assert [c.split()[:2] for c in uv_calls] == [["venv", "--python"], ["pip", "install"]]  # once, not twice
  assert uv_calls[1].endswith(f"-e {opt}/src[tpu]")
  with open(opt / "src" / "pyproject.toml", "a") as f:  # a changed pyproject is installed again
    f.write("\n")
  (fake.dir / "shipped.tar.gz").unlink()
  subprocess.run(["tar", "-czf", str(fake.dir / "shipped.tar.gz"), "-C", str(opt / "src"), "."], check=True)
  assert _remote(_ssh_script(install), fake, opt).returncode == 0
  assert len((fake.dir / "uv.log").read_text().splitlines()) == 4

  for worker, status in [("0", 0), ("3", 143)]:
    done = _remote(_ssh_script(run), fake, opt, FAKE_WORKER=worker, STUB_STATUS=str(status))
    assert done.returncode == status, done.stderr
    assert "stub run" in (opt / "logs" / f"worker-{worker}.log").read_text()
    assert ("stub run" in done.stdout) == (worker == "0")  # only worker 0 streams back
  record = fake.runs()[-1]
  assert record["argv"] == [
    "launch/run.py",
    "--config",
    CONFIG,
    "--workdir",
    "gs://bucket/w",
    *[f"--config.{o}" for o in HOSTILE],
  ]
  assert record["cwd"] == str(opt / "src")
  assert record["env"] == {"SSLJAX_DISTRIBUTED": "1", "TFDS_DATA_DIR": "gs://b/tfds"}


def _slurm_script(fake, *args, overrides=HOSTILE):
  proc = _launch(
    "--config",
    CONFIG,
    "--target",
    "slurm",
    "--workdir",
    str(fake.dir / "w"),
    "--nodes",
    "2",
    "--python",
    str(fake.bin / "stub-python"),
    *args,
    *[f"--config.{o}" for o in overrides],
    "--dry-run",
    env=fake.env(),
  )
  assert proc.returncode == 0, proc.stderr
  script = proc.stdout[proc.stdout.index("#!/bin/bash") :]
  path = fake.dir / "job.sh"
  path.write_text(script)
  return path


def test_slurm_script_with_hostile_overrides_is_valid_bash(fake):
  path = _slurm_script(fake)
  check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
  assert check.returncode == 0, check.stderr
  # Fails on the old script, which nested the command inside bash -c '...'.
  old = f"srun bash -c 'SSLJAX_PROCESS_ID=$SLURM_PROCID {shlex.join(['python', *HOSTILE])}'\n"
  assert subprocess.run(["bash", "-n"], input=old, capture_output=True, text=True).returncode != 0


@pytest.mark.parametrize("processes, status", [("per-node", 0), ("per-node", 143), ("per-gpu", 143), ("per-gpu", 1)])
def test_slurm_script_runs_every_task_and_requeues_only_after_143(fake, processes, status):
  path = _slurm_script(fake, "--processes", processes, "--gpus-per-node", "2")
  done = subprocess.run(
    ["bash", str(path)],
    env=fake.env(
      SLURM_JOB_ID="12345",
      SLURM_JOB_NODELIST="node-[a-b]",
      FAKE_NTASKS="4" if processes == "per-gpu" else "2",
      STUB_STATUS=str(status),
    ),
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert done.returncode == status, done.stderr
  scontrol = (fake.dir / "scontrol.log").read_text().splitlines()
  assert scontrol[0] == "scontrol show hostnames node-[a-b]"
  assert scontrol[1:] == (["scontrol requeue 12345"] if status == 143 else [])
  runs = fake.runs()
  assert len(runs) == (4 if processes == "per-gpu" else 2)
  for process_id, run in enumerate(runs):
    assert run["argv"] == [
      os.path.join(ROOT, "launch", "run.py"),
      "--config",
      os.path.join(ROOT, CONFIG),
      "--workdir",
      str(fake.dir / "w"),
      *[f"--config.{o}" for o in HOSTILE],
    ]
    assert run["cwd"] == ROOT
    assert run["env"] == {
      "SSLJAX_COORDINATOR": f"node-a:{61440 + 12345 % 4096}",
      "SSLJAX_NUM_PROCESSES": str(len(runs)),
      "SSLJAX_PROCESS_ID": str(process_id),
      "JAX_LOCAL_DEVICE_IDS": str(process_id % 2) if processes == "per-gpu" else "0,1",
    }
  text = path.read_text()
  assert "#SBATCH --signal=TERM@120" in text and "#SBATCH --open-mode=append" in text
  assert f"#SBATCH --ntasks-per-node={2 if processes == 'per-gpu' else 1}" in text


def test_slurm_submit_writes_a_new_script_each_time(fake):
  workdir = fake.dir / "w"
  workdir.mkdir()
  # Files of the names the next few seconds would give: none may be overwritten.
  now = time.time()
  theirs = ["slurm.sh", *(time.strftime("slurm-%Y%m%d-%H%M%S.sh", time.localtime(now + s)) for s in range(5))]
  for name in theirs:
    (workdir / name).write_text("mine")
  args = ["--config", CONFIG, "--target", "slurm", "--workdir", str(workdir), "--config.optim.learning_rate=0.5"]
  for _ in range(2):
    proc = _launch(*args, env=fake.env())
    assert proc.returncode == 0, proc.stderr
    assert "Submitted batch job" in proc.stdout
  calls = fake.calls()
  assert [c[0] for c in calls] == ["sbatch", "sbatch"] and calls[0][1] != calls[1][1]
  scripts = sorted(set(os.listdir(workdir)) - set(theirs))  # and no temporary left behind
  assert [os.path.join(workdir, p) for p in scripts] == sorted(c[1] for c in calls)
  assert all((workdir / name).read_text() == "mine" for name in theirs)
  assert "--config.optim.learning_rate=0.5" in (workdir / scripts[0]).read_text()


@pytest.mark.parametrize("target, tool", [("tpu", "gcloud"), ("slurm", "sbatch")])
def test_missing_tool_is_one_line_and_nothing_is_written(fake, tmp_path, target, tool):
  empty = tmp_path / "empty"
  empty.mkdir()
  args = [*TPU, "--workdir", "gs://b/w"] if target == "tpu" else ["--target", "slurm", "--workdir", str(tmp_path / "w")]
  proc = _launch("--config", CONFIG, *args, env=fake.env(path=str(empty)))
  assert proc.returncode == 2
  assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
  assert f"--target {target} needs `{tool}` on PATH" in proc.stderr
  assert not (tmp_path / "w").exists() and os.listdir(fake.tmp) == []


@pytest.mark.parametrize(
  "args, words",
  [
    (["--target", "tpu", "--zone", "z", "--accelerator-type", "v4-8", "--workdir", "gs://b/w"], "needs --tpu-name"),
    (["--target", "tpu", "--tpu-name", "p", "--accelerator-type", "v4-8", "--workdir", "gs://b/w"], "--zone"),
    ([*TPU, "--workdir", "/mnt/runs/x"], "must be gs://"),
    ([*TPU[:-1], "v4-8", "--workdir", "workdirs/x"], "absolute path"),
    ([*TPU, "--workdir", "gs://b/w", "--provisioning", "best-effort"], "add --queued"),
    ([*TPU[:-1], "v9z-16", "--workdir", "gs://b/w"], "pass --version"),
    (["--target", "slurm", "--workdir", "/a b/w"], "takes no spaces"),
    (["--workdir", "w", "--delete"], "needs --target tpu"),
    (["--workdir", "gs://b/w", "--bogus"], "unrecognised argument --bogus"),
  ],
)
@pytest.mark.parametrize("dry_run", [False, True])
def test_bad_input_is_one_line_and_runs_nothing(fake, args, words, dry_run):
  proc = _launch("--config", CONFIG, *args, *(["--dry-run"] * dry_run), env=fake.env())
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and words in proc.stderr
  assert proc.stdout == "" and fake.calls() == [] and os.listdir(fake.tmp) == []


def test_config_outside_the_checkout_is_refused(fake, tmp_path):
  outside = tmp_path / "mine.py"
  outside.write_text(open(os.path.join(ROOT, "configs", "simclr.py")).read())
  proc = _launch("--config", f"{outside}:cifar10", *TPU, "--workdir", "gs://b/w", env=fake.env())
  assert proc.returncode == 2 and "outside this checkout" in proc.stderr and proc.stderr.count("\n") == 1
  assert fake.calls() == []


def test_distributed_error_exits_2_with_one_line(tmp_path):
  env = dict(os.environ, SSLJAX_COORDINATOR="node-without-port", SSLJAX_NUM_PROCESSES="2", SSLJAX_PROCESS_ID="1")
  proc = _launch("--config", "configs/simclr.py:tiny", "--workdir", str(tmp_path / "w"), env=env)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.startswith("error: SSLJAX_COORDINATOR=node-without-port") and proc.stderr.count("\n") == 1
  assert not (tmp_path / "w").exists()
