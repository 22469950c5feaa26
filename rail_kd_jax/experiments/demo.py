"""The embedded demo: a real teacher, three students, one table (configs/demo.py).

`run_demo(config, workdir)` only orchestrates; each stage is an ordinary finetune/distill
run (`stages.run_stage`):

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

import os
import time

from absl import logging

from rail_kd_jax.core import files
from rail_kd_jax.core.errors import ConfigError
from rail_kd_jax.distill import methods as methods_lib
from rail_kd_jax.experiments import stages
from rail_kd_jax.outputs import plots


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
  if d.student_init not in stages.STUDENT_INITS:
    raise ConfigError(
      f"demo.student_init={d.student_init!r} is not valid; choose one of: {', '.join(stages.STUDENT_INITS)}"
    )
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


def run_demo(config, workdir: str) -> dict:
  """Runs every stage of configs/demo.py under `workdir`; returns {stage name: result row}."""

  _validate(config)
  t_start = time.perf_counter()
  os.makedirs(workdir, exist_ok=True)
  d = config.demo
  reuse = bool(d.reuse)
  teacher_src = d.teacher_path or stages.default_teacher_path()
  data, data_files = stages.prepare_data(d, workdir)
  data_key = stages.fingerprint({k: os.path.abspath(v) for k, v in data_files.items()}, data.counts)

  rows = []
  t_cfg = stages.teacher_config(config, data_files, teacher_src)
  teacher = stages.run_stage("teacher", "finetune", t_cfg, workdir, reuse, depends_on=data_key)
  teacher["label"] = f"teacher ({teacher.get('layers', '?')}-layer, fine-tuned)"
  rows.append(teacher)

  layers = tuple(int(x) for x in d.student_layers)
  if d.student_init == "pretrained":
    init = {"init": "pretrained", "path": stages.prepare_student_init(config, workdir, teacher_src)}
  else:
    init = {"init": "teacher_layers", "teacher_layers": layers}
  teacher_dir = teacher["workdir"]
  for method in d.methods:
    s_cfg = stages.student_config(config, data_files, teacher_dir, init, method)
    row = stages.run_stage(
      f"student_{method}", method, s_cfg, workdir, reuse, depends_on=stages.fingerprint(teacher["run_id"], list(layers))
    )
    row["label"] = f"{len(layers)}-layer student, {stages.ROW_NAMES.get(method, method)}"
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
  files.write_json(os.path.join(workdir, "results.json"), [{k: r[k] for k in keys if k in r} for r in rows])
  if config.train.plots:
    plots.write_demo_chart(rows, os.path.join(workdir, "demo_comparison.png"))
  print("\n".join(md), flush=True)  # the demo's answer, for the person who ran it
  logging.info("demo finished in %.0f s; results in %s", total, os.path.join(workdir, "results.md"))
  return {r["name"]: r for r in rows}
