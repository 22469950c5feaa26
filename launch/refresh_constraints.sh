#!/usr/bin/env bash
# Rewrites constraints.txt from ./.venv: the exact versions the suite passed with.
# Refreshing the pinned stack:
#   rm -rf .venv && RAIL_KD_UNCONSTRAINED=1 bash launch/setup.sh   # newest releases setup.py allows
#   .venv/bin/python -m pytest -q -n 2 tests                       # the whole suite must pass
#   bash launch/refresh_constraints.sh && git diff constraints.txt # review, then commit
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# The exact versions the test suite passed with (pip freeze of .venv, the package itself left out)."
  echo "# Used by launch/setup.sh and .ci/run; elsewhere: pip install -c constraints.txt ."
  echo "# Refresh: see launch/refresh_constraints.sh. setup.py keeps lower bounds for embedding."
  .venv/bin/python -m pip freeze --exclude-editable | grep -viE '^rail[-_]kd[-_]jax[=@ ]' | LC_ALL=C sort -f
} > constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) packages"
