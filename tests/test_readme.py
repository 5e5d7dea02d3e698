"""The README renders and points only at what the repository holds."""

import os
import re

import launcher

README = open(os.path.join(launcher.ROOT, "README.md")).read()
# Paths inside the repository the README may name, as `code`.
REPO_PATH = re.compile(r"`((?:configs|ssljax|benchmarks|examples|tests|launch|data/recipe)/[\w./-]*?)(?:[:` ])")


def tables(text: str):
  """Each table as its lines: a run of lines starting with '|', outside code blocks."""
  out, current, in_code = [], [], False
  for line in text.splitlines():
    if line.startswith("```"):
      in_code = not in_code
    if not in_code and line.startswith("|"):
      current.append(line)
    elif current:
      out.append(current)
      current = []
  return out + ([current] if current else [])


def test_every_table_is_one_well_formed_table():
  found = tables(README)
  assert len(found) >= 3
  for table in found:
    header, separator, *rows = table
    columns = header.count("|")
    assert re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", separator), f"no separator row under {header!r}"
    assert separator.count("|") == columns and rows, header
    for row in rows:
      assert row.count("|") == columns, f"{row[:80]!r} has {row.count('|') - 1} cells, the header {columns - 1}"
  # A blank line inside a table splits it in two, and the second half renders as text.
  lines = README.splitlines()
  for i, line in enumerate(lines[1:-1], 1):
    if not line.strip():
      assert not (lines[i - 1].startswith("|") and lines[i + 1].startswith("|")), f"blank line {i + 1} splits a table"


def test_names_only_what_the_repository_holds():
  assert "../shared" not in README and "/work/" not in README
  for path in sorted(set(REPO_PATH.findall(README))):
    path = path.rstrip(".")
    assert os.path.exists(os.path.join(launcher.ROOT, path)), f"README names {path}, which is not in the repository"
