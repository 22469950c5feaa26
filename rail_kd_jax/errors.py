"""ConfigError: a user error in the config, the command line or an input path.

Raised before anything compiles, with one sentence that names the field or file and
what to do; `main` prints it and exits with code 2.
"""


class ConfigError(ValueError):
  """A user error in the config, the command line or an input path."""
