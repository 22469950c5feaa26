"""The task registry: GLUE's task specs, task names, and `load_task` (GLUE or local files).

A loaded task is a `Task(spec, splits, sources)`. Every split is a dict of columns:
the text column(s) named by `spec.text_columns` (lists of str), the label column
`spec.label_column` (numpy int32 class ids, or float32 scores when
`spec.is_regression`; absent for unlabelled test splits) and `idx` (int64, the
file's index/id column where it has one, else the row number).

GLUE tasks keep the column names of GLUE's original TSV files (MNLI: sentence1,
sentence2, gold_label; QQP: question1, question2, is_duplicate; ...), so extra
out-of-domain files in the same layout (HANS for MNLI, ...) load unchanged.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

import numpy as np
from absl import logging

from rail_kd_jax.data import glue, labels, local, readers, text_input
from rail_kd_jax.data.spec import LOCAL, TRAIN, Task, TaskSpec


def _spec(
  name,
  text_columns,
  label_column,
  label_names,
  main_metric,
  metric_names,
  eval_splits=("validation",),
  test_splits=("test",),
):
  num_labels = 1 if label_names is None else len(label_names)
  return TaskSpec(
    name=name,
    text_columns=tuple(text_columns),
    label_column=label_column,
    num_labels=num_labels,
    label_names=label_names,
    is_regression=label_names is None,
    main_metric=main_metric,
    metric_names=tuple(metric_names),
    eval_splits=tuple(eval_splits),
    test_splits=tuple(test_splits),
  )


# Class-id order follows the Hugging Face `glue` datasets, so teachers fine-tuned on
# them keep their label ids. The TSV files hold either these names or these ids.
GLUE_TASKS: dict[str, TaskSpec] = {
  "cola": _spec(
    "cola", ["sentence"], "label", ("unacceptable", "acceptable"), "matthews_corr", ["matthews_corr", "accuracy"]
  ),
  "sst2": _spec("sst2", ["sentence"], "label", ("negative", "positive"), "accuracy", ["accuracy"]),
  "mrpc": _spec(
    "mrpc",
    ["#1 String", "#2 String"],
    "Quality",
    ("not_equivalent", "equivalent"),
    "f1",
    ["f1", "accuracy", "combined_score"],
  ),
  "qqp": _spec(
    "qqp",
    ["question1", "question2"],
    "is_duplicate",
    ("not_duplicate", "duplicate"),
    "accuracy",
    ["accuracy", "f1", "combined_score"],
  ),
  "stsb": _spec(
    "stsb", ["sentence1", "sentence2"], "score", None, "pearson", ["pearson", "spearmanr", "combined_score"]
  ),
  "mnli": _spec(
    "mnli",
    ["sentence1", "sentence2"],
    "gold_label",
    ("entailment", "neutral", "contradiction"),
    "accuracy",
    ["accuracy"],
    eval_splits=("validation_matched", "validation_mismatched"),
    test_splits=("test_matched", "test_mismatched", "ax"),
  ),
  "qnli": _spec("qnli", ["question", "sentence"], "label", ("entailment", "not_entailment"), "accuracy", ["accuracy"]),
  "rte": _spec("rte", ["sentence1", "sentence2"], "label", ("entailment", "not_entailment"), "accuracy", ["accuracy"]),
  "wnli": _spec(
    "wnli", ["sentence1", "sentence2"], "label", ("not_entailment", "entailment"), "accuracy", ["accuracy"]
  ),
}


def _ratio_subset(cols: dict[str, Any], ratio: float, num_labeled: int) -> dict[str, Any]:
  """At most round(ratio * num_labeled) rows of `cols` (all when ratio is 0): a subset drawn with a
  fixed seed, independent of the run's seed so that every run of a study sees the same data, in
  file order."""
  n = _num_rows(cols)
  keep = n if ratio <= 0 else min(n, max(1, round(ratio * num_labeled)))
  if keep == n:
    return cols
  rows = np.sort(np.random.default_rng(0).permutation(n)[:keep])
  return {k: ([v[i] for i in rows] if isinstance(v, list) else np.asarray(v)[rows]) for k, v in cols.items()}


def _head(cols: dict[str, Any], n: int) -> dict[str, Any]:
  return {k: v[:n] for k, v in cols.items()} if n and n > 0 else cols


def _num_rows(cols: Mapping[str, Any]) -> int:
  return len(cols["idx"])


# Other spellings users type for a task name (after lower-casing and dropping '-').
TASK_ALIASES = {"sst": "sst2", "sts": "stsb", "mnlim": "mnli"}


def task_name(task: str) -> str:
  """The canonical name of `data.task`: 'SST-2' -> 'sst2', '' -> 'local' (not checked)."""
  name = str(task or LOCAL).lower().replace("-", "")
  return TASK_ALIASES.get(name, name)


def load_task(data_cfg) -> Task:
  """Loads the task named by `data_cfg.task` (see `defaults.data_config`).

  Returns a `Task` whose `splits` hold 'train', every name in `spec.eval_splits`
  (including the out-of-domain ones from `data_cfg.ood_eval_files`), and the test
  splits whose files exist. Raises ValueError with one sentence naming the file,
  column or value on any bad input, before anything is tokenized.
  """
  name = task_name(data_cfg.get("task", LOCAL))
  if name == LOCAL:
    task = local.load_local(data_cfg)
  elif name in GLUE_TASKS:
    spec = GLUE_TASKS[name]
    if data_cfg.get("num_labels", 0) and int(data_cfg.num_labels) != spec.num_labels:
      raise ValueError(
        f"data.num_labels={data_cfg.num_labels} does not match GLUE task {name!r} ({spec.num_labels}); leave it at 0."
      )
    data_dir = os.path.expanduser(data_cfg.get("data_dir", "") or "")
    task = glue.load_glue_tsv(spec, data_dir, data_cfg) if data_dir else glue.load_glue_hf(spec)
  else:
    raise ValueError(f"data.task={data_cfg.get('task')!r} is not a GLUE task ({sorted(GLUE_TASKS)}) or 'local'.")
  spec = task.spec
  ood = local.as_dict(data_cfg.get("ood_eval_files"))
  ood_dir = os.path.expanduser(data_cfg.get("data_dir", "") or "") if name == LOCAL else ""
  for split, path in ood.items():
    if split in task.splits:
      raise ValueError(
        f"data.ood_eval_files name {split!r} clashes with an existing split {sorted(task.splits)}; rename it."
      )
    path = local.resolve(ood_dir, path)
    task.splits[split] = labels.columns_from_rows(*readers.read_table(path, strict_rows=False), spec, path, True, split)
    task.sources[split] = path
  main_metric = data_cfg.get("main_metric", "") or spec.main_metric
  if main_metric not in spec.metric_names:
    raise ValueError(
      f"data.main_metric={main_metric!r} is not a metric of task {spec.name!r}; valid: {list(spec.metric_names)}."
    )
  task.spec = dataclasses.replace(spec, main_metric=main_metric, eval_splits=tuple(spec.eval_splits) + tuple(ood))
  n_train, n_eval = (int(data_cfg.get("max_train_examples", 0) or 0), int(data_cfg.get("max_eval_examples", 0) or 0))
  for split in list(task.splits):
    task.splits[split] = _head(task.splits[split], n_train if split == TRAIN else n_eval)
  if data_cfg.get("unlabeled_file", ""):
    path = local.resolve(ood_dir, os.path.expanduser(data_cfg.unlabeled_file))
    texts = text_input.read_texts(path, task.spec.text_columns, what="data.unlabeled_file", keep_empty=False)
    task.unlabeled = _ratio_subset(texts, float(data_cfg.get("unlabeled_ratio", 0.0)), _num_rows(task.splits[TRAIN]))
    task.sources["unlabeled"] = path
  logging.info("Task %s: %s", task.spec.name, {s: _num_rows(c) for s, c in task.splits.items()})
  return task
