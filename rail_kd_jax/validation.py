"""Checks of everything a user types or points at, before anything compiles.

Every failure is a `ConfigError` whose message is one sentence naming the field,
the value, and what would be valid; `main.py` prints it and exits with code 2.
"""
from __future__ import annotations

import os

from rail_kd_jax import defaults


class ConfigError(ValueError):
  """A user error in the config, the command line or an input path."""


def _choice(name: str, value, valid) -> None:
  if value not in valid:
    raise ConfigError(f"{name}={value!r} is not valid; choose one of: {', '.join(map(str, valid))}")


def _positive(name: str, value, allow_zero: bool = False) -> None:
  ok = value >= 0 if allow_zero else value > 0
  if not isinstance(value, (int, float)) or isinstance(value, bool) or not ok:
    bound = ">= 0" if allow_zero else "> 0"
    raise ConfigError(f"{name}={value!r} must be a number {bound}")


def _model(name: str, m, mode_needs_path: bool) -> None:
  _choice(f"{name}.init", m.init, defaults.MODEL_INITS)
  _choice(f"{name}.dtype", m.dtype, defaults.DTYPES)
  if m.init == "pretrained":
    if not m.path:
      raise ConfigError(f"{name}.path is empty but {name}.init='pretrained'; give --config.{name}.path="
                        "<Hugging Face folder or finetune workdir>, or use --config."
                        f"{name}.init=fresh")
    if not os.path.isdir(m.path):
      raise ConfigError(f"{name}.path={m.path!r} is not a folder")
  elif m.init == "fresh":
    for field in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
      _positive(f"{name}.{field}", m[field])
    if m.hidden_size % m.num_attention_heads:
      raise ConfigError(f"{name}.hidden_size={m.hidden_size} is not divisible by "
                        f"{name}.num_attention_heads={m.num_attention_heads}")
  for field in ("dropout", "attention_dropout"):
    if m[field] != -1 and not 0 <= m[field] < 1:
      raise ConfigError(f"{name}.{field}={m[field]!r} must be in [0, 1), or -1 to keep the checkpoint's")


def validate_config(config, num_devices: int | None = None) -> None:
  """Static checks of the config (no file reading beyond existence, no JAX)."""
  _choice("mode", config.mode, defaults.MODES)
  _choice("parallel", config.parallel, ("pmap", "shard_map"))
  if not isinstance(config.seed, int) or config.seed < 0:
    raise ConfigError(f"seed={config.seed!r} must be a non-negative integer")
  if config.mode == "demo":
    return  # the demo validates each of its stages' configs
  if config.mode == "finetune":
    if config.model.init == "teacher_layers":
      raise ConfigError("model.init='teacher_layers' needs a teacher; use mode=distill or init=fresh|pretrained")
    _model("model", config.model, True)
  else:
    if config.teacher.init == "teacher_layers":
      raise ConfigError("teacher.init='teacher_layers' is not valid; choose pretrained or fresh")
    _model("teacher", config.teacher, True)
    _model("student", config.student, True)
  t = config.train
  _positive("train.batch_size", t.batch_size)
  _positive("train.eval_batch_size", t.eval_batch_size, allow_zero=True)
  _positive("train.num_epochs", t.num_epochs, allow_zero=True)
  _positive("train.num_steps", t.num_steps, allow_zero=True)
  if t.num_steps == 0 and t.num_epochs == 0:
    raise ConfigError("train.num_steps and train.num_epochs are both 0; set one of them > 0")
  _positive("train.grad_accum_steps", t.grad_accum_steps)
  _positive("train.log_every", t.log_every)
  _positive("train.eval_every", t.eval_every, allow_zero=True)
  o = config.optim
  _positive("optim.learning_rate", o.learning_rate)
  _positive("optim.weight_decay", o.weight_decay, allow_zero=True)
  _positive("optim.clip_norm", o.clip_norm, allow_zero=True)
  if not 0 <= o.warmup_ratio <= 1:
    raise ConfigError(f"optim.warmup_ratio={o.warmup_ratio!r} must be in [0, 1]")
  if num_devices is not None:
    if t.batch_size % num_devices:
      raise ConfigError(f"train.batch_size={t.batch_size} is not divisible by the {num_devices} devices; "
                        f"use a multiple of {num_devices}")
    per_device = t.batch_size // num_devices
    if per_device % t.grad_accum_steps:
      raise ConfigError(f"the per-device batch ({per_device}) is not divisible by "
                        f"train.grad_accum_steps={t.grad_accum_steps}")
    eval_bs = t.eval_batch_size or t.batch_size
    if eval_bs % num_devices:
      raise ConfigError(f"train.eval_batch_size={eval_bs} is not divisible by the {num_devices} devices")
