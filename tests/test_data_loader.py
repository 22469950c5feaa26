"""encode (tokenize once, cache) and batches (deterministic order, host slices, buckets)."""

import os

import numpy as np
import pytest

from rail_kd_jax.data import loader, synthetic, tasks, tokenize
from rail_kd_jax.core import defaults

GLUE = os.path.join(os.path.dirname(__file__), "fixtures", "glue")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return synthetic.make_tiny_dataset(str(tmp_path_factory.mktemp("tiny")), num_train=96, num_eval=32)


@pytest.fixture(scope="module")
def tok(tiny):
  return tokenize.load_tokenizer(tiny.tokenizer_dir)


@pytest.fixture(scope="module")
def task(tiny):
  c = defaults.data_config()
  c.data_dir = tiny.data_dir
  return tasks.load_task(c)


class CountingTokenizer:
  """Delegates to a tokenizer and counts how often it is asked to tokenize."""

  def __init__(self, tok):
    self._tok, self.calls = tok, 0

  def __call__(self, *a, **kw):
    self.calls += 1
    return self._tok(*a, **kw)

  def __getattr__(self, name):
    return getattr(self._tok, name)


def test_encode_shapes_dtypes_and_pairs(tok, task):
  arrays = loader.encode(task.splits["train"], tok, task.spec, 32)
  assert set(arrays) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
  for k in ("input_ids", "attention_mask", "token_type_ids"):
    assert arrays[k].shape == (96, 32) and arrays[k].dtype == np.int32
  assert arrays["labels"].dtype == np.int32
  np.testing.assert_array_equal(arrays["labels"], task.splits["train"]["label"])
  assert (arrays["input_ids"][:, 0] == tok.cls_token_id).all()
  lengths = arrays["attention_mask"].sum(1)
  last = arrays["input_ids"][np.arange(96), lengths - 1]
  assert (last == tok.sep_token_id).all()  # right padding, [SEP] ends each row

  spec = tasks.TaskSpec("local", ("a", "b"), "y", 1, None, True, "pearson", ("pearson",), (), ())
  cols = {"a": ["good film", "bad"], "b": ["the plot", "dull day"], "y": [0.5, 2.0]}
  pair = loader.encode(cols, tok, spec, 12)
  assert pair["labels"].dtype == np.float32
  assert pair["token_type_ids"][0].tolist() == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0]
  no_labels = loader.encode({"a": ["x"], "b": ["y"]}, tok, spec, 8)
  assert no_labels["labels"].tolist() == [-1.0]


def test_encode_cache_hits_second_call_and_misses_on_change(tok, task, tmp_path):
  counting = CountingTokenizer(tok)
  first = loader.encode(task.splits["train"], counting, task.spec, 32, cache_dir=str(tmp_path))
  assert counting.calls == 1 and len(os.listdir(tmp_path)) == 1
  second = loader.encode(task.splits["train"], counting, task.spec, 32, cache_dir=str(tmp_path))
  assert counting.calls == 1  # served from disk
  for k in first:
    np.testing.assert_array_equal(first[k], second[k])
  loader.encode(task.splits["train"], counting, task.spec, 16, cache_dir=str(tmp_path))
  assert counting.calls == 2  # max_length is part of the key
  changed = dict(task.splits["train"], text=["x"] + task.splits["train"]["text"][1:])
  loader.encode(changed, counting, task.spec, 32, cache_dir=str(tmp_path))
  assert counting.calls == 3  # so is the content
  assert len([f for f in os.listdir(tmp_path) if f.endswith(".npz")]) == 3


def test_encode_glue_pair_fixture(tok):
  t = tasks.load_task(_cfg(task="mrpc", data_dir=os.path.join(GLUE, "MRPC")))
  arrays = loader.encode(t.splits["validation"], tok, t.spec, 24)
  assert arrays["input_ids"].shape == (3, 24)
  assert arrays["token_type_ids"].max() == 1


def _cfg(**kw):
  c = defaults.data_config()
  c.update(kw)
  return c


def _arrays(n=50, t=64, seed=0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(3, t + 1, n)
  mask = (np.arange(t)[None] < lengths[:, None]).astype(np.int32)
  return {
    "input_ids": (np.arange(n)[:, None] * 1000 + np.arange(t)[None]).astype(np.int32) * mask,
    "attention_mask": mask,
    "token_type_ids": np.zeros((n, t), np.int32),
    "labels": np.arange(n, dtype=np.int32),
  }


def _ids(batches):
  return [b["labels"][b["example_mask"] > 0].tolist() for b in batches]


def test_steps_per_epoch():
  assert loader.steps_per_epoch(50, 8, True) == 6
  assert loader.steps_per_epoch(50, 8, False) == 7
  assert loader.steps_per_epoch(48, 8, False) == 6


def test_shuffle_deterministic_per_seed_epoch_and_differs_across_epochs():
  a = _arrays()
  kw = dict(shuffle=True, drop_remainder=True)
  e0 = _ids(loader.batches(a, 8, seed=3, epoch=0, **kw))
  assert e0 == _ids(loader.batches(a, 8, seed=3, epoch=0, **kw))
  assert e0 != _ids(loader.batches(a, 8, seed=3, epoch=1, **kw))
  assert e0 != _ids(loader.batches(a, 8, seed=4, epoch=0, **kw))
  flat = sum(e0, [])
  assert len(flat) == 48 and len(set(flat)) == 48
  ordered = _ids(loader.batches(a, 8, seed=3, epoch=0, shuffle=False, drop_remainder=True))
  assert sum(ordered, []) == list(range(48))


def test_host_slices_partition_the_global_batch():
  a = _arrays()
  kw = dict(seed=1, epoch=2, shuffle=True, drop_remainder=False)
  whole = list(loader.batches(a, 12, **kw))
  hosts = [list(loader.batches(a, 12, host_id=h, num_hosts=4, **kw)) for h in range(4)]
  assert all(len(h) == len(whole) for h in hosts)
  for step, g in enumerate(whole):
    parts = [hosts[h][step] for h in range(4)]
    for k in g:
      np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), g[k])
    assert len({p["input_ids"].shape for p in parts}) == 1  # same shapes on every host
    for h, p in enumerate(parts):
      assert p["input_ids"].shape[0] == 3
      np.testing.assert_array_equal(p["labels"], g["labels"][3 * h : 3 * h + 3])
  with pytest.raises(ValueError, match="multiple of the number of hosts"):
    next(loader.batches(a, 10, host_id=0, num_hosts=4, **kw))


def test_last_partial_batch_padding_rows_are_masked():
  a = _arrays()
  bs = list(loader.batches(a, 16, seed=0, epoch=0, shuffle=True, drop_remainder=False))
  assert len(bs) == 4 and all(b["input_ids"].shape[0] == 16 for b in bs)
  last = bs[-1]
  assert last["example_mask"].dtype == np.float32
  assert last["example_mask"].tolist() == [1.0] * 2 + [0.0] * 14
  assert (last["attention_mask"].sum(1) > 0).all()  # padding rows are real rows, masked
  assert sorted(sum(_ids(bs), [])) == list(range(50))
  dropped = list(loader.batches(a, 16, seed=0, epoch=0, shuffle=True, drop_remainder=True))
  assert len(dropped) == 3 and all(b["example_mask"].min() == 1 for b in dropped)


def test_bucket_lengths():
  a = _arrays(n=64, t=64)
  lengths = a["attention_mask"].sum(1)
  for b in loader.batches(a, 8, seed=0, epoch=0, shuffle=True, drop_remainder=True):
    real = lengths[b["labels"]].max()
    length = b["input_ids"].shape[1]
    assert length % 16 == 0 and real <= length < real + 16
    assert b["attention_mask"].shape == b["token_type_ids"].shape == (8, length)
    np.testing.assert_array_equal(b["input_ids"], a["input_ids"][b["labels"], :length])
  shapes = {
    b["input_ids"].shape[1]
    for b in loader.batches(a, 8, seed=0, epoch=0, shuffle=True, drop_remainder=True, buckets=(20, 40))
  }
  assert shapes <= {20, 40, 64}
  full = {
    b["input_ids"].shape[1]
    for b in loader.batches(a, 8, seed=0, epoch=0, shuffle=True, drop_remainder=True, bucket=False)
  }
  assert full == {64}
  assert loader.bucket_length(1, 128) == 16
  assert loader.bucket_length(17, 128) == 32
  assert loader.bucket_length(127, 120) == 120
  assert loader.bucket_length(50, 128, buckets=(32, 64)) == 64
  assert loader.bucket_length(70, 128, buckets=(32, 64)) == 128


def test_start_step_resumes_the_same_order():
  a = _arrays()
  kw = dict(seed=5, epoch=1, shuffle=True, drop_remainder=False)
  full = _ids(loader.batches(a, 8, **kw))
  assert _ids(loader.batches(a, 8, start_step=4, **kw)) == full[4:]
  assert _ids(loader.batches(a, 8, start_step=7, **kw)) == []
  with pytest.raises(ValueError, match="start_step"):
    next(loader.batches(a, 8, start_step=8, **kw))


def test_batches_errors():
  a = _arrays(n=5)
  with pytest.raises(ValueError, match="fewer than batch_size"):
    next(loader.batches(a, 8, seed=0, epoch=0, shuffle=True, drop_remainder=True))
  with pytest.raises(ValueError, match="host_id"):
    next(loader.batches(a, 8, seed=0, epoch=0, shuffle=True, drop_remainder=False, host_id=2, num_hosts=2))
