"""Task loading: GLUE TSV layouts, local CSV/TSV/JSONL files, and clear errors on bad data."""

import json
import os
import time

import numpy as np
import pytest

from rail_kd_jax.data import glue, tasks
from rail_kd_jax.core import defaults

GLUE = os.path.join(os.path.dirname(__file__), "fixtures", "glue")


def cfg(**kw):
  c = defaults.data_config()
  for k, v in kw.items():
    setattr(c, k, v)
  return c


def write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)
  return str(path)


def test_registry_has_all_nine_glue_tasks():
  assert sorted(tasks.GLUE_TASKS) == sorted(["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"])
  for spec in tasks.GLUE_TASKS.values():
    assert 1 <= len(spec.text_columns) <= 2
    assert spec.main_metric in spec.metric_names
    assert spec.is_regression == (spec.num_labels == 1)
  mnli = tasks.GLUE_TASKS["mnli"]
  assert mnli.eval_splits == ("validation_matched", "validation_mismatched")
  assert mnli.test_splits[:2] == ("test_matched", "test_mismatched")
  assert mnli.label_names == ("entailment", "neutral", "contradiction")
  assert tasks.GLUE_TASKS["qqp"].text_columns == ("question1", "question2")
  assert tasks.GLUE_TASKS["qqp"].label_column == "is_duplicate"
  assert tasks.GLUE_TASKS["stsb"].label_column == "score"


def test_sst2_tsv():
  t = tasks.load_task(cfg(task="sst2", data_dir=os.path.join(GLUE, "SST-2")))
  assert t.spec.name == "sst2" and t.spec.text_columns == ("sentence",)
  assert set(t.splits) == {"train", "validation", "test"}
  tr = t.splits["train"]
  assert len(tr["sentence"]) == 6 and tr["label"].dtype == np.int32
  assert sorted(tr["label"].tolist()) == [0, 0, 0, 1, 1, 1]
  assert any('"' in s for s in tr["sentence"])  # GLUE quotes survive (no CSV quoting)
  assert "label" not in t.splits["test"]
  np.testing.assert_array_equal(t.splits["test"]["idx"], [0, 1, 2])


def test_mrpc_tsv_with_bom_and_pairs():
  t = tasks.load_task(cfg(task="mrpc", data_dir=os.path.join(GLUE, "MRPC")))
  assert t.spec.text_columns == ("#1 String", "#2 String") and t.spec.label_column == "Quality"
  tr = t.splits["train"]
  assert tr["Quality"].tolist() == [1, 0, 1, 0]
  assert tr["#1 String"][0].startswith("Amrozi accused")
  assert t.spec.main_metric == "f1"
  assert len(t.splits["test"]["#2 String"]) == 2


def test_stsb_tsv_regression():
  t = tasks.load_task(cfg(task="stsb", data_dir=os.path.join(GLUE, "STS-B")))
  assert t.spec.is_regression and t.spec.num_labels == 1 and t.spec.label_names is None
  dev = t.splits["validation"]
  assert dev["score"].dtype == np.float32
  np.testing.assert_allclose(dev["score"], [5.0, 4.75, 5.0, 2.4, 2.75])
  assert dev["sentence1"][0] == "A man with a hard hat is dancing."
  assert t.spec.metric_names[:2] == ("pearson", "spearmanr")


def test_cola_headerless_tsv_and_parent_glue_folder():
  t = tasks.load_task(cfg(task="cola", data_dir=GLUE))  # the parent glue/ folder works too
  assert t.splits["train"]["sentence"][1] == "They drank the pub."
  assert t.splits["train"]["label"].tolist() == [1, 0, 1, 0]
  assert t.splits["test"]["sentence"] == ["Bill whistled past the house.", "The car honked its way down the road."]
  assert t.spec.main_metric == "matthews_corr"


def test_mnli_splits_string_labels_and_ax():
  t = tasks.load_task(cfg(task="mnli", data_dir=os.path.join(GLUE, "MNLI")))
  assert set(t.splits) == {
    "train",
    "validation_matched",
    "validation_mismatched",
    "test_matched",
    "test_mismatched",
    "ax",
  }
  assert t.splits["train"]["gold_label"].tolist() == [0, 2, 1]
  assert t.splits["validation_mismatched"]["gold_label"].tolist() == [0, 1]
  assert len(t.splits["ax"]["sentence1"]) == 2


def test_ood_eval_files_and_main_metric_override(tmp_path):
  hans = write(
    tmp_path / "hans.tsv",
    "gold_label\tsentence1\tsentence2\n"
    "entailment\tThe doctor saw the lawyer.\tThe lawyer was seen.\n"
    "contradiction\tThe doctor saw the lawyer.\tNobody saw anyone.\n",
  )
  t = tasks.load_task(cfg(task="mnli", data_dir=os.path.join(GLUE, "MNLI"), ood_eval_files={"hans": hans}))
  assert t.spec.eval_splits[-1] == "hans"
  assert t.splits["hans"]["gold_label"].tolist() == [0, 2]
  t = tasks.load_task(cfg(task="mrpc", data_dir=os.path.join(GLUE, "MRPC"), main_metric="accuracy"))
  assert t.spec.main_metric == "accuracy"
  with pytest.raises(ValueError, match="main_metric"):
    tasks.load_task(cfg(task="mrpc", data_dir=os.path.join(GLUE, "MRPC"), main_metric="mcc"))


def test_local_csv_with_label_names_and_data_dir_defaults(tmp_path):
  write(tmp_path / "train.csv", 'text,label\n"hello, world",fresh\nbad one,rotten\nok,1\n')
  write(tmp_path / "dev.csv", "text,label\ngood,fresh\nmeh,0\n")
  write(tmp_path / "test.csv", "text\nunlabelled\n")
  t = tasks.load_task(cfg(data_dir=str(tmp_path), label_names=("rotten", "fresh")))
  assert t.spec.name == "local" and t.spec.num_labels == 2
  assert t.spec.label_names == ("rotten", "fresh")
  assert t.splits["train"]["text"][0] == "hello, world"
  assert t.splits["train"]["label"].tolist() == [1, 0, 1]
  assert t.splits["validation"]["label"].tolist() == [1, 0]
  assert t.spec.eval_splits == ("validation",) and t.spec.test_splits == ("test",)
  assert "label" not in t.splits["test"]
  assert t.spec.metric_names == ("accuracy", "macro_f1")


def test_local_jsonl_pairs_inferred_labels_and_max_examples(tmp_path):
  rows = [{"premise": f"p{i}", "hypothesis": f"h{i}", "y": i % 3} for i in range(9)]
  train = write(tmp_path / "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
  dev = write(tmp_path / "dev.jsonl", json.dumps(rows[0]) + "\n")
  t = tasks.load_task(
    cfg(
      train_file=train,
      eval_files={"dev": dev},
      text_column="premise",
      text_pair_column="hypothesis",
      label_column="y",
      max_train_examples=5,
    )
  )
  assert t.spec.text_columns == ("premise", "hypothesis")
  assert t.spec.num_labels == 3 and t.spec.label_names is None
  assert len(t.splits["train"]["premise"]) == 5
  assert t.splits["dev"]["y"].tolist() == [0]


def test_local_tsv_string_labels_inferred_and_regression(tmp_path):
  train = write(tmp_path / "a.tsv", "text\tlabel\nx\tpos\ny\tneg\nz\tpos\n")
  t = tasks.load_task(cfg(train_file=train))
  assert t.spec.label_names == ("neg", "pos")
  assert t.splits["train"]["label"].tolist() == [1, 0, 1]
  reg = write(tmp_path / "r.csv", "text,label\nx,0.5\ny,3.25\n")
  t = tasks.load_task(cfg(train_file=reg, num_labels=1))
  assert t.spec.is_regression and t.spec.main_metric == "pearson"
  assert t.splits["train"]["label"].dtype == np.float32


def test_default_config_is_overridable_from_command_line_types():
  c = defaults.data_config()
  c.eval_files = {"validation": "/x/dev.csv"}  # dicts assign into the ConfigDict fields
  c.label_names = ["rotten", "fresh"]
  assert c.eval_files.validation == "/x/dev.csv" and c.label_names == ("rotten", "fresh")


# ----------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
  with pytest.raises(ValueError, match=r"does not exist"):
    tasks.load_task(cfg(train_file=str(tmp_path / "nope.csv")))
  with pytest.raises(ValueError, match=r"dev.tsv.*does not exist"):
    os.makedirs(tmp_path / "SST-2")
    write(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\nx\t1\n")
    tasks.load_task(cfg(task="sst2", data_dir=str(tmp_path / "SST-2")))


def test_missing_column_lists_available(tmp_path):
  train = write(tmp_path / "t.csv", "sentence,label\nx,1\ny,0\n")
  with pytest.raises(ValueError, match=r"no column 'text'.*\['sentence', 'label'\]"):
    tasks.load_task(cfg(train_file=train, num_labels=2))


def test_labels_outside_classes(tmp_path):
  train = write(tmp_path / "t.csv", "text,label\nx,1\ny,2\n")
  with pytest.raises(ValueError, match=r"t.csv.*'label'.*'2'.*outside the configured classes"):
    tasks.load_task(cfg(train_file=train, num_labels=2))
  train = write(tmp_path / "u.csv", "text,label\nx,fresh\ny,stale\n")
  with pytest.raises(ValueError, match=r"'stale'.*\['rotten', 'fresh'\]"):
    tasks.load_task(cfg(train_file=train, label_names=("rotten", "fresh")))
  bad = os.path.join(tmp_path, "MNLI")
  os.makedirs(bad)
  for f in ("train.tsv", "dev_matched.tsv", "dev_mismatched.tsv"):
    write(os.path.join(bad, f), "sentence1\tsentence2\tgold_label\na\tb\t-\n")
  with pytest.raises(ValueError, match=r"label '-'.*entailment"):
    tasks.load_task(cfg(task="mnli", data_dir=bad))


def test_empty_split(tmp_path):
  train = write(tmp_path / "t.csv", "text,label\nx,1\ny,0\n")
  dev = write(tmp_path / "d.csv", "text,label\n")
  with pytest.raises(ValueError, match=r"Split 'validation' from .*d.csv.* is empty"):
    tasks.load_task(cfg(train_file=train, eval_files={"validation": dev}))


def test_unknown_task_and_bad_num_labels(tmp_path):
  with pytest.raises(ValueError, match=r"not a GLUE task"):
    tasks.load_task(cfg(task="glue_sst"))
  with pytest.raises(ValueError, match=r"num_labels=3 does not match"):
    tasks.load_task(cfg(task="sst2", data_dir=os.path.join(GLUE, "SST-2"), num_labels=3))


def test_glue_name_without_data_dir_fails_at_once(monkeypatch, tmp_path):
  monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  monkeypatch.setattr(glue, "_hf_cache_has_glue", lambda: False)
  start = time.time()
  with pytest.raises(ValueError, match=r"--config.data.data_dir=/path/to/glue/SST-2"):
    tasks.load_task(cfg(task="sst2"))
  assert time.time() - start < 5


def test_glue_from_local_hf_cache_renames_to_tsv_columns(monkeypatch):
  datasets = pytest.importorskip("datasets")
  calls = []

  def fake_load_dataset(path, name):
    calls.append((path, name, datasets.config.HF_HUB_OFFLINE))
    row = {
      "premise": ["A man walks.", "Rain."],
      "hypothesis": ["A person walks.", "Sun."],
      "label": [0, 2],
      "idx": [0, 1],
    }
    test = dict(row, label=[-1, -1])
    return datasets.DatasetDict(
      {s: datasets.Dataset.from_dict(row) for s in ("train", "validation_matched", "validation_mismatched")}
      | {s: datasets.Dataset.from_dict(test) for s in ("test_matched", "test_mismatched")}
    )

  monkeypatch.setattr(glue, "_hf_cache_has_glue", lambda: True)
  monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
  t = tasks.load_task(cfg(task="mnli"))
  assert calls == [("nyu-mll/glue", "mnli", True)]  # forced offline
  assert t.splits["train"]["sentence1"] == ["A man walks.", "Rain."]
  assert t.splits["validation_mismatched"]["gold_label"].tolist() == [0, 2]
  assert "gold_label" not in t.splits["test_matched"] and "ax" not in t.splits


def test_glue_test_file_with_labels_is_scored_and_without_only_predicted(tmp_path):
  """A GLUE folder whose test.tsv carries a label column is loaded labelled (scored); GLUE's own
  unlabelled test.tsv stays unlabelled (predicted only)."""
  folder = tmp_path / "SST-2"
  src = os.path.join(GLUE, "SST-2")
  for name in ("train.tsv", "dev.tsv"):
    write(folder / name, open(os.path.join(src, name), encoding="utf-8").read())
  write(folder / "test.tsv", "index\tsentence\tlabel\n0\ta fine film\t1\n1\ta dull film\t0\n")
  t = tasks.load_task(cfg(task="sst2", data_dir=str(folder)))
  assert t.splits["test"]["label"].tolist() == [1, 0]
  t = tasks.load_task(cfg(task="sst2", data_dir=src))
  assert "label" not in t.splits["test"]
