"""The Rotten Tomatoes demo split: counts, no movie in two splits, idempotence, loading."""

import os

import pandas as pd
import pytest

from rail_kd_jax.data import rotten_tomatoes, tasks
from rail_kd_jax import defaults

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
