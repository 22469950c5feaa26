#!/usr/bin/env bash
# Runs rail_kd_jax on one node with several GPUs. See docs/LAUNCH.md.
#
# Usage:
#   bash launch/gpu_node.sh setup                       # venv with jax[cuda12] + this package
#   bash launch/gpu_node.sh run --config=configs/glue.py:sst2 --workdir=/data/runs/sst2 [--config.key=value ...]
#   MODE=per-gpu bash launch/gpu_node.sh run ...        # one process per GPU, joined by jax.distributed
#   bash launch/gpu_node.sh benchmark --out=/data/runs/bench --shapes=bert-base-6,roberta-large-6
#
# MODE=single (default): one process drives every visible GPU (jax.local_devices());
#   data parallel over them with pmap or shard_map (--config.parallel). Simplest and fastest.
# MODE=per-gpu: one process per GPU on this node (CUDA_VISIBLE_DEVICES=i), joined with
#   jax.distributed on 127.0.0.1:$PORT -- the multi-host code path, on one node (to test a
#   multi-node setup, or when one process per GPU is required by the cluster).
#
# Environment:
#   GPUS        GPUs to use (default: all, from nvidia-smi); sets CUDA_VISIBLE_DEVICES=0..GPUS-1
#   VENV        virtual environment (default ./.venv-gpu)
#   PORT        coordinator port for MODE=per-gpu (default 12355)
#   MEM_FRACTION  XLA_PYTHON_CLIENT_MEM_FRACTION (default 0.9)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-gpu}
MODE=${MODE:-single}
PORT=${PORT:-12355}
if [ -z "${GPUS:-}" ]; then
  GPUS=$(nvidia-smi -L 2>/dev/null | wc -l || echo 0)
fi
export XLA_PYTHON_CLIENT_MEM_FRACTION=${MEM_FRACTION:-0.9}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}

cmd=${1:-}
shift || true
case "$cmd" in
  setup)
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q -U pip
    "$VENV/bin/python" -m pip install -q -U "jax[cuda12]"
    "$VENV/bin/python" -m pip install -q -e ".[peers]"
    "$VENV/bin/python" -c "import jax; print(jax.devices())"
    ;;
  run)
    [ "$GPUS" -ge 1 ] || { echo "no GPU found (nvidia-smi -L); set GPUS" >&2; exit 2; }
    PY="$VENV/bin/python"
    if [ "$MODE" = single ]; then
      CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((GPUS - 1))) exec "$PY" -m rail_kd_jax.main "$@"
    elif [ "$MODE" = per-gpu ]; then
      pids=()
      for i in $(seq 0 $((GPUS - 1))); do
        CUDA_VISIBLE_DEVICES=$i "$PY" -m rail_kd_jax.main "$@" --config.distributed.enabled=True \
          --config.distributed.coordinator=127.0.0.1:"$PORT" --config.distributed.num_processes="$GPUS" \
          --config.distributed.process_id="$i" &
        pids+=($!)
      done
      status=0
      for p in "${pids[@]}"; do wait "$p" || status=$?; done
      exit $status
    else
      echo "MODE=$MODE is not valid; choose single or per-gpu" >&2
      exit 2
    fi
    ;;
  benchmark)
    CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} exec "$VENV/bin/python" -m rail_kd_jax.benchmark "$@"
    ;;
  *)
    sed -n '2,22p' "$0" >&2
    exit 2
    ;;
esac
