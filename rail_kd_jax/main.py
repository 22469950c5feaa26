r"""Command-line entry point.

  python -m rail_kd_jax.main --config=configs/tiny.py --workdir=/tmp/run \
      --config.mode=distill --config.distill.method=rail_c

Parses absl flags, loads the ml_collections config, initialises multi-host JAX
when asked, and hands over to `train.train_and_evaluate`. Nothing else lives here.
"""
from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to an ml_collections config file[:arg].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for config.json, metrics.jsonl, checkpoints, exports.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  # Imported here so that `--help` is fast and flag errors come before JAX starts.
  from rail_kd_jax import parallel, train
  from rail_kd_jax.validation import ConfigError

  config = _CONFIG.value
  try:
    parallel.maybe_initialize_distributed(config.distributed.enabled, config.distributed.coordinator,
                                          config.distributed.num_processes, config.distributed.process_id)
    train.train_and_evaluate(config, _WORKDIR.value)
  except ConfigError as e:
    # A user error: one sentence, exit code 2, no traceback unless --verbosity>=1.
    if logging.get_verbosity() >= logging.DEBUG:
      raise
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
