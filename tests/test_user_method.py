"""A method that lives outside ssljax (examples/my_method, copied to a temporary directory) trains, checkpoints,
resumes exactly and evaluates through launch/run.py, named by its dotted path; the README shows the same files."""

import json
import os
import re
import shutil
import signal

import launcher
import pytest

EXAMPLE = os.path.join(launcher.ROOT, "examples", "my_method")
# Long enough to kill mid-run; the probes at one label fraction, fine-tuning off: this test is about the contract.
QUICK = ["total_steps=10", "evals.label_fractions=(1.0,)", "evals.finetune=False"]


def read_json(path):
  with open(path) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
  """The example, copied where ssljax is not: only the dotted path and the cwd lead to it."""
  home = tmp_path_factory.mktemp("outside")
  shutil.copytree(EXAMPLE, home, dirs_exist_ok=True)
  return home


def run(outside, workdir, *overrides, wait=True):
  return launcher.run_cli("config.py:tiny", workdir, *QUICK, *overrides, wait=wait, cwd=outside)


@pytest.fixture(scope="module")
def reference(outside):
  rc, out, err = run(outside, outside / "reference")
  assert rc == 0, err[-3000:]
  return out, read_json(outside / "reference" / "eval.json"), read_json(outside / "reference" / "summary.json")


def test_trains_and_evaluates_like_a_built_in_method(reference):
  out, results, summary = reference
  assert summary["steps"] == 10 and summary["resumed_from"] == 0
  # The vision suite ran on its encoder and on the random-init baseline of the same architecture.
  for name in ("linear/top1", "knn/top1", "baseline/random_init/linear/top1"):
    assert 0.1 < results[name] <= 1.0, (name, results)  # 10 classes: chance is 0.1
  assert "linear/top1" in out and "random init" in out


def test_resumes_exactly_after_sigkill(outside, reference):
  proc = run(outside, outside / "killed", wait=False)
  launcher.wait_for_checkpoint(outside / "killed", 4, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  rc, _, err = run(outside, outside / "killed")
  assert rc == 0, err[-3000:]
  summary = read_json(outside / "killed" / "summary.json")
  assert 4 <= summary["resumed_from"] < 10, "the kill came too late to test resumption"
  assert summary["params_sha256"] == reference[2]["params_sha256"]


def test_bad_dotted_paths_are_one_line(outside, tmp_path):
  (outside / "mymethods" / "helpers.py").write_text("WIDTH = 3\n")
  for method, words in (
    ("mymethods.nothing_here", "method='mymethods.nothing_here': no module mymethods.nothing_here"),
    ("mymethods.helpers", "module mymethods.helpers defines no METHOD"),
    ("upside_down", "unknown method 'upside_down'"),
  ):
    rc, _, err = run(outside, tmp_path / "w", f"method={method}")
    assert rc == 2 and err.strip().count("\n") == 0 and words in err, err
  assert not os.path.exists(tmp_path / "w")


def test_readme_shows_the_example_as_it_is():
  readme = open(os.path.join(launcher.ROOT, "README.md")).read()
  blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
  for name in ("mymethods/upside_down.py", "config.py"):
    with open(os.path.join(EXAMPLE, name)) as f:
      assert f.read() in blocks, f"README's 'Add a method' no longer shows examples/my_method/{name}"
