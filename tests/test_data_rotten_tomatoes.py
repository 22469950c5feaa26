"""The Rotten Tomatoes demo split and the study split: counts, no movie in two splits, idempotence, loading."""

import json
import os

import pandas as pd
import pytest

from rail_kd_jax.data import rotten_tomatoes, tasks
from rail_kd_jax.core import defaults

# docs/DATA.md documents these (seed 0).
EXPECTED = {"train": 10185, "dev": 1279, "test": 1287}


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
  return rotten_tomatoes.prepare_rotten_tomatoes(str(tmp_path_factory.mktemp("rt")), seed=0)


def test_counts_and_disjoint_movies(rt):
  parts = {n: pd.read_csv(getattr(rt, f"{n}_file"), keep_default_na=False) for n in EXPECTED}
  assert {n: len(p) for n, p in parts.items()} == EXPECTED
  assert {n: c["examples"] for n, c in rt.counts.items()} == EXPECTED
  for a in parts:
    for b in parts:
      if a < b:
        assert not set(parts[a].movie_name) & set(parts[b].movie_name)
        assert not set(parts[a].text) & set(parts[b].text)
  both = pd.concat(parts.values())
  assert not both.text.duplicated().any()
  assert set(both.label) == {0, 1}


def test_idempotent(rt):
  before = os.path.getmtime(rt.train_file)
  again = rotten_tomatoes.prepare_rotten_tomatoes(rt.data_dir, seed=0)
  assert again.counts == rt.counts and os.path.getmtime(rt.train_file) == before


def test_loads_as_local_task(rt):
  c = defaults.data_config()
  c.data_dir = rt.data_dir
  c.label_names = rotten_tomatoes.LABEL_NAMES
  t = tasks.load_task(c)
  assert t.spec.label_names == ("rotten", "fresh")
  assert len(t.splits["train"]["text"]) == EXPECTED["train"]
  assert len(t.splits["validation"]["text"]) == EXPECTED["dev"]


# The study's split (seed 1, avoiding the test movies of the demo's seed-0 split); docs/DATA.md.
STUDY_EXPECTED = {"train": 10224, "dev": 1275, "test": 1252}


def _parts(data):
  return {n: pd.read_csv(getattr(data, f"{n}_file"), keep_default_na=False) for n in EXPECTED}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  return rotten_tomatoes.prepare_study_split(str(tmp_path_factory.mktemp("study")), seed=1, avoid_seed=0)


def test_study_split_avoids_the_demo_test_movies(rt, study):
  demo_test = set(_parts(rt)["test"].movie_name)
  parts = _parts(study)
  assert not demo_test & set(parts["test"].movie_name)
  assert not demo_test & set(parts["dev"].movie_name)
  assert demo_test <= set(parts["train"].movie_name)
  for a in parts:
    for b in parts:
      if a < b:
        assert not set(parts[a].movie_name) & set(parts[b].movie_name)
        assert not set(parts[a].text) & set(parts[b].text)
  with open(os.path.join(study.data_dir, "split_info.json"), encoding="utf-8") as f:
    info = json.load(f)
  assert info["avoided_test_movies"] == len(demo_test) == 47
  assert (info["seed"], info["avoid_seed"]) == (1, 0)


def test_study_split_sizes(rt, study):
  parts = _parts(study)
  sizes = {n: len(p) for n, p in parts.items()}
  assert sizes == STUDY_EXPECTED and {n: c["examples"] for n, c in study.counts.items()} == sizes
  total = sum(sizes.values())
  assert total == sum(EXPECTED.values())  # the demo's examples, split another way
  for name, frac in rotten_tomatoes.SPLIT_FRACTIONS:
    assert abs(sizes[name] / total - frac) < 0.02
  both = pd.concat(parts.values())
  assert set(both.text) == set(pd.concat(_parts(rt).values()).text)
  assert set(both.label) == {0, 1}


def test_study_split_reused_and_seeded(study, tmp_path):
  names = [study.train_file, study.dev_file, study.test_file, os.path.join(study.data_dir, "split_info.json")]

  def state():
    out = []
    for p in names:
      with open(p, "rb") as f:
        out.append((os.path.getmtime(p), f.read()))
    return out

  before = state()
  again = rotten_tomatoes.prepare_study_split(study.data_dir, seed=1, avoid_seed=0)
  assert again.counts == study.counts and state() == before
  other = rotten_tomatoes.prepare_study_split(str(tmp_path), seed=2, avoid_seed=0)
  assert set(_parts(other)["test"].text) != set(_parts(study)["test"].text)
  # The demo's function does not take a study folder for its own split.
  demo = rotten_tomatoes.prepare_rotten_tomatoes(str(tmp_path), seed=2)
  with open(os.path.join(demo.data_dir, "split_info.json"), encoding="utf-8") as f:
    assert "avoid_seed" not in json.load(f)
