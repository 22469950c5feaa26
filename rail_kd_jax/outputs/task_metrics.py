"""GLUE metrics (numpy only), the main metric of a task and its direction, and GLUE submission files."""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from rail_kd_jax.core import files
from rail_kd_jax.data.tasks import TaskSpec

# (task, split) -> the file name the GLUE benchmark server expects.
SUBMISSION_FILES: Mapping[tuple[str, str], str] = {
  ("cola", "test"): "CoLA.tsv",
  ("sst2", "test"): "SST-2.tsv",
  ("mrpc", "test"): "MRPC.tsv",
  ("qqp", "test"): "QQP.tsv",
  ("stsb", "test"): "STS-B.tsv",
  ("mnli", "test_matched"): "MNLI-m.tsv",
  ("mnli", "test_mismatched"): "MNLI-mm.tsv",
  ("mnli", "ax"): "AX.tsv",
  ("qnli", "test"): "QNLI.tsv",
  ("rte", "test"): "RTE.tsv",
  ("wnli", "test"): "WNLI.tsv",
}
# The benchmark wants label strings for the entailment tasks and 0/1 for the others.
_STRING_LABEL_TASKS = ("mnli", "qnli", "rte")
# The metrics (and the loss) where lower is better; every other metric is better higher.
LOWER_IS_BETTER = ("mse", "loss")


def to_predictions(spec: TaskSpec, outputs) -> np.ndarray:
  """Model outputs -> predictions: logits [N, C] -> int class ids [N]; scores [N(, 1)] -> float [N]."""
  outputs = np.asarray(outputs)
  if spec.is_regression:
    return outputs.reshape(len(outputs), -1)[:, 0].astype(np.float64)
  if outputs.ndim == 2:
    return outputs.argmax(-1).astype(np.int64)
  if outputs.ndim != 1:
    raise ValueError(f"Predictions of shape {outputs.shape} are neither [N] ids nor [N, C] logits.")
  return outputs.astype(np.int64)


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
  return float(np.mean(pred == labels))


def _f1_per_class(pred, labels, k) -> float:
  tp = np.sum((pred == k) & (labels == k))
  fp = np.sum((pred == k) & (labels != k))
  fn = np.sum((pred != k) & (labels == k))
  denom = 2 * tp + fp + fn
  return float(2 * tp / denom) if denom else 0.0


def f1_binary(pred: np.ndarray, labels: np.ndarray, positive: int = 1) -> float:
  """F1 of the positive class (0 when it is never predicted nor present)."""
  return _f1_per_class(pred, labels, positive)


def macro_f1(pred: np.ndarray, labels: np.ndarray) -> float:
  """Unweighted mean F1 over the classes present in labels or predictions (as sklearn)."""
  classes = np.union1d(np.unique(pred), np.unique(labels))
  return float(np.mean([_f1_per_class(pred, labels, k) for k in classes]))


def matthews_corr(pred: np.ndarray, labels: np.ndarray) -> float:
  """Matthews correlation, multiclass form (Gorodkin 2004); 0 when undefined."""
  classes, inv = np.unique(np.concatenate([labels, pred]), return_inverse=True)
  y, p = inv[: len(labels)], inv[len(labels) :]
  c = np.zeros((len(classes), len(classes)), np.float64)
  np.add.at(c, (y, p), 1.0)
  t_k, p_k = c.sum(1), c.sum(0)
  correct, s = np.trace(c), c.sum()
  cov_yp = correct * s - t_k @ p_k
  cov_pp = s * s - p_k @ p_k
  cov_yy = s * s - t_k @ t_k
  denom = np.sqrt(cov_pp * cov_yy)
  return float(cov_yp / denom) if denom else 0.0


def pearson(x: np.ndarray, y: np.ndarray) -> float:
  """Pearson correlation; 0 when either side is constant."""
  x = np.asarray(x, np.float64) - np.mean(x)
  y = np.asarray(y, np.float64) - np.mean(y)
  denom = np.sqrt((x @ x) * (y @ y))
  return float(x @ y / denom) if denom else 0.0


def _rank(x: np.ndarray) -> np.ndarray:
  """Ranks 1..N with ties given their average rank (scipy.stats.rankdata 'average')."""
  x = np.asarray(x)
  order = np.argsort(x, kind="mergesort")
  xs = x[order]
  starts = np.r_[True, xs[1:] != xs[:-1]]
  group = np.cumsum(starts) - 1
  first = np.flatnonzero(starts)
  counts = np.diff(np.r_[first, len(x)])
  avg = first + (counts + 1) / 2.0
  ranks = np.empty(len(x), np.float64)
  ranks[order] = avg[group]
  return ranks


def spearmanr(x: np.ndarray, y: np.ndarray) -> float:
  return pearson(_rank(x), _rank(y))


def compute_metrics(spec: TaskSpec, predictions, labels, mask=None) -> dict[str, float]:
  """Every metric in `spec.metric_names` for one split.

  Args:
    spec: the task.
    predictions: int class ids [N], logits [N, C], or regression scores [N] / [N, 1].
    labels: int class ids [N] or float scores [N].
    mask: optional [N] weights; rows with mask <= 0 (batch padding) are left out.

  Returns:
    {metric name: float}; GLUE conventions: cola matthews_corr; mrpc/qqp f1 (class 1
    positive) and accuracy; stsb pearson and spearmanr; combined_score = their mean.
  """
  pred = to_predictions(spec, predictions)
  labels = np.asarray(labels)
  if labels.ndim == 2 and labels.shape[1] == 1:
    labels = labels[:, 0]
  if len(pred) != len(labels):
    raise ValueError(f"{len(pred)} predictions for {len(labels)} labels.")
  if mask is not None:
    keep = np.asarray(mask) > 0
    pred, labels = pred[keep], labels[keep]
  if len(labels) == 0:
    raise ValueError("No examples to evaluate (all rows masked out or empty split).")
  if not spec.is_regression and np.any(labels < 0):
    raise ValueError("Labels contain -1 (an unlabelled test split); metrics need labels.")
  out: dict[str, float] = {}
  for name in spec.metric_names:
    if name == "accuracy":
      out[name] = accuracy(pred, labels)
    elif name == "f1":
      out[name] = f1_binary(pred, labels)
    elif name == "macro_f1":
      out[name] = macro_f1(pred, labels)
    elif name == "matthews_corr":
      out[name] = matthews_corr(pred, labels)
    elif name == "pearson":
      out[name] = pearson(pred, labels)
    elif name == "spearmanr":
      out[name] = spearmanr(pred, labels)
    elif name == "mse":
      out[name] = float(np.mean((pred - labels.astype(np.float64)) ** 2))
  if "combined_score" in spec.metric_names:
    parts = ("pearson", "spearmanr") if spec.is_regression else ("f1", "accuracy")
    out["combined_score"] = float(np.mean([out[p] for p in parts]))
  return out


def class_name(spec: TaskSpec, k: int) -> str:
  """Class k's name in metric keys: its label name, else its id."""
  names = spec.label_names or ()
  return str(names[k]) if k < len(names) else str(k)


def class_report(spec: TaskSpec, predictions, labels, mask=None) -> dict[str, float]:
  """What a class imbalance hides, for one labelled classification split ({} for regression).

  Returns:
    `majority_accuracy`: the accuracy of always predicting the split's most frequent class;
    `precision/<class>`, `recall/<class>`, `f1/<class>` for every class of the task (0 where
    undefined, as scikit-learn's zero_division=0), `<class>` being its label name or id.
  """
  if spec.is_regression:
    return {}
  pred = to_predictions(spec, predictions)
  labels = np.asarray(labels).reshape(len(pred))
  if mask is not None:
    keep = np.asarray(mask) > 0
    pred, labels = pred[keep], labels[keep]
  if len(labels) == 0:
    raise ValueError("No examples to evaluate (all rows masked out or empty split).")
  out = {"majority_accuracy": float(np.bincount(labels, minlength=spec.num_labels).max() / len(labels))}
  for k in range(spec.num_labels):
    tp = float(np.sum((pred == k) & (labels == k)))
    predicted, actual = float(np.sum(pred == k)), float(np.sum(labels == k))
    name = class_name(spec, k)
    out[f"precision/{name}"] = tp / predicted if predicted else 0.0
    out[f"recall/{name}"] = tp / actual if actual else 0.0
    out[f"f1/{name}"] = _f1_per_class(pred, labels, k)
  return out


def majority_share(spec: TaskSpec, labels) -> tuple[float, str]:
  """(share of the most frequent class, its name) in a labelled classification split."""
  counts = np.bincount(np.asarray(labels).reshape(-1), minlength=spec.num_labels)
  k = int(counts.argmax())
  return float(counts[k] / max(counts.sum(), 1)), class_name(spec, k)


def main_metric(spec: TaskSpec) -> str:
  """The metric that picks the best checkpoint (its direction: `lower_is_better`)."""
  return spec.main_metric


def lower_is_better(metric: str) -> bool:
  """Whether a smaller value of `metric` is better: 'mse' and 'loss'; higher is better for the others."""
  return metric in LOWER_IS_BETTER


def submission_filename(spec: TaskSpec, split: str) -> str:
  """GLUE's name for (task, split), e.g. 'MNLI-m.tsv'; '<task>-<split>.tsv' otherwise."""
  return SUBMISSION_FILES.get((spec.name, split), f"{spec.name}-{split}.tsv")


def write_submission(spec: TaskSpec, predictions, out_dir: str, split: str, index=None) -> str:
  """Writes `index<TAB>prediction` rows as the GLUE benchmark expects; returns the path.

  Args:
    spec: the task.
    predictions: class ids [N], logits [N, C], or scores [N] (STS-B, clipped to 0..5).
    out_dir: the folder (created) that will hold e.g. SST-2.tsv, MNLI-m.tsv, AX.tsv.
    split: the split predicted ('test', 'test_matched', 'test_mismatched', 'ax').
    index: the example ids [N] (the split's `idx` column); default 0..N-1.
  """
  pred = to_predictions(spec, predictions)
  index = np.arange(len(pred)) if index is None else np.asarray(index)
  if len(index) != len(pred):
    raise ValueError(f"{len(index)} index values for {len(pred)} predictions.")
  if spec.is_regression:
    if spec.name == "stsb":
      pred = np.clip(pred, 0.0, 5.0)
    values = [f"{v:.3f}" for v in pred]
  elif spec.name in _STRING_LABEL_TASKS or (spec.name not in {t for t, _ in SUBMISSION_FILES} and spec.label_names):
    values = [spec.label_names[int(v)] for v in pred]
  else:
    values = [str(int(v)) for v in pred]
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, submission_filename(spec, split))
  fd, tmp = files.mkstemp(dir=out_dir, suffix=".tmp")
  with os.fdopen(fd, "w", encoding="utf-8") as f:
    f.write("index\tprediction\n")
    for i, v in zip(index, values):
      f.write(f"{int(i)}\t{v}\n")
  os.replace(tmp, path)
  return path


def eval_line(res: dict) -> str:
  """An eval record as one log line: the task metrics, with the accuracy next to the
  majority-class baseline (and a word when it falls below it); per-class figures are left to
  metrics.jsonl."""
  parts = []
  for k, v in res.items():
    if not isinstance(v, float) or "/" in k or k == "majority_accuracy":
      continue
    parts.append(f"{k}={v:.4f}")
    if k == "accuracy" and "majority_accuracy" in res:
      base = res["majority_accuracy"]
      parts[-1] += f" (majority class {base:.4f}{', below it' if v < base else ''})"
  return ", ".join(parts)


def imbalance_warning(spec, labels, threshold: float = 0.7) -> str | None:
  """One line when the train split's largest class exceeds `threshold` of its labelled rows."""
  labels = np.asarray(labels).reshape(-1)
  if spec.is_regression:
    return None
  if not len(labels):
    return None
  share, name = majority_share(spec, labels)
  if share <= threshold:
    return None
  return (
    f"the train split is imbalanced: class {name!r} holds {share:.0%} of its {len(labels)} labelled examples; "
    f"a model that always predicts it scores that accuracy, so compare with each eval record's "
    "majority_accuracy and read macro_f1 and the per-class recall/<class> in metrics.jsonl"
  )
