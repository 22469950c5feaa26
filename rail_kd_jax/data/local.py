"""Local tasks: CSV/TSV/JSONL files named by the config (or found in data.data_dir), and the spec they imply."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import ml_collections

from rail_kd_jax.data import labels, readers
from rail_kd_jax.data.spec import LOCAL, TRAIN, Task, TaskSpec


def resolve(data_dir: str, path: str) -> str:
  path = os.path.expanduser(path)
  return path if os.path.isabs(path) or not data_dir else os.path.join(data_dir, path)


def _find_default(data_dir: str, stems: Sequence[str]) -> str:
  for stem in stems:
    for ext in (".csv", ".tsv", ".jsonl"):
      p = os.path.join(data_dir, stem + ext)
      if os.path.isfile(p):
        return p
  return ""


def as_dict(d) -> dict[str, str]:
  if not d:
    return {}
  if isinstance(d, ml_collections.ConfigDict):
    d = d.to_dict()
  if not isinstance(d, Mapping):
    raise ValueError(f"Expected a dict of split name -> file, got {d!r}.")
  return {str(k): str(v) for k, v in d.items() if v}


def _local_files(cfg) -> tuple[str, dict[str, str], str]:
  data_dir = os.path.expanduser(cfg.get("data_dir", "") or "")
  train = cfg.get("train_file", "") or ""
  evals = as_dict(cfg.get("eval_files"))
  test = cfg.get("test_file", "") or ""
  if data_dir and not train and not evals:
    if not os.path.isdir(data_dir):
      raise ValueError(f"data.data_dir {data_dir!r} is not a folder.")
    train = _find_default(data_dir, ["train"])
    dev = _find_default(data_dir, ["dev", "validation", "valid"])
    evals = {"validation": dev} if dev else {}
    test = test or _find_default(data_dir, ["test"])
  if not train:
    raise ValueError(
      "data.train_file is empty for task 'local'; set it (or data.data_dir to a "
      "folder with train.csv/.tsv/.jsonl), or set data.task to a GLUE task name."
    )
  return (
    resolve(data_dir, train),
    {k: resolve(data_dir, v) for k, v in evals.items()},
    resolve(data_dir, test) if test else "",
  )


def _local_spec(
  cfg,
  train_path: str,
  evals: Mapping[str, str],
  test: str,
  train_rows: tuple[list[str], list[dict[str, Any]], list[int]],
) -> TaskSpec:
  text_columns = tuple(c for c in (cfg.get("text_column", "text"), cfg.get("text_pair_column", "")) if c)
  label_column = cfg.get("label_column", "label")
  names = tuple(cfg.get("label_names", ()) or ()) or None
  k = int(cfg.get("num_labels", 0) or 0)
  if names is not None and k not in (0, len(names)):
    raise ValueError(f"data.num_labels={k} does not match data.label_names {list(names)} ({len(names)} names).")
  if names is not None:
    k = len(names)
  elif k == 0:
    header, rows, lines = train_rows
    if label_column not in header:
      raise ValueError(f"Data file {train_path!r} has no column {label_column!r}; its columns are {list(header)}.")
    if not rows:
      raise ValueError(f"Split 'train' from {train_path!r} is empty (no data rows).")
    values = [r.get(label_column) for r in rows]
    labels.check_labels_present(values, lines, train_path, label_column)
    k, names = labels.infer_labels(values, lines, train_path, label_column)
  elif k < 1:
    raise ValueError(f"data.num_labels={k} is invalid; use 1 (regression) or >= 2 classes.")
  regression = k == 1
  if regression and names is not None:
    raise ValueError("data.label_names is set but data.num_labels=1 (regression); drop one.")
  metrics = ("pearson", "spearmanr", "mse") if regression else ("accuracy", "macro_f1")
  return TaskSpec(
    name=LOCAL,
    text_columns=text_columns,
    label_column=label_column,
    num_labels=k,
    label_names=names,
    is_regression=regression,
    main_metric=metrics[0],
    metric_names=metrics,
    eval_splits=tuple(evals),
    test_splits=("test",) if test else (),
  )


def load_local(cfg) -> Task:
  train, evals, test = _local_files(cfg)
  train_rows = readers.read_table(train)
  spec = _local_spec(cfg, train, evals, test, train_rows)
  splits = {TRAIN: labels.columns_from_rows(*train_rows, spec, train, True, TRAIN)}
  sources = {TRAIN: train}
  for name, path in evals.items():
    splits[name] = labels.columns_from_rows(*readers.read_table(path), spec, path, True, name)
    sources[name] = path
  if test:
    header, rows, lines = readers.read_table(test)
    # A test file may leave its label column empty: it is then only predicted, not scored.
    labelled = labels.has_labels(header, rows, spec.label_column)
    splits["test"] = labels.columns_from_rows(header, rows, lines, spec, test, labelled, "test")
    sources["test"] = test
  return Task(spec, splits, sources)
