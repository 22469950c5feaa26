"""The tiny synthetic task: files, tokenizer, idempotence, and that it is learnable."""

import csv
import os

import numpy as np
import pytest
from transformers import AutoTokenizer

from rail_kd_jax.data import synthetic, tasks
from rail_kd_jax.core import defaults


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return synthetic.make_tiny_dataset(str(tmp_path_factory.mktemp("tiny")))


def _read(path):
  with open(path, encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f))
  return [r["text"] for r in rows], np.array([int(r["label"]) for r in rows])


def test_files_and_counts(tiny):
  assert tiny.vocab_size < 200
  for path, n in ((tiny.train_file, 512), (tiny.dev_file, 128), (tiny.test_file, 128)):
    texts, labels = _read(path)
    assert len(texts) == n and set(labels.tolist()) == {0, 1}
    assert abs(labels.mean() - 0.5) < 0.01


def test_tokenizer_loads_offline_as_bert(tiny):
  tok = AutoTokenizer.from_pretrained(tiny.tokenizer_dir, local_files_only=True)
  assert len(tok) == tiny.vocab_size
  enc = tok("The good movies", "a dull plot")
  tokens = tok.convert_ids_to_tokens(enc["input_ids"])
  assert tokens == ["[CLS]", "the", "good", "movie", "##s", "[SEP]", "a", "dull", "plot", "[SEP]"]
  assert enc["token_type_ids"] == [0] * 6 + [1] * 4
  assert tok.pad_token_id == 0 and tok.unk_token_id == 1
  assert tok.convert_ids_to_tokens(tok("zebra")["input_ids"])[1] == "[UNK]"


def test_idempotent(tiny):
  before = os.path.getmtime(tiny.train_file)
  again = synthetic.make_tiny_dataset(tiny.data_dir)
  assert again == tiny and os.path.getmtime(tiny.train_file) == before


def test_loads_as_local_task(tiny):
  c = defaults.data_config()
  c.data_dir = tiny.data_dir
  c.label_names = tiny.label_names
  t = tasks.load_task(c)
  assert t.spec.num_labels == 2 and set(t.splits) == {"train", "validation", "test"}


def test_bag_of_words_logistic_regression_learns_it(tiny):
  vocab = {w: i for i, w in enumerate(synthetic.vocabulary())}

  def features(path):
    texts, labels = _read(path)
    x = np.zeros((len(texts), len(vocab)))
    for i, t in enumerate(texts):
      for w in t.lower().rstrip(".").split():
        x[i, vocab.get(w, 1)] += 1
    return x, labels

  x, y = features(tiny.train_file)
  w, b = np.zeros(x.shape[1]), 0.0
  for _ in range(300):
    p = 1 / (1 + np.exp(-(x @ w + b)))
    w -= 0.5 * (x.T @ (p - y) / len(y) + 1e-3 * w)
    b -= 0.5 * np.mean(p - y)
  xd, yd = features(tiny.dev_file)
  assert np.mean(((xd @ w + b) > 0) == yd) > 0.9
