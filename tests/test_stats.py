"""Seed statistics against scipy on fixed, made-up numbers (not results)."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from rail_kd_jax import stats

A = [78.17, 78.32, 77.60, 78.90, 77.95]
B = [76.77, 77.10, 77.70, 77.20, 76.40]


def test_summary_matches_numpy():
  s = stats.summary(A)
  assert s["n"] == 5 and s["values"] == A
  assert s["mean"] == pytest.approx(np.mean(A)) and s["std"] == pytest.approx(np.std(A, ddof=1))
  assert stats.summary([3.0])["std"] == 0.0


def test_paired_t_interval_matches_scipy():
  got = stats.paired_difference(A, B)
  d = np.subtract(A, B)
  low, high = scipy_stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=scipy_stats.sem(d))
  assert got["mean"] == pytest.approx(d.mean())
  assert got["low"] == pytest.approx(low) and got["high"] == pytest.approx(high)
  # The interval excludes 0 exactly when the paired t-test rejects at 5%.
  p = scipy_stats.ttest_rel(A, B).pvalue
  assert (got["low"] > 0 or got["high"] < 0) == (p < 0.05)
  assert (got["wins"], got["ties"], got["losses"]) == (4, 0, 1)
  ninety = stats.paired_difference(A, B, confidence=0.9)
  assert got["low"] < ninety["low"] < ninety["high"] < got["high"]


def test_paired_bootstrap_interval():
  got = stats.paired_difference(A, B, method="bootstrap", seed=3)
  again = stats.paired_difference(A, B, method="bootstrap", seed=3)
  assert got == again  # seeded
  d = np.subtract(A, B)
  assert d.min() <= got["low"] <= got["mean"] <= got["high"] <= d.max()
  ref = scipy_stats.bootstrap(
    (d,), np.mean, confidence_level=0.95, method="percentile", n_resamples=10_000, random_state=3
  ).confidence_interval
  assert got["low"] == pytest.approx(ref.low, abs=0.1) and got["high"] == pytest.approx(ref.high, abs=0.1)


def test_bad_input():
  with pytest.raises(ValueError, match="equally long"):
    stats.paired_difference([1.0, 2.0], [1.0])
  with pytest.raises(ValueError, match="method='wilcoxon'"):
    stats.paired_difference([1.0], [2.0], method="wilcoxon")
  one = stats.paired_difference([2.0], [1.0])
  assert one["low"] == one["high"] == one["mean"] == 1.0


def test_mean_interval_matches_scipy():
  got = stats.mean_interval(A)
  low, high = scipy_stats.t.interval(0.95, len(A) - 1, loc=np.mean(A), scale=scipy_stats.sem(A))
  assert got["mean"] == pytest.approx(np.mean(A))
  assert got["low"] == pytest.approx(low) and got["high"] == pytest.approx(high)
  assert stats.mean_interval([3.0]) == {"mean": 3.0, "low": 3.0, "high": 3.0}
  with pytest.raises(ValueError, match="non-empty"):
    stats.mean_interval([])
