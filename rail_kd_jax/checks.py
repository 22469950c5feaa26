"""Field checks that raise `ConfigError` with one sentence naming the field and the value.

`checks.choice("distill.pooling", value, POOLINGS)` and the like: the validation of the
config (`validation.py`) and of the distillation options (`distill.methods.check_options`)
both use these, so a rule is worded one way wherever it is checked.
"""

from __future__ import annotations

import numbers

from rail_kd_jax.errors import ConfigError


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
