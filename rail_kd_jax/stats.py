"""Statistics for comparing methods over seeds: summaries and paired differences.

Runs of two methods with the same seed share the student initialisation recipe, the
data order and the dropout keys, so they are compared **paired by seed**: the
difference per seed, its mean, a 95% interval, and the win count.

  summary([78.1, 77.9, 78.4])            -> {"n", "mean", "std" (ddof 1), "values"}
  paired_difference(a, b)                -> mean of a - b with a paired-t interval
  paired_difference(a, b, "bootstrap")   -> the same with a percentile bootstrap interval
  mean_interval([78.1, 77.9, 78.4])      -> one method's mean with its t interval

An interval that contains 0 means the data do not separate the two methods.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

METHODS = ("t", "bootstrap")


def summary(values: Sequence[float]) -> dict:
  """Mean and sample standard deviation (ddof=1; 0.0 for a single value)."""
  v = np.asarray(values, np.float64)
  if v.ndim != 1 or v.size == 0:
    raise ValueError(f"summary needs a non-empty list of numbers, got shape {v.shape}")
  std = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
  return {"n": int(v.size), "mean": float(np.mean(v)), "std": std, "values": [float(x) for x in v]}


def paired_difference(
  a: Sequence[float],
  b: Sequence[float],
  method: str = "t",
  confidence: float = 0.95,
  resamples: int = 10_000,
  seed: int = 0,
) -> dict:
  """Mean of the per-seed differences `a - b`, its interval, and the per-seed win count.

  Args:
    a, b: one value per seed, in the same seed order.
    method: 't' (paired t: mean +- t_{n-1, (1+c)/2} * sd / sqrt(n)) or 'bootstrap'
      (percentile interval of the mean over `resamples` resamplings of the seeds).
    confidence: the interval's level, in (0, 1).

  Returns:
    {"n", "mean", "low", "high", "method", "confidence", "wins", "ties", "losses",
     "differences"}; with one seed, low = high = mean (no interval).
  """
  x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if x.shape != y.shape or x.ndim != 1 or x.size == 0:
    raise ValueError(
      f"paired_difference needs two equally long lists (one value per seed), got {x.shape} and {y.shape}"
    )
  if method not in METHODS:
    raise ValueError(f"method={method!r} is not valid; choose one of {', '.join(METHODS)}")
  if not 0 < confidence < 1:
    raise ValueError(f"confidence={confidence!r} must be in (0, 1)")
  d = x - y
  n, mean = d.size, float(np.mean(d))
  low = high = mean
  if n > 1 and method == "t":
    from scipy import stats as scipy_stats  # pylint: disable=g-import-not-at-top

    half = float(scipy_stats.t.ppf((1 + confidence) / 2, n - 1) * np.std(d, ddof=1) / np.sqrt(n))
    low, high = mean - half, mean + half
  elif n > 1:
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    low, high = (float(q) for q in np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2]))
  return {
    "n": int(n),
    "mean": mean,
    "low": float(low),
    "high": float(high),
    "method": method,
    "confidence": confidence,
    "wins": int(np.sum(d > 0)),
    "ties": int(np.sum(d == 0)),
    "losses": int(np.sum(d < 0)),
    "differences": [float(v) for v in d],
  }


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> dict:
  """Student-t interval of the mean of `values` (one per seed): {"mean", "low", "high"};
  low = high = mean for a single value."""
  v = np.asarray(values, np.float64)
  if v.ndim != 1 or v.size == 0:
    raise ValueError(f"mean_interval needs a non-empty list of numbers, got shape {v.shape}")
  mean = float(np.mean(v))
  if v.size == 1:
    return {"mean": mean, "low": mean, "high": mean}
  from scipy import stats as scipy_stats  # pylint: disable=g-import-not-at-top

  half = float(scipy_stats.t.ppf((1 + confidence) / 2, v.size - 1) * np.std(v, ddof=1) / np.sqrt(v.size))
  return {"mean": mean, "low": mean - half, "high": mean + half}
