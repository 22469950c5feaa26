"""GLUE metrics against scikit-learn / scipy, and GLUE submission files."""

import dataclasses
import os

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from rail_kd_jax.outputs import task_metrics
from rail_kd_jax.data import tasks
from rail_kd_jax.core import defaults

GLUE = os.path.join(os.path.dirname(__file__), "fixtures", "glue")
SPECS = tasks.GLUE_TASKS

RNG = np.random.default_rng(0)
Y2 = RNG.integers(0, 2, 200)
P2 = np.where(RNG.random(200) < 0.7, Y2, 1 - Y2)
Y3 = RNG.integers(0, 3, 200)
P3 = np.where(RNG.random(200) < 0.6, Y3, RNG.integers(0, 3, 200))
SCORES = np.round(RNG.uniform(0, 5, 200), 1)  # rounded: ties exercise the ranks
PRED_SCORES = SCORES + RNG.normal(0, 1.0, 200)


def test_binary_metrics_match_sklearn():
  m = task_metrics.compute_metrics(SPECS["mrpc"], P2, Y2)
  assert m["accuracy"] == pytest.approx(skm.accuracy_score(Y2, P2))
  assert m["f1"] == pytest.approx(skm.f1_score(Y2, P2))
  assert m["combined_score"] == pytest.approx((m["f1"] + m["accuracy"]) / 2)
  m = task_metrics.compute_metrics(SPECS["qqp"], P2, Y2)
  assert m["f1"] == pytest.approx(skm.f1_score(Y2, P2))
  m = task_metrics.compute_metrics(SPECS["cola"], P2, Y2)
  assert m["matthews_corr"] == pytest.approx(skm.matthews_corrcoef(Y2, P2))


def test_multiclass_metrics_match_sklearn():
  local = dataclasses.replace(SPECS["mnli"], name="local", metric_names=("accuracy", "macro_f1", "matthews_corr"))
  m = task_metrics.compute_metrics(local, P3, Y3)
  assert m["accuracy"] == pytest.approx(skm.accuracy_score(Y3, P3))
  assert m["macro_f1"] == pytest.approx(skm.f1_score(Y3, P3, average="macro"))
  assert m["matthews_corr"] == pytest.approx(skm.matthews_corrcoef(Y3, P3))


def test_logits_are_argmaxed_and_mask_drops_rows():
  logits = np.eye(3)[P3] + 0.1
  m = task_metrics.compute_metrics(SPECS["mnli"], logits, Y3)
  assert m["accuracy"] == pytest.approx(skm.accuracy_score(Y3, P3))
  mask = np.r_[np.ones(150), np.zeros(50)]
  m = task_metrics.compute_metrics(SPECS["mnli"], logits, Y3, mask=mask)
  assert m["accuracy"] == pytest.approx(skm.accuracy_score(Y3[:150], P3[:150]))


def test_regression_metrics_match_scipy():
  m = task_metrics.compute_metrics(SPECS["stsb"], PRED_SCORES[:, None], SCORES)
  assert m["pearson"] == pytest.approx(stats.pearsonr(PRED_SCORES, SCORES)[0])
  assert m["spearmanr"] == pytest.approx(stats.spearmanr(PRED_SCORES, SCORES)[0])
  ties = np.round(PRED_SCORES)
  assert task_metrics.spearmanr(ties, SCORES) == pytest.approx(stats.spearmanr(ties, SCORES)[0])
  np.testing.assert_allclose(task_metrics._rank(ties), stats.rankdata(ties))


def test_degenerate_cases_are_zero_not_nan():
  assert task_metrics.matthews_corr(np.ones(5, int), np.array([0, 1, 1, 0, 1])) == 0.0
  assert task_metrics.pearson(np.ones(4), np.arange(4)) == 0.0
  assert task_metrics.f1_binary(np.zeros(4, int), np.zeros(4, int)) == 0.0


def test_glue_fixtures_evaluate_with_the_task_metrics():
  cfg = defaults.data_config()
  expected = {
    "sst2": ("SST-2", {"accuracy"}),
    "mrpc": ("MRPC", {"f1", "accuracy", "combined_score"}),
    "stsb": ("STS-B", {"pearson", "spearmanr", "combined_score"}),
    "cola": ("CoLA", {"matthews_corr", "accuracy"}),
  }
  for name, (folder, names) in expected.items():
    cfg.task, cfg.data_dir = name, os.path.join(GLUE, folder)
    t = tasks.load_task(cfg)
    labels = t.splits["validation"][t.spec.label_column]
    pred = labels[::-1].copy()
    m = task_metrics.compute_metrics(t.spec, pred, labels)
    assert set(m) == names
    if name == "sst2":
      assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, pred))
    if name == "mrpc":
      assert m["f1"] == pytest.approx(skm.f1_score(labels, pred))
    if name == "stsb":
      assert m["pearson"] == pytest.approx(stats.pearsonr(pred, labels)[0])
      assert m["spearmanr"] == pytest.approx(stats.spearmanr(pred, labels)[0])
    if name == "cola":
      assert m["matthews_corr"] == pytest.approx(skm.matthews_corrcoef(labels, pred))
    assert task_metrics.main_metric(t.spec) in m


def test_lower_is_better_only_for_mse_and_loss():
  assert task_metrics.lower_is_better("mse") and task_metrics.lower_is_better("loss")
  assert not any(task_metrics.lower_is_better(m) for m in ("accuracy", "f1", "matthews_corr", "pearson"))


def test_unlabelled_split_is_refused():
  with pytest.raises(ValueError, match="unlabelled"):
    task_metrics.compute_metrics(SPECS["sst2"], np.zeros(3, int), -np.ones(3, int))


def _read(path):
  with open(path, encoding="utf-8") as f:
    return [line.rstrip("\n").split("\t") for line in f]


@pytest.mark.parametrize(
  "task,split,fname,pred,expected",
  [
    ("cola", "test", "CoLA.tsv", [1, 0], ["1", "0"]),
    ("sst2", "test", "SST-2.tsv", [0, 1], ["0", "1"]),
    ("mrpc", "test", "MRPC.tsv", [1, 1], ["1", "1"]),
    ("qqp", "test", "QQP.tsv", [0, 1], ["0", "1"]),
    ("stsb", "test", "STS-B.tsv", [5.7, 2.3456], ["5.000", "2.346"]),
    ("mnli", "test_matched", "MNLI-m.tsv", [0, 1, 2], ["entailment", "neutral", "contradiction"]),
    ("mnli", "test_mismatched", "MNLI-mm.tsv", [2], ["contradiction"]),
    ("mnli", "ax", "AX.tsv", [1, 0], ["neutral", "entailment"]),
    ("qnli", "test", "QNLI.tsv", [0, 1], ["entailment", "not_entailment"]),
    ("rte", "test", "RTE.tsv", [1, 0], ["not_entailment", "entailment"]),
    ("wnli", "test", "WNLI.tsv", [1, 0], ["1", "0"]),
  ],
)
def test_submission_files_have_glue_names_and_columns(tmp_path, task, split, fname, pred, expected):
  path = task_metrics.write_submission(SPECS[task], np.asarray(pred), str(tmp_path), split)
  assert os.path.basename(path) == fname
  rows = _read(path)
  assert rows[0] == ["index", "prediction"]
  assert rows[1:] == [[str(i), v] for i, v in enumerate(expected)]


def test_submission_from_logits_with_index_and_local_names(tmp_path):
  logits = np.array([[0.1, 2.0, 0.0], [3.0, 0.0, 0.0]])
  path = task_metrics.write_submission(SPECS["mnli"], logits, str(tmp_path), "test_matched", index=np.array([7, 9]))
  assert _read(path)[1:] == [["7", "neutral"], ["9", "entailment"]]
  local = dataclasses.replace(SPECS["sst2"], name="local", label_names=("rotten", "fresh"))
  path = task_metrics.write_submission(local, np.array([1, 0]), str(tmp_path), "test")
  assert os.path.basename(path) == "local-test.tsv"
  assert _read(path)[1:] == [["0", "fresh"], ["1", "rotten"]]


def test_class_report_matches_sklearn():
  """Majority-class accuracy and per-class precision/recall/F1 on fixed predictions, with a class
  that is never predicted (scikit-learn's zero_division=0) and an imbalanced split."""
  rng = np.random.default_rng(1)
  labels = np.r_[np.zeros(140, int), np.ones(40, int), np.full(20, 2)]
  pred = np.where(rng.random(200) < 0.7, labels, rng.integers(0, 2, 200))
  pred[labels == 2] = 0  # class 2 is never predicted: its precision is 0/0
  spec = dataclasses.replace(SPECS["mnli"], name="local")
  report = task_metrics.class_report(spec, np.eye(3)[pred], labels)
  assert report["majority_accuracy"] == pytest.approx(0.7)
  p, r, f, _ = skm.precision_recall_fscore_support(labels, pred, labels=[0, 1, 2], zero_division=0)
  for k, name in enumerate(spec.label_names):
    assert report[f"precision/{name}"] == pytest.approx(p[k])
    assert report[f"recall/{name}"] == pytest.approx(r[k])
    assert report[f"f1/{name}"] == pytest.approx(f[k])
  unnamed = dataclasses.replace(SPECS["mrpc"], label_names=None)
  assert set(task_metrics.class_report(unnamed, P2, Y2)) == {
    "majority_accuracy",
    *(f"{m}/{k}" for m in ("precision", "recall", "f1") for k in ("0", "1")),
  }
  assert task_metrics.class_report(SPECS["stsb"], PRED_SCORES[:, None], SCORES) == {}


def test_eval_line_shows_the_majority_baseline_and_imbalance_warns_past_70_percent():
  record = {"accuracy": 0.69, "macro_f1": 0.5, "majority_accuracy": 0.78, "recall/dem": 0.9, "loss": 0.6}
  assert (
    task_metrics.eval_line(record) == "accuracy=0.6900 (majority class 0.7800, below it), macro_f1=0.5000, loss=0.6000"
  )
  assert task_metrics.eval_line(dict(record, accuracy=0.8)).startswith("accuracy=0.8000 (majority class 0.7800), ")
  spec = dataclasses.replace(SPECS["sst2"], name="local", label_names=("dem", "rep"))
  warning = task_metrics.imbalance_warning(spec, np.r_[np.zeros(78, int), np.ones(22, int)])
  assert "class 'dem' holds 78% of its 100 labelled examples" in warning and "\n" not in warning
  assert task_metrics.imbalance_warning(spec, np.r_[np.zeros(70, int), np.ones(30, int)]) is None
  assert task_metrics.imbalance_warning(SPECS["stsb"], np.zeros(10, np.float32)) is None
