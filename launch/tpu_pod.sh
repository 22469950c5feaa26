#!/usr/bin/env bash
# Runs rail_kd_jax on a Cloud TPU VM pod slice: the same command on every host, joined
# by jax.distributed (--config.distributed.enabled=True; the coordinator, process count
# and process ids are discovered from the TPU metadata). See docs/LAUNCH.md.
#
# Usage:
#   TPU_NAME=rail-kd ZONE=us-central2-b ACCELERATOR=v4-32 bash launch/tpu_pod.sh create
#   TPU_NAME=rail-kd ZONE=us-central2-b bash launch/tpu_pod.sh setup
#   TPU_NAME=rail-kd ZONE=us-central2-b bash launch/tpu_pod.sh run \
#       --config=configs/glue.py:sst2 --workdir=/mnt/runs/sst2_rail [--config.key=value ...]
#   TPU_NAME=rail-kd ZONE=us-central2-b bash launch/tpu_pod.sh ssh 'nvidia-smi || true'   # any command, all hosts
#   TPU_NAME=rail-kd ZONE=us-central2-b bash launch/tpu_pod.sh delete
#
# Environment:
#   TPU_NAME, ZONE          required
#   PROJECT                 gcloud project (default: gcloud's current one)
#   ACCELERATOR             create only, e.g. v4-32, v5litepod-16 (default v4-32)
#   RUNTIME                 create only, TPU VM software version (default tpu-ubuntu2204-base)
#   SPOT=1                  create only: a spot (preemptible) slice
#   REPO_URL, REPO_REF      setup: where every host clones the code from (default: this
#                           checkout is copied with `gcloud ... scp`)
#   GCS_BUCKET              setup: mounted with gcsfuse at /mnt/runs on every host, so that
#                           the workdir (checkpoints, metrics, teacher cache) is shared
#   REMOTE_DIR              code folder on the hosts (default ~/rail_kd_jax)
set -euo pipefail

: "${TPU_NAME:?set TPU_NAME}"
: "${ZONE:?set ZONE}"
ACCELERATOR=${ACCELERATOR:-v4-32}
RUNTIME=${RUNTIME:-tpu-ubuntu2204-base}
REMOTE_DIR=${REMOTE_DIR:-'~/rail_kd_jax'}
PROJECT_FLAG=()
if [ -n "${PROJECT:-}" ]; then PROJECT_FLAG=(--project="$PROJECT"); fi
TPU=(gcloud compute tpus tpu-vm)

all_hosts() {  # runs one shell command on every host of the slice, in parallel
  "${TPU[@]}" ssh "$TPU_NAME" --zone="$ZONE" "${PROJECT_FLAG[@]}" --worker=all --command="$1"
}

quote_args() {  # the arguments, quoted for the remote shell
  local out="" a
  for a in "$@"; do out+=" $(printf '%q' "$a")"; done
  printf '%s' "$out"
}

cmd=${1:-}
shift || true
case "$cmd" in
  create)
    spot=()
    if [ "${SPOT:-0}" = 1 ]; then spot=(--spot); fi
    "${TPU[@]}" create "$TPU_NAME" --zone="$ZONE" "${PROJECT_FLAG[@]}" --accelerator-type="$ACCELERATOR" \
      --version="$RUNTIME" "${spot[@]}"
    ;;
  setup)
    if [ -n "${REPO_URL:-}" ]; then
      all_hosts "rm -rf $REMOTE_DIR && git clone $(printf '%q' "$REPO_URL") $REMOTE_DIR && \
                 cd $REMOTE_DIR && git checkout $(printf '%q' "${REPO_REF:-HEAD}")"
    else
      here=$(cd "$(dirname "$0")/.." && pwd)
      tarball=$(mktemp /tmp/rail_kd_jax.XXXXXX.tar.gz)
      git -C "$here" archive --format=tar.gz -o "$tarball" HEAD
      "${TPU[@]}" scp "$tarball" "$TPU_NAME":/tmp/rail_kd_jax.tar.gz --zone="$ZONE" "${PROJECT_FLAG[@]}" --worker=all
      rm -f "$tarball"
      all_hosts "rm -rf $REMOTE_DIR && mkdir -p $REMOTE_DIR && tar -xzf /tmp/rail_kd_jax.tar.gz -C $REMOTE_DIR"
    fi
    # jax[tpu] pulls libtpu; the package's own dependencies come from setup.py.
    all_hosts "cd $REMOTE_DIR && python3 -m pip install -q -U pip && \
               python3 -m pip install -q -U 'jax[tpu]' && python3 -m pip install -q -e ."
    if [ -n "${GCS_BUCKET:-}" ]; then
      all_hosts "(command -v gcsfuse >/dev/null || (export GCSFUSE_REPO=gcsfuse-\$(lsb_release -c -s) && \
                  echo \"deb https://packages.cloud.google.com/apt \$GCSFUSE_REPO main\" | \
                  sudo tee /etc/apt/sources.list.d/gcsfuse.list && \
                  curl -s https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo apt-key add - && \
                  sudo apt-get -q update && sudo apt-get -q install -y gcsfuse)) && \
                 sudo mkdir -p /mnt/runs && sudo chown \$USER /mnt/runs && \
                 (mountpoint -q /mnt/runs || gcsfuse --implicit-dirs $(printf '%q' "$GCS_BUCKET") /mnt/runs)"
    fi
    all_hosts "cd $REMOTE_DIR && python3 -c 'import jax; print(jax.process_index(), jax.device_count())'"
    ;;
  run)
    [ $# -gt 0 ] || { echo "usage: $0 run --config=... --workdir=... [--config.key=value ...]" >&2; exit 2; }
    # Every host runs the same command; jax.distributed.initialize() finds the others.
    all_hosts "cd $REMOTE_DIR && python3 -m rail_kd_jax.main$(quote_args "$@") --config.distributed.enabled=True"
    ;;
  ssh)
    all_hosts "${1:?usage: $0 ssh 'command'}"
    ;;
  delete)
    "${TPU[@]}" delete "$TPU_NAME" --zone="$ZONE" "${PROJECT_FLAG[@]}" --quiet
    ;;
  *)
    sed -n '2,30p' "$0" >&2
    exit 2
    ;;
esac
