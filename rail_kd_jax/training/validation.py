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

import os

from rail_kd_jax import models
from rail_kd_jax.core import checks, defaults
from rail_kd_jax.core.errors import ConfigError
from rail_kd_jax.data import loader, tasks
from rail_kd_jax.distill import methods
from rail_kd_jax.models import config as model_config


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
  checks.choice(f"{name}.init", m.init, defaults.MODEL_INITS)
  checks.choice(f"{name}.dtype", m.dtype, defaults.DTYPES)
  checks.choice(f"{name}.attention", m.attention, models.ATTENTION_IMPLS)
  for field in ("scan_layers", "remat"):
    checks.boolean(f"{name}.{field}", m[field])
  if m.init == "pretrained":
    if not m.path:
      raise ConfigError(
        f"{name}.path is empty but {name}.init='pretrained'; give --config.{name}.path="
        "<Hugging Face folder or finetune workdir>, or use --config."
        f"{name}.init=fresh"
      )
    checks.string(f"{name}.path", m.path)
    checks.model_folder(f"{name}.path", m.path)
  elif m.init == "fresh":
    checks.choice(f"{name}.model_type", m.model_type, model_config.MODEL_TYPES)
    checks.choice(f"{name}.hidden_act", m.hidden_act, model_config.ACTIVATIONS)
    for field in (
      "hidden_size",
      "num_hidden_layers",
      "num_attention_heads",
      "intermediate_size",
      "max_position_embeddings",
    ):
      checks.integer(f"{name}.{field}", m[field], minimum=1)
    checks.integer(f"{name}.vocab_size", m.vocab_size, minimum=0)
    if m.hidden_size % m.num_attention_heads:
      raise ConfigError(
        f"{name}.hidden_size={m.hidden_size} is not divisible by {name}.num_attention_heads={m.num_attention_heads}"
      )
  else:  # teacher_layers
    layers = tuple(m.teacher_layers)
    if not layers or not all(checks.is_int(x) and x >= 0 for x in layers):
      raise ConfigError(
        f"{name}.teacher_layers={layers!r} must be a non-empty tuple of teacher layer "
        "indices >= 0 (0-based), e.g. (0, 2, 4)"
      )
    if len(set(layers)) != len(layers):
      raise ConfigError(f"{name}.teacher_layers={layers!r} repeats a layer")
  for field in ("dropout", "attention_dropout"):
    v = m[field]
    if not checks.is_number(v) or (v != -1 and not 0 <= v < 1):
      raise ConfigError(f"{name}.{field}={v!r} must be in [0, 1), or -1 to keep the checkpoint's")


def _data(d) -> None:
  checks.choice("data.synthetic", d.synthetic, ("", "tiny"))
  if not d.synthetic:
    checks.choice("data.task", tasks.task_name(d.task), (tasks.LOCAL,) + tuple(sorted(tasks.GLUE_TASKS)))
    data_dir = checks.readable_dir("data.data_dir", d.data_dir) if d.data_dir else ""

    def check(field, path):
      if path:
        checks.string(field, path)
        full = os.path.expanduser(path)
        if data_dir and not os.path.isabs(full):
          full = os.path.join(data_dir, full)
        checks.readable_file(field, full)

    check("data.train_file", d.train_file)
    check("data.test_file", d.test_file)
    for group in ("eval_files", "ood_eval_files"):
      for split, path in dict(d[group]).items():
        check(f"data.{group}.{split}", path)
  if d.unlabeled_file:
    checks.string("data.unlabeled_file", d.unlabeled_file)
    full = os.path.expanduser(d.unlabeled_file)
    # Resolved as data/tasks.py does: against data.data_dir for a local task only.
    if d.data_dir and not d.synthetic and tasks.task_name(d.task) == tasks.LOCAL and not os.path.isabs(full):
      full = os.path.join(os.path.expanduser(d.data_dir), full)
    checks.readable_file("data.unlabeled_file", full)
  checks.positive("data.unlabeled_ratio", d.unlabeled_ratio, allow_zero=True)
  if d.tokenizer:
    checks.readable_dir("data.tokenizer", d.tokenizer)
  checks.integer("data.max_length", d.max_length, minimum=2)
  checks.integer("data.bucket_multiple", d.bucket_multiple, minimum=1)
  checks.boolean("data.bucket", d.bucket)
  if not all(checks.is_int(b) and b > 0 for b in tuple(d.buckets)):
    raise ConfigError(f"data.buckets={tuple(d.buckets)!r} must hold positive integer lengths")
  for field in ("max_train_examples", "max_eval_examples", "num_labels"):
    checks.integer(f"data.{field}", d[field], minimum=0)
  if d.cache_dir and d.cache_dir != loader.CACHE_OFF:
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


def validate_config(config, num_devices: int | None = None) -> None:
  """Static checks of the config (existence and readability of paths, no JAX)."""
  checks.choice("mode", config.mode, defaults.MODES)
  checks.choice("parallel", config.parallel, ("pmap", "shard_map"))
  checks.integer("seed", config.seed, minimum=0)
  checks.integer("num_devices", config.num_devices, minimum=0)
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
    methods.check_options(config.distill)
  if config.data.unlabeled_file and (
    config.mode != "distill" or not methods.get_method(config.distill.method).needs_teacher
  ):
    what = "mode=finetune" if config.mode != "distill" else f"distill.method={config.distill.method!r}"
    raise ConfigError(
      f"data.unlabeled_file={config.data.unlabeled_file!r} has no labels, so only a teacher can teach from it, "
      f"and {what} has none; use mode=distill with a method other than 'none', or drop the file"
    )
  _data(config.data)
  t = config.train
  checks.integer("train.batch_size", t.batch_size, minimum=1)
  checks.integer("train.eval_batch_size", t.eval_batch_size, minimum=0)
  checks.positive("train.num_epochs", t.num_epochs, allow_zero=True)
  checks.integer("train.num_steps", t.num_steps, minimum=0)
  if t.num_steps == 0 and t.num_epochs == 0:
    raise ConfigError("train.num_steps and train.num_epochs are both 0; set one of them > 0")
  checks.integer("train.grad_accum_steps", t.grad_accum_steps, minimum=1)
  checks.integer("train.log_every", t.log_every, minimum=1)
  checks.integer("train.eval_every", t.eval_every, minimum=0)
  for field in ("export", "plots"):
    checks.boolean(f"train.{field}", t[field])
  checks.integer("train.max_bad_steps", t.max_bad_steps, minimum=1)
  o = config.optim
  checks.positive("optim.learning_rate", o.learning_rate)
  checks.positive("optim.weight_decay", o.weight_decay, allow_zero=True)
  checks.positive("optim.clip_norm", o.clip_norm, allow_zero=True)
  checks.in_range("optim.warmup_ratio", o.warmup_ratio, 0, 1)
  checks.integer("optim.warmup_steps", o.warmup_steps, minimum=-1)
  checks.in_range("optim.b1", o.b1, 0, 1, hi_open=True)
  checks.in_range("optim.b2", o.b2, 0, 1, hi_open=True)
  checks.positive("optim.eps", o.eps)
  c = config.checkpoint
  checks.boolean("checkpoint.enabled", c.enabled)
  checks.integer("checkpoint.every", c.every, minimum=0)
  checks.integer("checkpoint.keep", c.keep, minimum=1)
  for field in ("keep_best", "async_save"):
    checks.boolean(f"checkpoint.{field}", c[field])
  if num_devices is not None:
    check_devices(config, num_devices)


def check_devices(config, num_devices: int) -> None:
  """The batch sizes against the devices the run uses (ConfigError when they do not divide)."""
  t = config.train
  if t.batch_size % num_devices:
    raise ConfigError(
      f"train.batch_size={t.batch_size} is not divisible by the {num_devices} devices; use a multiple of {num_devices}"
    )
  per_device = t.batch_size // num_devices
  if per_device % t.grad_accum_steps:
    raise ConfigError(
      f"the per-device batch ({per_device}) is not divisible by train.grad_accum_steps={t.grad_accum_steps}"
    )
  eval_bs = t.eval_batch_size or t.batch_size
  if eval_bs % num_devices:
    raise ConfigError(f"train.eval_batch_size={eval_bs} is not divisible by the {num_devices} devices")
