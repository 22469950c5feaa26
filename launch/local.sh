#!/usr/bin/env bash
# Runs rail_kd_jax on this machine's CPU (or its one accelerator), in ./.venv.
#
# Usage (relative paths are relative to the repository root):
#   bash launch/local.sh demo DIR [--config.key=value ...]  # setup, then the embedded demo into DIR
#   bash launch/local.sh study DIR [ARG] [--config.key=value ...]  # setup, then configs/study.py[:ARG] into DIR
#   bash launch/local.sh run --config=configs/glue.py:sst2 --workdir=runs/sst2 [--config.key=value ...]
#   bash launch/local.sh sweep run|collect ...             # python -m rail_kd_jax.sweep (see launch/sweep)
#   bash launch/local.sh setup                             # only create/refresh ./.venv
#
# `demo` runs launch/setup.sh (idempotent: creates ./.venv, installs the package and the
# offline assets) and then `python -m rail_kd_jax.main --config=configs/demo.py
# --workdir=DIR`: MiniLM-L6 fine-tuned on Rotten Tomatoes, then a 3-layer student
# without KD, with KD and with RAIL-KD; the table is printed and written to
# DIR/results.md and DIR/results.json (docs/DEMO.md). Running it again reuses the
# stages that are done. `study` is the same for the whole comparison (every method tuned
# on dev, over seeds, test and out-of-domain; docs/STUDY.md); ARG is quick or glue/<task>.
# Nothing is downloaded at run time (HF_HUB_OFFLINE=1).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
export HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-1}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
PY=.venv/bin/python

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }

cmd=${1:-}
shift || true
case "$cmd" in
  setup)
    bash launch/setup.sh
    ;;
  demo)
    if [ $# -lt 1 ] || [[ "$1" == --* ]]; then
      echo "error: give the demo's output folder: bash launch/local.sh demo DIR" >&2
      exit 2
    fi
    dir=$1
    shift
    bash launch/setup.sh
    exec "$PY" -m rail_kd_jax.main --config=configs/demo.py --workdir="$dir" "$@"
    ;;
  study)
    if [ $# -lt 1 ] || [[ "$1" == --* ]]; then
      echo "error: give the study's output folder: bash launch/local.sh study DIR [quick|glue/<task>]" >&2
      exit 2
    fi
    dir=$1
    shift
    arg=""
    if [ $# -gt 0 ] && [[ "$1" != --* ]]; then
      arg=":$1"
      shift
    fi
    bash launch/setup.sh
    exec "$PY" -m rail_kd_jax.main --config="configs/study.py$arg" --workdir="$dir" "$@"
    ;;
  run)
    [ -x "$PY" ] || bash launch/setup.sh
    exec "$PY" -m rail_kd_jax.main "$@"
    ;;
  sweep)
    [ -x "$PY" ] || bash launch/setup.sh
    exec "$PY" -m rail_kd_jax.sweep "$@"
    ;;
  ""|-h|--help|help)
    usage
    ;;
  *)
    echo "error: unknown command '$cmd'; use demo, run, sweep or setup" >&2
    usage >&2
    exit 2
    ;;
esac
