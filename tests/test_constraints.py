"""The installed stack is exactly constraints.txt (what launch/setup.sh and .ci/run install)."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _name(s: str) -> str:
  return re.sub(r"[-_.]+", "-", s).lower()


def _pins(lines) -> dict[str, str]:
  out = {}
  for line in lines:
    line = line.split("#", 1)[0].strip()
    if not line or line.startswith("-e "):
      continue
    name, sep, version = line.partition("==")
    assert sep, f"constraints.txt line {line!r} is not an exact pin (name==version)"
    out[_name(name)] = version.strip()
  return out


def test_installed_versions_are_the_constraints():
  with open(os.path.join(ROOT, "constraints.txt")) as f:
    want = _pins(f)
  frozen = subprocess.run(
    [sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, check=True
  ).stdout.splitlines()
  have = {k: v for k, v in _pins(frozen).items() if k != "rail-kd-jax"}
  for pkg in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "transformers", "torch", "pytest-xdist"):
    assert pkg in want, f"constraints.txt does not pin {pkg}"
  missing = sorted(set(want) - set(have))
  extra = sorted(set(have) - set(want))
  differ = sorted(f"{k} {have[k]} (constraints.txt: {want[k]})" for k in set(want) & set(have) if have[k] != want[k])
  assert not (missing or extra or differ), (
    f"the environment is not constraints.txt: not installed {missing}, not pinned {extra}, other versions {differ}; "
    "run `bash launch/setup.sh`, or refresh the pins as launch/refresh_constraints.sh says"
  )


def test_setup_and_ci_install_through_the_constraints():
  with open(os.path.join(ROOT, "launch", "setup.sh")) as f:
    setup = f.read()
  installs = [line for line in setup.splitlines() if "pip install" in line and "--upgrade pip" not in line]
  assert len(installs) == 2 and all('"${PIN[@]}"' in line for line in installs), installs
  assert "PIN=(-c constraints.txt)" in setup
  with open(os.path.join(ROOT, ".ci", "run")) as f:
    assert "bash launch/setup.sh" in f.read()
