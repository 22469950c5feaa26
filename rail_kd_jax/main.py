"""Command-line entry point: flags -> config -> `run(config.mode)`.

  python -m rail_kd_jax.main --config=configs/tiny.py --workdir=/tmp/run \
      --config.mode=distill --config.distill.method=rail_c

Parses absl flags, loads the ml_collections config, initialises multi-host JAX
when asked, and hands `config.mode` over: finetune/distill to `train.train_and_evaluate`,
demo to `demo.run_demo`, study to `study.run_study`. Nothing else lives here.

Methods defined outside the package: $RAIL_KD_METHODS names their modules (comma-separated,
importable), each registering its rows; they are imported before the config is checked
(docs/METHODS.md, "Adding a method").

Exit codes: 0 done, or stopped by SIGTERM/Ctrl-C after saving a checkpoint (run the
same command again to resume); 1 training diverged (non-finite loss for
`train.max_bad_steps` steps) or an unexpected error; 2 a user error in the flags, the
config or an input path: one sentence, no traceback unless --verbosity>=1.
"""

from __future__ import annotations

import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Path to an ml_collections config file[:arg].", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for config.json, metrics.jsonl, checkpoints, exports.")
flags.mark_flags_as_required(["config", "workdir"])


def _verbose(argv) -> bool:
  """--verbosity>=1 (or -v>=1) on the command line: show tracebacks of user errors."""
  for i, arg in enumerate(argv):
    m = re.fullmatch(r"--?(?:verbosity|v)(?:=(-?\d+))?", arg)
    if m:
      value = m.group(1) if m.group(1) is not None else (argv[i + 1] if i + 1 < len(argv) else "0")
      try:
        return int(value) >= 1
      except ValueError:
        return False
  return False


def _user_error(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _flag_error_message(e: Exception, argv) -> str:
  text = str(e.args[0]) if e.args else str(e)
  if isinstance(e, OSError) or "Failed loading config file" in text:
    path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "?")
    cause = re.search(r"\[Errno \d+\] ([^:\n]+)", text)
    return f"--config={path} cannot be loaded ({cause.group(1) if cause else ' '.join(text.split())[:160]})"
  if isinstance(e, (KeyError, AttributeError)):
    # An override naming a field the config does not have; ml_collections suggests one.
    key = re.search(r"[A-Za-z_]\w*", text.replace("\\'", "'"))
    key = key.group(0) if key else "?"
    from rail_kd_jax.distill.methods import renamed_flag_message

    renamed = renamed_flag_message(key)
    if renamed:
      return renamed
    arg = next(
      (
        a
        for a in argv
        if a.startswith("--config.") and re.search(rf"\.{re.escape(key)}(=|\.|$)", a.split("=", 1)[0] + "=")
      ),
      f"--config.{key}",
    )
    hint = re.search(r'Did you mean "([^"]+)"', text)
    suggestion = f"; did you mean {hint.group(1)!r}?" if hint else "; see rail_kd_jax/core/defaults.py for the fields"
    return f"{arg} names no config field {key!r}{suggestion}"
  text = " ".join(text.split())
  m = re.match(r"flag (--\S+?): (.*)", text)
  if m and m.group(1).startswith("--config."):
    return f"{m.group(1)} does not fit the field's type ({m.group(2)})"
  return text.replace("flag --", "--", 1)


def parse_flags(argv):
  """absl's flag parsing, with every flag or config-file error a one-line exit 2."""
  try:
    rest = flags.FLAGS(argv)
    if _CONFIG.value is not None:
      _CONFIG.value.get("mode")  # surfaces a config file that failed to load
    return rest
  except (flags.Error, KeyError, AttributeError, OSError, SyntaxError, ValueError, TypeError) as e:
    if _verbose(argv):
      raise
    _user_error(_flag_error_message(e, argv))


def run(config, workdir: str) -> dict:
  """Runs `config.mode` in `workdir`: the training loop, or the demo or the study built on it."""
  from rail_kd_jax.experiments import demo, study
  from rail_kd_jax.training import train, workdir_lock

  with workdir_lock.held(workdir):  # a second run on this workdir is refused
    if config.mode == "demo":
      return demo.run_demo(config, workdir)
    if config.mode == "study":
      return study.run_study(config, workdir)
    return train.train_and_evaluate(config, workdir)


def main(argv):
  if len(argv) > 1:
    _user_error(f"unexpected arguments: {' '.join(argv[1:])}; overrides look like --config.train.num_steps=100")
  # Imported here, not at the top, so that `--help` and flag errors come before JAX loads.
  from rail_kd_jax.core.errors import ConfigError, Preempted, TrainingDiverged
  from rail_kd_jax.distill import methods
  from rail_kd_jax.training import parallel

  config = _CONFIG.value
  try:
    methods.load_plugins()  # the methods defined outside the package ($RAIL_KD_METHODS)
    parallel.maybe_initialize_distributed(
      config.distributed.enabled,
      config.distributed.coordinator,
      config.distributed.num_processes,
      config.distributed.process_id,
    )
    run(config, _WORKDIR.value)
  except ConfigError as e:
    # A user error: one sentence, exit code 2, no traceback unless --verbosity>=1.
    if logging.get_verbosity() >= logging.DEBUG:
      raise
    logging.error("%s", e)
    _user_error(str(e))
  except Preempted as e:
    # Stopped cleanly at a step boundary after saving: exit 0, the same command resumes.
    print(f"preempted: {e}", file=sys.stderr)
  except TrainingDiverged as e:
    if logging.get_verbosity() >= logging.DEBUG:
      raise
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
