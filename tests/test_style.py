"""The tree passes the one formatter and the one linter configured in pyproject.toml.

Fix a failure with `.venv/bin/ruff format . && .venv/bin/ruff check --fix .`.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ruff(*args):
  return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True)


def test_tree_is_formatted():
  proc = _ruff("format", "--check", ".")
  assert proc.returncode == 0, f"run `ruff format .`:\n{proc.stdout}{proc.stderr}"


def test_tree_passes_lint():
  proc = _ruff("check", "--output-format=concise", ".")
  assert proc.returncode == 0, f"run `ruff check --fix .`:\n{proc.stdout}{proc.stderr}"
