"""Checks of everything a user types or points at, before anything compiles.

Every failure is a `ConfigError` whose message is one sentence naming the field,
the value, and what would be valid; `main.py` prints it and exits with code 2
(a traceback only with --verbosity=1). docs/ERRORS.md lists the inputs the tests try
and the message each gets.

`validate_config` checks types, ranges and choices of every field and that the
folders and files named exist and are readable; `prepare_workdir` checks the
workdir. Deeper checks that need the files' contents (columns, labels, model
config, tokenizer) happen in `builders.build_run`, also as ConfigError, still
before anything compiles.
"""

from __future__ import annotations

import json
import os
import numbers

from rail_kd_jax import defaults


class ConfigError(ValueError):
  """A user error in the config, the command line or an input path."""


MODEL_TYPES = ("bert", "roberta", "distilbert")
HIDDEN_ACTS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu")
_WEIGHT_FILES = (
  "model.safetensors",
  "model.safetensors.index.json",
  "pytorch_model.bin",
  "pytorch_model.bin.index.json",
)
_EXPORT_NAMES = ("model", "student", "teacher")


# ------------------------------------------------------------------------ primitives


def _choice(name: str, value, valid) -> None:
  if value not in valid:
    shown = ", ".join(repr(v) if v == "" else str(v) for v in valid)
    raise ConfigError(f"{name}={value!r} is not valid; choose one of: {shown}")


def _is_int(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _bool(name: str, value) -> None:
  if not isinstance(value, bool):
    raise ConfigError(f"{name}={value!r} must be True or False")


def _int(name: str, value, minimum: int | None = None) -> None:
  if not _is_int(value) or (minimum is not None and value < minimum):
    bound = "" if minimum is None else f" >= {minimum}"
    raise ConfigError(f"{name}={value!r} must be an integer{bound}")


def _positive(name: str, value, allow_zero: bool = False) -> None:
  ok = _is_number(value) and (value >= 0 if allow_zero else value > 0)
  if not ok:
    bound = ">= 0" if allow_zero else "> 0"
    raise ConfigError(f"{name}={value!r} must be a number {bound}")


def _in_range(name: str, value, lo: float, hi: float, hi_open: bool = False) -> None:
  ok = _is_number(value) and lo <= value and (value < hi if hi_open else value <= hi)
  if not ok:
    raise ConfigError(f"{name}={value!r} must be a number in [{lo}, {hi}{')' if hi_open else ']'}")


def _str(name: str, value) -> None:
  if not isinstance(value, str):
    raise ConfigError(f"{name}={value!r} must be a string")


# ----------------------------------------------------------------------------- paths


def _readable_dir(name: str, path: str) -> str:
  path = os.path.expanduser(path)
  if not os.path.exists(path):
    raise ConfigError(f"{name}={path!r} does not exist")
  if not os.path.isdir(path):
    raise ConfigError(f"{name}={path!r} is a file, not a folder")
  if not os.access(path, os.R_OK | os.X_OK):
    raise ConfigError(f"{name}={path!r} is not readable")
  return path


def _readable_file(name: str, path: str) -> None:
  if not os.path.exists(path):
    raise ConfigError(f"{name}={path!r} does not exist")
  if os.path.isdir(path):
    raise ConfigError(f"{name}={path!r} is a folder, not a file")
  if not os.access(path, os.R_OK):
    raise ConfigError(f"{name}={path!r} is not readable")


def model_folder(name: str, path: str) -> str:
  """A Hugging Face folder, or a run workdir whose export/ holds one; checks config.json and weights."""
  path = _readable_dir(name, path)
  folder = path
  for export in _EXPORT_NAMES:
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


def prepare_workdir(workdir) -> None:
  """Creates the workdir and checks that it is a writable folder."""
  if not isinstance(workdir, str) or not workdir:
    raise ConfigError(f"--workdir={workdir!r} must be a folder path")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"--workdir={workdir!r} is a file, not a folder")
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise ConfigError(f"--workdir={workdir!r} cannot be created: {e.strerror}") from None
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise ConfigError(f"--workdir={workdir!r} is not writable")
  probe = os.path.join(workdir, f".write_test_{os.getpid()}")
  try:
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    raise ConfigError(f"--workdir={workdir!r} is not writable: {e.strerror}") from None


# ----------------------------------------------------------------------------- blocks


def _model(name: str, m) -> None:
  _choice(f"{name}.init", m.init, defaults.MODEL_INITS)
  _choice(f"{name}.dtype", m.dtype, defaults.DTYPES)
  for field in ("scan_layers", "remat"):
    _bool(f"{name}.{field}", m[field])
  if m.init == "pretrained":
    if not m.path:
      raise ConfigError(
        f"{name}.path is empty but {name}.init='pretrained'; give --config.{name}.path="
        "<Hugging Face folder or finetune workdir>, or use --config."
        f"{name}.init=fresh"
      )
    _str(f"{name}.path", m.path)
    model_folder(f"{name}.path", m.path)
  elif m.init == "fresh":
    _choice(f"{name}.model_type", m.model_type, MODEL_TYPES)
    _choice(f"{name}.hidden_act", m.hidden_act, HIDDEN_ACTS)
    for field in (
      "hidden_size",
      "num_hidden_layers",
      "num_attention_heads",
      "intermediate_size",
      "max_position_embeddings",
    ):
      _int(f"{name}.{field}", m[field], minimum=1)
    _int(f"{name}.vocab_size", m.vocab_size, minimum=0)
    if m.hidden_size % m.num_attention_heads:
      raise ConfigError(
        f"{name}.hidden_size={m.hidden_size} is not divisible by {name}.num_attention_heads={m.num_attention_heads}"
      )
  else:  # teacher_layers
    layers = tuple(m.teacher_layers)
    if not layers or not all(_is_int(x) and x >= 0 for x in layers):
      raise ConfigError(
        f"{name}.teacher_layers={layers!r} must be a non-empty tuple of teacher layer "
        "indices >= 0 (0-based), e.g. (0, 2, 4)"
      )
    if len(set(layers)) != len(layers):
      raise ConfigError(f"{name}.teacher_layers={layers!r} repeats a layer")
  for field in ("dropout", "attention_dropout"):
    v = m[field]
    if not _is_number(v) or (v != -1 and not 0 <= v < 1):
      raise ConfigError(f"{name}.{field}={v!r} must be in [0, 1), or -1 to keep the checkpoint's")


def _data(d) -> None:
  from rail_kd_jax.data import tasks  # pylint: disable=g-import-not-at-top

  _choice("data.synthetic", d.synthetic, ("", "tiny"))
  if not d.synthetic:
    task = str(d.task or tasks.LOCAL).lower().replace("-", "")
    aliases = {"sst": "sst2", "sts": "stsb", "mnlim": "mnli"}
    _choice("data.task", aliases.get(task, task), (tasks.LOCAL,) + tuple(sorted(tasks.GLUE_TASKS)))
    data_dir = _readable_dir("data.data_dir", d.data_dir) if d.data_dir else ""

    def check(field, path):
      if path:
        _str(field, path)
        full = os.path.expanduser(path)
        if data_dir and not os.path.isabs(full):
          full = os.path.join(data_dir, full)
        _readable_file(field, full)

    check("data.train_file", d.train_file)
    check("data.test_file", d.test_file)
    for group in ("eval_files", "ood_eval_files"):
      for split, path in dict(d[group]).items():
        check(f"data.{group}.{split}", path)
  if d.tokenizer:
    _readable_dir("data.tokenizer", d.tokenizer)
  _int("data.max_length", d.max_length, minimum=2)
  _int("data.bucket_multiple", d.bucket_multiple, minimum=1)
  _bool("data.bucket", d.bucket)
  if not all(_is_int(b) and b > 0 for b in tuple(d.buckets)):
    raise ConfigError(f"data.buckets={tuple(d.buckets)!r} must hold positive integer lengths")
  for field in ("max_train_examples", "max_eval_examples", "num_labels"):
    _int(f"data.{field}", d[field], minimum=0)
  if d.cache_dir:
    prepare_workdir_like("data.cache_dir", d.cache_dir)


def prepare_workdir_like(name: str, path: str) -> None:
  path = os.path.expanduser(path)
  if os.path.exists(path) and not os.path.isdir(path):
    raise ConfigError(f"{name}={path!r} is a file, not a folder")
  parent = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
  while parent and not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.access(parent or ".", os.W_OK):
    raise ConfigError(f"{name}={path!r} is not writable")


def _distill(dcfg) -> None:
  from rail_kd_jax.distill import layer_sampling, methods, pooling  # pylint: disable=g-import-not-at-top
  from rail_kd_jax.distill.config import renamed_field_message  # pylint: disable=g-import-not-at-top

  renamed = renamed_field_message(dcfg)
  if renamed:
    raise ConfigError(renamed)
  _choice("distill.method", dcfg.method, tuple(methods.METHODS))
  _choice("distill.sampling", dcfg.sampling, layer_sampling.SAMPLINGS)
  _choice("distill.resample_every", dcfg.resample_every, methods.RESAMPLE_EVERY)
  _choice("distill.pooling", dcfg.pooling, pooling.POOLINGS)
  _choice("distill.distance", dcfg.distance, methods.DISTANCES)
  _choice("distill.projection", dcfg.projection, methods.PROJECTIONS)
  _choice("distill.proj_index", dcfg.proj_index, methods.PROJ_INDEXES)
  _choice("distill.pkd_mapping", dcfg.pkd_mapping, methods.PKD_MAPPINGS)
  _choice("distill.ckd_granularity", dcfg.ckd_granularity, methods.CKD_GRANULARITIES)
  _choice("distill.preset", dcfg.preset, methods.PRESETS)
  _positive("distill.temperature", dcfg.temperature)
  _positive("distill.infonce_tau", dcfg.infonce_tau)
  for field in ("ce_weight", "kd_weight", "int_weight", "pkd_beta"):
    _positive(f"distill.{field}", dcfg[field], allow_zero=True)
  _in_range("distill.kd_alpha", dcfg.kd_alpha, 0, 1)
  _in_range("distill.collapse_threshold", dcfg.collapse_threshold, 0, 1)
  _bool("distill.center", dcfg.center)
  _int("distill.proj_dim", dcfg.proj_dim, minimum=1)
  _int("distill.resample_every_steps", dcfg.resample_every_steps, minimum=0)
  _int("distill.collapse_patience", dcfg.collapse_patience, minimum=0)


def validate_config(config, num_devices: int | None = None) -> None:
  """Static checks of the config (existence and readability of paths, no JAX)."""
  _choice("mode", config.mode, defaults.MODES)
  _choice("parallel", config.parallel, ("pmap", "shard_map"))
  _int("seed", config.seed, minimum=0)
  _int("num_devices", config.num_devices, minimum=0)
  if config.mode in ("demo", "study"):
    return  # the demo and the study validate each of their stages' configs
  if config.mode == "finetune":
    if config.model.init == "teacher_layers":
      raise ConfigError("model.init='teacher_layers' needs a teacher; use mode=distill or init=fresh|pretrained")
    _model("model", config.model)
  else:
    if config.teacher.init == "teacher_layers":
      raise ConfigError("teacher.init='teacher_layers' is not valid; choose pretrained or fresh")
    _model("teacher", config.teacher)
    _model("student", config.student)
    _distill(config.distill)
  _data(config.data)
  t = config.train
  _int("train.batch_size", t.batch_size, minimum=1)
  _int("train.eval_batch_size", t.eval_batch_size, minimum=0)
  _positive("train.num_epochs", t.num_epochs, allow_zero=True)
  _int("train.num_steps", t.num_steps, minimum=0)
  if t.num_steps == 0 and t.num_epochs == 0:
    raise ConfigError("train.num_steps and train.num_epochs are both 0; set one of them > 0")
  _int("train.grad_accum_steps", t.grad_accum_steps, minimum=1)
  _int("train.log_every", t.log_every, minimum=1)
  _int("train.eval_every", t.eval_every, minimum=0)
  for field in ("export", "plots"):
    _bool(f"train.{field}", t[field])
  _int("train.max_bad_steps", t.get("max_bad_steps", 10), minimum=1)
  nan_steps = tuple(t.get("debug_nan_steps", ()))
  if not all(_is_int(s) and s >= 1 for s in nan_steps):
    raise ConfigError(
      f"train.debug_nan_steps={nan_steps!r} must be a tuple of step numbers >= 1 (a test hook; leave it empty)"
    )
  if nan_steps and (config.mode != "distill" or config.distill.method == "none"):
    raise ConfigError(
      "train.debug_nan_steps poisons the teacher's outputs, so it needs mode='distill' with a "
      "distill.method that uses the teacher (a test hook; leave it empty)"
    )
  o = config.optim
  _positive("optim.learning_rate", o.learning_rate)
  _positive("optim.weight_decay", o.weight_decay, allow_zero=True)
  _positive("optim.clip_norm", o.clip_norm, allow_zero=True)
  _in_range("optim.warmup_ratio", o.warmup_ratio, 0, 1)
  _int("optim.warmup_steps", o.warmup_steps, minimum=-1)
  _in_range("optim.b1", o.b1, 0, 1, hi_open=True)
  _in_range("optim.b2", o.b2, 0, 1, hi_open=True)
  _positive("optim.eps", o.eps)
  c = config.checkpoint
  _bool("checkpoint.enabled", c.enabled)
  _int("checkpoint.every", c.every, minimum=0)
  _int("checkpoint.keep", c.keep, minimum=1)
  for field in ("keep_best", "async_save"):
    if field in c:
      _bool(f"checkpoint.{field}", c[field])
  if num_devices is not None:
    if t.batch_size % num_devices:
      raise ConfigError(
        f"train.batch_size={t.batch_size} is not divisible by the {num_devices} devices; "
        f"use a multiple of {num_devices}"
      )
    per_device = t.batch_size // num_devices
    if per_device % t.grad_accum_steps:
      raise ConfigError(
        f"the per-device batch ({per_device}) is not divisible by train.grad_accum_steps={t.grad_accum_steps}"
      )
    eval_bs = t.eval_batch_size or t.batch_size
    if eval_bs % num_devices:
      raise ConfigError(f"train.eval_batch_size={eval_bs} is not divisible by the {num_devices} devices")
