"""Field checks that raise `ConfigError` with one sentence naming the field and the value.

`checks.choice("distill.pooling", value, POOLINGS)` and the like: the validation of the
config (`validation.py`) and of the distillation options (`distill.methods.check_options`)
both use these, so a rule is worded one way wherever it is checked.
"""

from __future__ import annotations

import json
import numbers
import os

from rail_kd_jax.core.errors import ConfigError


def is_int(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def choice(name: str, value, valid) -> None:
  if value not in valid:
    shown = ", ".join(repr(v) if v == "" else str(v) for v in valid)
    raise ConfigError(f"{name}={value!r} is not valid; choose one of: {shown}")


def boolean(name: str, value) -> None:
  if not isinstance(value, bool):
    raise ConfigError(f"{name}={value!r} must be True or False")


def integer(name: str, value, minimum: int | None = None) -> None:
  if not is_int(value) or (minimum is not None and value < minimum):
    bound = "" if minimum is None else f" >= {minimum}"
    raise ConfigError(f"{name}={value!r} must be an integer{bound}")


def positive(name: str, value, allow_zero: bool = False) -> None:
  ok = is_number(value) and (value >= 0 if allow_zero else value > 0)
  if not ok:
    bound = ">= 0" if allow_zero else "> 0"
    raise ConfigError(f"{name}={value!r} must be a number {bound}")


def in_range(name: str, value, lo: float, hi: float, hi_open: bool = False) -> None:
  ok = is_number(value) and lo <= value and (value < hi if hi_open else value <= hi)
  if not ok:
    raise ConfigError(f"{name}={value!r} must be a number in [{lo}, {hi}{')' if hi_open else ']'}")


def string(name: str, value) -> None:
  if not isinstance(value, str):
    raise ConfigError(f"{name}={value!r} must be a string")


_WEIGHT_FILES = (
  "model.safetensors",
  "model.safetensors.index.json",
  "pytorch_model.bin",
  "pytorch_model.bin.index.json",
)
# A run workdir holds its trained model under export/<one of these>/ (train.py writes it).
EXPORT_NAMES = ("model", "student", "teacher")


def readable_dir(name: str, path: str) -> str:
  """`path` (user-expanded) when it is an existing readable folder; ConfigError naming `name` otherwise."""
  path = os.path.expanduser(path)
  if not os.path.exists(path):
    raise ConfigError(f"{name}={path!r} does not exist")
  if not os.path.isdir(path):
    raise ConfigError(f"{name}={path!r} is a file, not a folder")
  if not os.access(path, os.R_OK | os.X_OK):
    raise ConfigError(f"{name}={path!r} is not readable")
  return path


def readable_file(name: str, path: str) -> None:
  """ConfigError naming `name` unless `path` is an existing readable file."""
  if not os.path.exists(path):
    raise ConfigError(f"{name}={path!r} does not exist")
  if os.path.isdir(path):
    raise ConfigError(f"{name}={path!r} is a folder, not a file")
  if not os.access(path, os.R_OK):
    raise ConfigError(f"{name}={path!r} is not readable")


def model_folder(name: str, path: str) -> str:
  """A Hugging Face folder, or a run workdir whose export/ holds one; checks config.json and weights."""
  path = readable_dir(name, path)
  folder = path
  for export in EXPORT_NAMES:
    candidate = os.path.join(path, "export", export)
    if os.path.isfile(os.path.join(candidate, "config.json")):
      folder = candidate
      break
  cfg_file = os.path.join(folder, "config.json")
  if not os.path.isfile(cfg_file):
    raise ConfigError(
      f"{name}={path!r} has no config.json (nor export/model/config.json); point it at a "
      "Hugging Face model folder or a finished finetune workdir"
    )
  try:
    with open(cfg_file) as f:
      cfg = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ConfigError(f"{name}: {cfg_file!r} is not a readable JSON file ({e})") from None
  if not isinstance(cfg, dict):
    raise ConfigError(f"{name}: {cfg_file!r} does not hold a JSON object")
  if not any(os.path.isfile(os.path.join(folder, w)) for w in _WEIGHT_FILES):
    raise ConfigError(f"{name}={path!r} has a config.json but no weights ({' or '.join(_WEIGHT_FILES[::2])})")
  return folder
