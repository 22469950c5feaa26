"""A GLUE task as the study's three labelled splits (configs/study.py:glue/<task>).

GLUE's test labels are not public, so the study needs its own tuning split:

  dev   `study.glue_dev_fraction` of GLUE's train split (at most `study.glue_dev_max`
        rows, at least 1), drawn with `study.split_seed`; used for tuning only
  train the rest of GLUE's train split
  test  GLUE's dev split (MNLI: dev_matched), the labelled split reported
  ood   MNLI only: dev_mismatched (other genres), unless `study.ood` names a file

written as TSV files (columns `text`, `text_pair` for pair tasks, `label` as the class
name) under `<workdir>/data/`, so every stage reads them as an ordinary local task.
Regression (STS-B) is refused: the study compares accuracies.
"""

from __future__ import annotations

import json
import os

import numpy as np

from rail_kd_jax.core import defaults, files
from rail_kd_jax.data import tasks

_VERSION = 1


def _write_tsv(path: str, columns: dict, order: np.ndarray, names: tuple[str, ...]) -> None:
  """GLUE's own TSV form: no quoting (the reader splits on tabs only, so a quote stays a quote)."""
  keys = [k for k in ("text", "text_pair") if k in columns]
  fd, tmp = files.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
  with os.fdopen(fd, "w", encoding="utf-8") as f:
    f.write("\t".join(keys + ["label"]) + "\n")
    for i in order:
      fields = [str(columns[k][i]) for k in keys] + [names[int(columns["label"][i])]]
      if any("\t" in x or "\n" in x or "\r" in x for x in fields):
        raise ValueError(f"GLUE row {int(i)} of {path!r} holds a tab or a line break inside a field")
      f.write("\t".join(fields) + "\n")
  os.replace(tmp, path)


def prepare(config, workdir: str) -> tuple[dict, dict, dict]:
  """Writes the study's split of GLUE task `study.glue_task` from `data.data_dir`.

  Returns (files {train, dev, test[, ood]}, a description for the report, the data
  fields every stage needs: text/label columns and label names). Raises ValueError with
  one sentence on a missing folder or file, a regression task, or too few train rows.
  """
  s = config.study
  dcfg = defaults.data_config()
  dcfg.task = s.glue_task
  dcfg.data_dir = config.data.data_dir
  if not dcfg.data_dir:
    raise ValueError(
      f"configs/study.py:glue/{s.glue_task} reads the task from a local folder: set "
      f"--config.data.data_dir to GLUE's folder of TSV files for {s.glue_task!r}"
    )
  task = tasks.load_task(dcfg)
  spec = task.spec
  if spec.is_regression:
    raise ValueError(
      f"GLUE task {spec.name!r} is a regression task; the study compares accuracies, so "
      f"give a classification task (e.g. sst2, mnli, qnli, rte, mrpc)"
    )
  names = tuple(spec.label_names)

  def columns(split: str) -> dict:
    cols = task.splits[split]
    out = {"text": list(cols[spec.text_columns[0]]), "label": np.asarray(cols[spec.label_column])}
    if len(spec.text_columns) > 1:
      out["text_pair"] = list(cols[spec.text_columns[1]])
    return out

  train = columns(tasks.TRAIN)
  n = len(train["text"])
  n_dev = int(min(int(s.glue_dev_max), max(1, round(float(s.glue_dev_fraction) * n))))
  if n - n_dev < 1:
    raise ValueError(
      f"GLUE task {spec.name!r}: the train split has {n} rows, too few to hold out {n_dev} as the study's dev split"
    )
  perm = np.random.default_rng(int(s.split_seed)).permutation(n)
  dev_idx, train_idx = np.sort(perm[:n_dev]), np.sort(perm[n_dev:])
  out_dir = os.path.join(workdir, "data")
  os.makedirs(out_dir, exist_ok=True)
  files = {
    "train": os.path.join(out_dir, "train.tsv"),
    "dev": os.path.join(out_dir, "dev.tsv"),
    "test": os.path.join(out_dir, "test.tsv"),
  }
  _write_tsv(files["train"], train, train_idx, names)
  _write_tsv(files["dev"], train, dev_idx, names)
  test_split = spec.eval_splits[0]
  test = columns(test_split)
  _write_tsv(files["test"], test, np.arange(len(test["text"])), names)
  counts = {"train": int(len(train_idx)), "dev": int(len(dev_idx)), "test": len(test["text"])}
  info = {
    "task": f"GLUE {spec.name} from {task.sources[tasks.TRAIN]}: train minus a held-out "
    f"{n_dev}-row dev split (seed {int(s.split_seed)}), GLUE {test_split} as test",
    "counts": counts,
  }
  if len(spec.eval_splits) > 1 and not s.ood:
    ood_split = spec.eval_splits[1]
    ood = columns(ood_split)
    files["ood"] = os.path.join(out_dir, "ood.tsv")
    _write_tsv(files["ood"], ood, np.arange(len(ood["text"])), names)
    counts["ood"] = len(ood["text"])
    info["ood"] = {"name": f"GLUE {spec.name} {ood_split}", "counts": {"examples": len(ood["text"])}}
  with open(os.path.join(out_dir, "split.json"), "w") as f:
    json.dump(
      {"version": _VERSION, "task": spec.name, "source": task.sources, "counts": counts, "seed": int(s.split_seed)},
      f,
      indent=2,
    )
  data_fields = {
    "text_column": "text",
    "text_pair_column": "text_pair" if len(spec.text_columns) > 1 else "",
    "label_column": "label",
    "label_names": names,
  }
  return files, info, data_fields
