"""From a config to everything a run needs: data arrays, models, method, step spec.

`build_run` composes the named parts (`load_task`, `load_run_tokenizer`, `build_models`,
`encode_splits`, `make_step_spec`); the benchmark builds its step specs with `make_step_spec`.

All user-facing checks happen here, before anything is compiled; a user error
surfaces as `errors.ConfigError` with one sentence.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from rail_kd_jax import models
from rail_kd_jax.core import checks
from rail_kd_jax.core.errors import ConfigError
from rail_kd_jax.data import loader, synthetic, tasks, tokenize
from rail_kd_jax.distill import methods as methods_lib
from rail_kd_jax.outputs import task_metrics
from rail_kd_jax.training import optim, parallel, teacher_cache, validation
from rail_kd_jax.training.step import StepSpec


@dataclasses.dataclass
class Run:
  """Everything built from a config before the first step."""

  config: Any
  task_spec: tasks.TaskSpec
  tokenizer: Any
  arrays: dict[str, dict[str, np.ndarray]]
  eval_splits: tuple[str, ...]
  test_splits: tuple[str, ...]
  student: models.Encoder
  student_params: Any
  teacher: models.Encoder | None
  teacher_params: Any
  head_params: Any
  step_spec: StepSpec
  steps_per_epoch: int
  total_steps: int
  export_name: str
  scored_test_splits: tuple[str, ...] = ()  # test splits whose files carry labels: scored and predicted
  data_sources: dict[str, str] = dataclasses.field(default_factory=dict)  # split -> the file it was read from


def _dtype(name: str):
  return jnp.bfloat16 if name == "bfloat16" else jnp.float32


def _dropout_overrides(mcfg) -> dict:
  kw = {}
  if mcfg.dropout >= 0:
    kw["hidden_dropout_prob"] = float(mcfg.dropout)
    kw["classifier_dropout"] = float(mcfg.dropout)
  if mcfg.attention_dropout >= 0:
    kw["attention_probs_dropout_prob"] = float(mcfg.attention_dropout)
  return kw


def _trainable(model: models.Encoder, field: str) -> models.Encoder:
  """`model`, after checking that its attention form can run a training step (the teacher
  only runs deterministically): 'dot_product' has no attention dropout."""
  rate = model.config.attention_probs_dropout_prob
  if field != "teacher" and model.attention == "dot_product" and rate > 0:
    raise ConfigError(
      f"{field}.attention='dot_product' applies no attention dropout, but the {field}'s "
      f"attention_probs_dropout_prob={rate}; set --config.{field}.attention_dropout=0 or "
      f"--config.{field}.attention=matmul"
    )
  return model


def build_model(
  mcfg, field: str, num_labels: int, vocab_size: int, rng: jax.Array, teacher: tuple[models.Encoder, Any] | None = None
) -> tuple[models.Encoder, Any]:
  """One encoder from a `model_config()` block (pretrained | fresh | teacher_layers)."""
  module_kw = dict(
    dtype=_dtype(mcfg.dtype), scan_layers=bool(mcfg.scan_layers), remat=bool(mcfg.remat), attention=mcfg.attention
  )
  try:
    if mcfg.init == "pretrained":
      path = checks.model_folder(f"{field}.path", mcfg.path)
      model, params = models.load_pretrained(path, num_labels=num_labels, rng=rng, **module_kw)
      overrides = _dropout_overrides(mcfg)
      if overrides:
        model = model.clone(config=dataclasses.replace(model.config, **overrides))
      return _trainable(model, field), params
    if mcfg.init == "fresh":
      config = models.EncoderConfig(
        model_type=mcfg.model_type,
        vocab_size=int(mcfg.vocab_size or vocab_size),
        hidden_size=mcfg.hidden_size,
        num_hidden_layers=mcfg.num_hidden_layers,
        num_attention_heads=mcfg.num_attention_heads,
        intermediate_size=mcfg.intermediate_size,
        max_position_embeddings=mcfg.max_position_embeddings,
        hidden_act=mcfg.hidden_act,
        initializer_range=float(mcfg.initializer_range),
        type_vocab_size=0 if mcfg.model_type == "distilbert" else 2,
        pad_token_id=1 if mcfg.model_type == "roberta" else 0,
        num_labels=num_labels,
      )
      drop = _dropout_overrides(mcfg)
      if drop:
        config = dataclasses.replace(config, **drop)
      model, params = models.student.fresh(config, rng, **module_kw)
      return _trainable(model, field), params
    # teacher_layers
    if teacher is None:
      raise ConfigError(f"{field}.init='teacher_layers' needs a teacher")
    layers = tuple(int(x) for x in mcfg.teacher_layers)
    model, params = models.student.from_teacher_layers(
      teacher[0], teacher[1], layers, rng=rng, num_labels=num_labels, **module_kw, **_dropout_overrides(mcfg)
    )
    return _trainable(model, field), params
  except ConfigError:
    raise
  except (ValueError, FileNotFoundError) as e:
    raise ConfigError(f"{field}: {e}") from None


def _tokenizer_path(config) -> str:
  if config.data.tokenizer:
    return config.data.tokenizer
  mcfg = config.model if config.mode == "finetune" else config.teacher
  if mcfg.init == "pretrained":
    return checks.model_folder(("model" if config.mode == "finetune" else "teacher") + ".path", mcfg.path)
  if config.mode == "distill" and config.student.init == "pretrained":
    return checks.model_folder("student.path", config.student.path)
  raise ConfigError("data.tokenizer is empty and no model is pretrained; give --config.data.tokenizer=<folder>")


def _resolve_data(config, workdir: str):
  """Applies `data.synthetic` (generated data under the workdir) to a copy of config.data."""
  data_cfg = config.data
  if data_cfg.synthetic == "tiny":
    tiny = synthetic.make_tiny_dataset(os.path.join(workdir, "data"))
    data_cfg = data_cfg.copy_and_resolve_references()
    with data_cfg.unlocked():
      data_cfg.task = "local"
      data_cfg.train_file = tiny.train_file
      data_cfg.eval_files = {"dev": tiny.dev_file}
      data_cfg.test_file = tiny.test_file
      data_cfg.label_names = tiny.label_names
      if not data_cfg.tokenizer:
        data_cfg.tokenizer = tiny.tokenizer_dir
  elif data_cfg.synthetic:
    raise ConfigError(f"data.synthetic={data_cfg.synthetic!r} is not valid; choose '' or 'tiny'")
  return data_cfg


def total_steps_for(config, steps_per_epoch: int) -> int:
  if config.train.num_steps > 0:
    return int(config.train.num_steps)
  return max(1, int(round(config.train.num_epochs * steps_per_epoch)))


def resolve_presets(config):
  """A copy of `config` with `distill.preset` applied (`methods.apply_preset`): what runs."""
  if config.mode != "distill" or config.distill.preset == "uniform":
    return config
  try:
    dcfg = methods_lib.apply_preset(config.distill)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.distill = dcfg
  return config


@dataclasses.dataclass
class Data:
  """The task and its tokenized splits (`build_data`)."""

  task_spec: tasks.TaskSpec
  tokenizer: Any
  tokenizer_path: str
  arrays: dict[str, dict[str, np.ndarray]]
  eval_splits: tuple[str, ...]
  test_splits: tuple[str, ...]
  scored_test_splits: tuple[str, ...] = ()  # test splits whose files carry labels
  sources: dict[str, str] = dataclasses.field(default_factory=dict)  # split -> file (`tasks.Task.sources`)


@dataclasses.dataclass
class Models:
  """The student (the model trained), the teacher (distill mode) and the method (`build_models`)."""

  student: models.Encoder
  student_params: Any
  teacher: models.Encoder | None
  teacher_params: Any
  method: methods_lib.Method
  head_params: Any
  export_name: str

  @property
  def num_student_layers(self) -> int:
    return self.student.config.num_hidden_layers

  @property
  def num_teacher_layers(self) -> int:
    return self.teacher.config.num_hidden_layers if self.teacher is not None else self.num_student_layers


def load_task(config, workdir: str):
  """(data config, Task): `data.synthetic` applied and the task's files read; ConfigError on bad input."""
  data_cfg = _resolve_data(config, workdir)
  try:
    task = tasks.load_task(data_cfg)
  except (ValueError, FileNotFoundError) as e:
    raise ConfigError(str(e)) from None
  if "train" not in task.splits:
    raise ConfigError("the data has no train split; set data.train_file (local) or data.data_dir (GLUE)")
  return data_cfg, task


def load_run_tokenizer(config, data_cfg) -> tuple[Any, str]:
  """(tokenizer, its folder): data.tokenizer, else the pretrained model's own."""
  tok_path = data_cfg.tokenizer or _tokenizer_path(config)
  try:
    return tokenize.load_tokenizer(tok_path), tok_path
  except ValueError as e:
    raise ConfigError(str(e)) from None


def build_models(config, num_labels: int, vocab_size: int) -> Models:
  """The encoders from `model` (finetune) or `teacher` + `student` (distill), the method and
  its head params, all from `config.seed`; the method's options checked against the models."""
  rng = jax.random.PRNGKey(config.seed)
  k_teacher, k_student, k_heads = jax.random.split(rng, 3)
  teacher = teacher_params = None
  if config.mode == "finetune":
    student, student_params = build_model(config.model, "model", num_labels, vocab_size, k_student)
    method = methods_lib.get_method("none")
    export_name = "model"
  else:
    teacher, teacher_params = build_model(config.teacher, "teacher", num_labels, vocab_size, k_teacher)
    student, student_params = build_model(
      config.student, "student", num_labels, vocab_size, k_student, teacher=(teacher, teacher_params)
    )
    method = methods_lib.get_method(config.distill.method)
    export_name = "student"
  scfg = student.config
  num_student_layers = scfg.num_hidden_layers
  num_teacher_layers = teacher.config.num_hidden_layers if teacher is not None else num_student_layers
  teacher_dim = teacher.config.hidden_size if teacher is not None else scfg.hidden_size
  if config.mode == "distill":
    for line in methods_lib.validate(
      config.distill, num_student_layers, num_teacher_layers, scfg.hidden_size, teacher_dim
    ):
      logging.warning("%s", line)
    if config.distill.cache_teacher:
      teacher_cache.check_supported(config.distill)
    if teacher.config.vocab_size != scfg.vocab_size:
      logging.warning(
        "teacher and student vocabularies differ (%d vs %d): they must share a tokenizer",
        teacher.config.vocab_size,
        scfg.vocab_size,
      )
  head_params = method.init_heads(
    k_heads, config.distill, scfg.hidden_size, teacher_dim, num_student_layers, num_teacher_layers
  )
  return Models(student, student_params, teacher, teacher_params, method, head_params, export_name)


def encode_splits(task, tokenizer, tok_path: str, data_cfg, student: models.Encoder) -> Data:
  """Every split of `task` tokenized to the student's positions (`loader.encode`)."""
  scfg = student.config
  vocab_size = len(tokenizer)
  if vocab_size > scfg.vocab_size:
    raise ConfigError(
      f"the tokenizer at {tok_path!r} has {vocab_size} tokens but the model's embedding "
      f"table has {scfg.vocab_size} rows"
    )
  max_len = min(int(data_cfg.max_length), scfg.max_position_embeddings - (2 if scfg.model_type == "roberta" else 0))
  if max_len < int(data_cfg.max_length):
    logging.warning("data.max_length=%d exceeds the model's positions; using %d", data_cfg.max_length, max_len)
  spec = task.spec
  cache_dir = loader.cache_folder(data_cfg.cache_dir)
  arrays = {}
  for split, cols in task.splits.items():
    arrays[split] = loader.encode(cols, tokenizer, spec, max_len, cache_dir=cache_dir)
    if "idx" in cols:
      arrays[split]["idx"] = np.asarray(cols["idx"])
  if task.unlabeled is not None:
    extra = loader.encode(task.unlabeled, tokenizer, spec, max_len, cache_dir=cache_dir)
    extra["idx"] = np.asarray(task.unlabeled["idx"])
    arrays["train"] = with_unlabeled(arrays["train"], extra)
  eval_splits = tuple(s for s in arrays if s != "train" and s not in spec.test_splits)
  test_splits = tuple(s for s in arrays if s in spec.test_splits)
  scored = tuple(s for s in test_splits if spec.label_column in task.splits[s])
  return Data(spec, tokenizer, tok_path, arrays, eval_splits, test_splits, scored, dict(task.sources))


def with_unlabeled(train: dict[str, np.ndarray], extra: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The train arrays followed by unlabelled ones, with `label_mask` float32 [N]: 1 for a
  labelled example, 0 for an unlabelled one (its `labels` hold -1 and count in no cross-entropy)."""
  if set(train) != set(extra):
    raise ValueError(f"unlabelled arrays {sorted(extra)} do not match the train arrays {sorted(train)}")
  out = {k: np.concatenate([train[k], extra[k].astype(train[k].dtype)]) for k in train}
  out["label_mask"] = np.concatenate(
    [np.ones(len(train["labels"]), np.float32), np.zeros(len(extra["labels"]), np.float32)]
  )
  return out


def make_step_spec(
  config,
  student: models.Encoder,
  teacher: models.Encoder | None,
  method: methods_lib.Method,
  *,
  steps_per_epoch: int,
  total_steps: int,
  is_regression: bool = False,
  cached_teacher: bool = False,
) -> StepSpec:
  """The static half of the train step: modules, method, options, optimizer and schedule."""
  num_student_layers = student.config.num_hidden_layers
  tx, schedule = optim.make_optimizer(config.optim, total_steps)
  return StepSpec(
    student=student,
    teacher=teacher,
    method=method,
    dcfg=config.distill,
    tx=tx,
    schedule=schedule,
    seed=int(config.seed),
    num_student_layers=num_student_layers,
    num_teacher_layers=teacher.config.num_hidden_layers if teacher is not None else num_student_layers,
    steps_per_epoch=steps_per_epoch,
    is_regression=is_regression,
    grad_accum_steps=int(config.train.grad_accum_steps),
    cached_teacher=cached_teacher,
  )


def check_config(
  config, *, num_student_layers: int, num_teacher_layers: int, student_dim: int, teacher_dim: int
) -> None:
  """Every check a run makes before its models exist: `validation.validate_config`, the
  preset, and the method's rules against the given model shapes. ConfigError on a bad one."""
  validation.validate_config(config)
  dcfg = resolve_presets(config).distill
  try:
    methods_lib.validate(dcfg, num_student_layers, num_teacher_layers, student_dim, teacher_dim)
  except ConfigError:
    raise
  except ValueError as e:
    raise ConfigError(str(e)) from None


def build_run(config, workdir: str, num_devices: int) -> Run:
  """Loads data and models and builds the step spec; raises ConfigError on bad input.

  The parts, in order: `load_task`, `load_run_tokenizer`, `build_models`, `encode_splits`,
  the schedule's length, `make_step_spec`, and the teacher cache when configured.
  """
  config = resolve_presets(config)
  data_cfg, task = load_task(config, workdir)
  tokenizer, tok_path = load_run_tokenizer(config, data_cfg)
  try:
    built = build_models(config, task.spec.num_labels, len(tokenizer))
  except ConfigError:
    raise
  except ValueError as e:  # methods.validate's checks against the models
    raise ConfigError(str(e)) from None
  data = encode_splits(task, tokenizer, tok_path, data_cfg, built.student)
  arrays = data.arrays

  global_bs = int(config.train.batch_size)
  n_train = len(arrays["train"]["labels"])
  if "label_mask" in arrays["train"]:
    n_labeled = int(arrays["train"]["label_mask"].sum())
    logging.info(
      "train split: %d labelled + %d unlabelled examples (data.unlabeled_file, teacher-driven terms only)",
      n_labeled,
      n_train - n_labeled,
    )
  if n_train < global_bs:
    raise ConfigError(f"the train split has {n_train} examples, fewer than train.batch_size={global_bs}")
  steps_per_epoch = loader.steps_per_epoch(n_train, global_bs, drop_remainder=True)
  total_steps = total_steps_for(config, steps_per_epoch)
  if config.mode == "distill":
    for line in methods_lib.resampling_warnings(
      config.distill, built.num_student_layers, built.num_teacher_layers, total_steps, steps_per_epoch
    ):
      logging.warning("%s", line)
  step_spec = make_step_spec(
    config,
    built.student,
    built.teacher,
    built.method,
    steps_per_epoch=steps_per_epoch,
    total_steps=total_steps,
    is_regression=data.task_spec.is_regression,
  )
  teacher_params = built.teacher_params
  if config.mode == "distill" and config.distill.cache_teacher and built.method.needs_teacher:
    # Teacher cache: the train step reads the teacher's outputs from the batch and
    # never runs (nor holds) the teacher; it is only needed to build the cache.
    arrays["train"] = teacher_cache.attach(config, workdir, step_spec, teacher_params, arrays["train"], num_devices)
    step_spec = dataclasses.replace(step_spec, cached_teacher=True)
    teacher_params = None
  logging.info(
    "task %s: %s; %d steps/epoch, %d steps",
    data.task_spec.name,
    ", ".join(f"{k}={len(v['input_ids'])}" for k, v in arrays.items()),
    steps_per_epoch,
    total_steps,
  )
  return Run(
    config=config,
    task_spec=data.task_spec,
    tokenizer=tokenizer,
    arrays=arrays,
    eval_splits=data.eval_splits,
    test_splits=data.test_splits,
    student=built.student,
    student_params=built.student_params,
    teacher=built.teacher,
    teacher_params=teacher_params,
    head_params=built.head_params,
    step_spec=step_spec,
    steps_per_epoch=steps_per_epoch,
    total_steps=total_steps,
    export_name=built.export_name,
    scored_test_splits=data.scored_test_splits,
    data_sources=data.sources,
  )


@dataclasses.dataclass
class Setup:
  """A run ready to train (`setup`): where it writes, its devices, and everything built."""

  workdir: str
  par: parallel.DataParallel
  run: Run  # run.config: the preset-resolved config, what runs (config.json)


def setup(config, workdir: str) -> Setup:
  """Everything before the first step, once: the config's checks, the workdir, the devices,
  data, models and method (`build_run`, presets applied), and config.json with the values that
  run. Raises ConfigError before anything compiles."""
  validation.validate_config(config)
  validation.prepare_workdir(workdir)
  par = parallel.DataParallel(config.parallel, config.num_devices)
  validation.check_devices(config, par.num_devices)
  logging.info(
    "devices: %d x %s (%s), %d process(es); parallel=%s",
    par.num_devices,
    jax.devices()[0].device_kind,
    jax.default_backend(),
    jax.process_count(),
    config.parallel,
  )
  run = build_run(config, workdir, par.num_devices)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(run.config.to_json_best_effort(indent=2, sort_keys=True))
  logging.info(
    "student: %s params; teacher: %s",
    f"{models.param_count(run.student_params):,}",
    "none" if run.teacher_params is None else f"{models.param_count(run.teacher_params):,} params (frozen)",
  )
  train = run.arrays["train"]
  labeled = train["labels"] if "label_mask" not in train else train["labels"][train["label_mask"] > 0]
  warning = task_metrics.imbalance_warning(run.task_spec, labeled)
  if warning:
    logging.warning("%s", warning)
  return Setup(workdir, par, run)
