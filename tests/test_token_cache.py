"""The token cache (`data.cache_dir`): a later run over the same files reads the token arrays
instead of tokenizing, trains to the same result, and a damaged cache file is rebuilt."""

import json
import logging
import os

import numpy as np
import pytest

from rail_kd_jax.training import train
from rail_kd_jax.data import loader

import helpers
from test_data_hostile import _Warnings


def _config(cache: str):
  return helpers.tiny_config(
    **{
      "mode": "distill",
      "distill.method": "kd",
      "data.cache_dir": cache,
      "data.bucket": False,
      "train.num_steps": 6,
      "train.log_every": 3,
      "train.export": False,
      "train.plots": False,
    }
  )


@pytest.fixture(scope="module")
def first(tmp_path_factory):
  """One tiny distill run with a fresh token cache: (its metrics, the cache folder)."""
  root = tmp_path_factory.mktemp("token_cache")
  cache = str(root / "tokens")
  return train.train_and_evaluate(_config(cache), str(root / "run1")), cache


def _no_tokenizer(*args, **kwargs):
  raise AssertionError("the tokenizer ran although the token cache holds every split")


def test_second_run_reads_the_cache_and_trains_alike(first, tmp_path, monkeypatch):
  metrics, cache = first
  files = sorted(os.listdir(cache))
  assert files and all(f.endswith(".npz") for f in files)
  monkeypatch.setattr(loader, "_tokenize", _no_tokenizer)
  again = train.train_and_evaluate(_config(cache), str(tmp_path / "run2"))
  assert sorted(os.listdir(cache)) == files
  for split, res in metrics.items():
    if isinstance(res, dict):
      assert again[split] == res, split


def test_a_truncated_cache_file_is_rebuilt_with_a_warning(first, tmp_path):
  _, cache = first
  copy = tmp_path / "tokens"
  copy.mkdir()
  names = sorted(os.listdir(cache))
  for name in names:
    (copy / name).write_bytes((open(os.path.join(cache, name), "rb").read()))
  victim = copy / names[0]
  victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
  handler = _Warnings()
  logging.getLogger().addHandler(handler)
  try:
    train.train_and_evaluate(_config(str(copy)), str(tmp_path / "run3"))
  finally:
    logging.getLogger().removeHandler(handler)
  damaged = [m for m in handler.messages if "is damaged" in m]
  assert len(damaged) == 1 and str(victim) in damaged[0], handler.messages
  rebuilt = loader._read_cache(str(victim), *_shape(os.path.join(cache, names[0])))
  with np.load(os.path.join(cache, names[0])) as z:
    for k in z.files:
      np.testing.assert_array_equal(rebuilt[k], z[k].astype(rebuilt[k].dtype))


def _shape(path: str) -> tuple[int, int]:
  with np.load(path) as z:
    return z["input_ids"].shape


def test_cache_folder_resolution(monkeypatch, tmp_path):
  assert loader.cache_folder("off") is None
  assert loader.cache_folder(str(tmp_path)) == str(tmp_path)
  monkeypatch.setenv("RAIL_KD_CACHE_DIR", str(tmp_path / "env"))
  assert loader.cache_folder("") == str(tmp_path / "env")
  monkeypatch.delenv("RAIL_KD_CACHE_DIR")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert loader.cache_folder("") == str(tmp_path / "xdg" / "rail_kd_jax" / "tokens")


def test_an_unwritable_cache_costs_a_warning_not_the_run(tmp_path, caplog):
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  arrays = {k: np.zeros((2, 8), np.int32) for k in loader.SEQUENCE_KEYS}
  arrays["labels"] = np.zeros(2, np.int32)
  handler = _Warnings()
  logging.getLogger().addHandler(handler)
  try:
    loader._write_cache(str(blocker / "sub" / "x.npz"), arrays)
  finally:
    logging.getLogger().removeHandler(handler)
  assert any("could not be written" in m for m in handler.messages), handler.messages


def test_the_token_cache_benchmark_reads_without_tokenizing(tmp_path, minilm_path):
  from rail_kd_jax.experiments.benchmark import token_cache

  rows = token_cache.compare(300, str(tmp_path), tokenizer_path=minilm_path, max_length=32)
  assert [r["phase"] for r in rows] == list(token_cache.PHASES)
  assert [r["tokenized"] for r in rows] == [True, True, False]
  assert all(r["rows"] == 300 and r["peak_rss_mib"] > 0 for r in rows)
  assert json.load(open(tmp_path / "token_cache.json")) == rows
