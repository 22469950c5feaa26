"""ConfigError: a user error in the config, the command line or an input path;
StorageError: an output that cannot be written (disk full, I/O error, no permission).

Both carry one sentence that names the field or file and what to do; `main` prints it
and exits with code 2. A ConfigError is raised before anything compiles; a StorageError
whenever a write fails, after the partial output has been removed (what was written
before it, e.g. the previous checkpoint, is left intact).
"""


class ConfigError(ValueError):
  """A user error in the config, the command line or an input path."""


class StorageError(ConfigError):
  """A write that failed (no space left, an I/O error, no permission); nothing partial is kept."""
