"""The task types: `TaskSpec` (what a task is), `Task` (a loaded task), and the names 'local' and 'train'."""

from __future__ import annotations

import dataclasses
from typing import Any

LOCAL = "local"
TRAIN = "train"


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """What a task is: its input columns, its labels and how it is scored.

  Attributes:
    name: GLUE task name ('sst2', 'mnli', ...) or 'local'.
    text_columns: one or two column names (a sentence, or a sentence pair).
    label_column: the column holding labels in the files.
    num_labels: number of classes; 1 means regression.
    label_names: class names in class-id order, or None (regression / unnamed).
    is_regression: True when num_labels == 1.
    main_metric: the metric used to pick the best checkpoint.
    metric_names: the metrics `task_metrics.compute_metrics` returns.
    eval_splits: labelled evaluation splits (the first is the main one).
    test_splits: splits whose predictions are written (GLUE submission files); a test file that
      carries labels is scored too (`Task.splits[split]` then holds its label column).
  """

  name: str
  text_columns: tuple[str, ...]
  label_column: str
  num_labels: int
  label_names: tuple[str, ...] | None
  is_regression: bool
  main_metric: str
  metric_names: tuple[str, ...]
  eval_splits: tuple[str, ...]
  test_splits: tuple[str, ...]


@dataclasses.dataclass
class Task:
  """A loaded task: `splits[name][column]` -> list[str] | np.ndarray; `sources[name]` -> file.

  `unlabeled` holds the texts of `data.unlabeled_file` (the text columns and 'idx', no label
  column; `text_input.read_texts`), already cut to `data.unlabeled_ratio`, or None without that file.
  """

  spec: TaskSpec
  splits: dict[str, dict[str, Any]]
  sources: dict[str, str] = dataclasses.field(default_factory=dict)
  unlabeled: dict[str, Any] | None = None
