"""ConfigError: a user error in the config, the command line or an input path;
StorageError: an output that cannot be written (disk full, I/O error, no permission).

Both carry one sentence that names the field or file and what to do; `main` prints it
and exits with code 2. A ConfigError is raised before anything compiles; a StorageError
whenever a write fails, after the partial output has been removed (what was written
before it, e.g. the previous checkpoint, is left intact).

The training loop's own stops: `Preempted` (a requested stop, after a checkpoint; the same
command resumes) and `TrainingDiverged` (too many non-finite steps); `CorruptCheckpoint` is
how a checkpoint that fails to restore is set aside (never reaches the user).
"""

import os


class ConfigError(ValueError):
  """A user error in the config, the command line or an input path."""


class StorageError(ConfigError):
  """A write that failed (no space left, an I/O error, no permission); nothing partial is kept."""


class Preempted(Exception):
  """The run stopped at a step boundary on request (SIGTERM / Ctrl-C, or `fit(stop_at=)`)
  after saving a checkpoint; running the same command again resumes it."""

  def __init__(self, step: int, checkpoint: str | None, enabled: bool = True):
    self.step, self.checkpoint = step, checkpoint
    if not enabled:
      where = "checkpointing is disabled, nothing was saved"
    elif checkpoint is None:
      where = "no checkpoint could be written (see the warnings above)"
    elif os.path.basename(checkpoint) == str(step):
      where = f"checkpoint saved to {checkpoint}"
    else:
      where = f"this step's checkpoint could not be written, the newest is {checkpoint}"
    super().__init__(f"stopped at step {step}: {where}; run the same command again to resume")


class TrainingDiverged(RuntimeError):
  """`train.max_bad_steps` consecutive steps had a non-finite loss or gradient."""


class CorruptCheckpoint(Exception):
  """A committed checkpoint that cannot be restored or fails verification."""
