"""Seed statistics against scipy on fixed, made-up numbers (not results)."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from rail_kd_jax.outputs import stats

A = [78.17, 78.32, 77.60, 78.90, 77.95]
B = [76.77, 77.10, 77.70, 77.20, 76.40]


def test_summary_matches_numpy():
  s = stats.summary(A)
  assert s["n"] == 5 and s["values"] == A
  assert s["mean"] == pytest.approx(np.mean(A)) and s["std"] == pytest.approx(np.std(A, ddof=1))
  assert stats.summary([3.0])["std"] == 0.0


def test_mean_std_is_the_summary_rule_and_its_format():
  assert stats.mean_std(A) == (stats.summary(A)["mean"], stats.summary(A)["std"])
  assert stats.mean_std([3.0]) == (3.0, 0.0)
  assert all(np.isnan(stats.mean_std([])))
  assert stats.format_mean_std(0.7813, 0.0125, scale=100) == "78.13 ± 1.25"
  assert stats.format_mean_std(101.04, 1.0, digits=0) == "101 ± 1"


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


def test_paired_p_values():
  assert stats.paired_difference(A, B)["p_value"] == pytest.approx(scipy_stats.ttest_rel(A, B).pvalue, rel=1e-12)
  assert stats.paired_difference([2.0], [1.0])["p_value"] is None
  assert stats.paired_difference([1.0, 2.0], [1.0, 2.0])["p_value"] == 1.0  # every difference 0
  assert stats.paired_difference([2.0, 3.0], [1.0, 2.0])["p_value"] == 0.0  # every difference 1
  boot = stats.paired_difference(A, B, method="bootstrap", seed=3)
  assert 0 < boot["p_value"] < 0.1  # 4 wins of 5; the t-test's p is about 0.02
  r = 10_000
  # Every resampled mean of all-positive differences is > 0: p = 2 * (1 + 0) / (R + 1).
  up = stats.paired_difference([2.0, 3.0, 4.0], [1.0, 1.0, 1.0], method="bootstrap", resamples=r)
  assert up["p_value"] == pytest.approx(2 / (r + 1))


def test_holm_by_hand():
  # p = [0.01, 0.04, 0.03, 0.005], m = 4. Sorted: 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 =
  # 0.02, 0.03, 0.06, 0.04; running max 0.02, 0.03, 0.06, 0.06; in input order:
  assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
  # Sorted 0.2, 0.3, 0.6 times 3, 2, 1 = 0.6, 0.6, 0.6; 0.4 * 3 = 1.2 caps at 1.
  assert stats.holm([0.3, 0.2, 0.6]) == pytest.approx([0.6, 0.6, 0.6])
  assert stats.holm([0.4, 0.01]) == pytest.approx([0.4, 0.02])
  assert stats.holm([0.5, 0.4, 0.01]) == pytest.approx([0.8, 0.8, 0.03])
  assert stats.holm([0.45, 0.9]) == pytest.approx([0.9, 0.9])
  assert stats.holm([0.7, 0.6]) == [1.0, 1.0]  # 2 * 0.6 caps at 1
  assert stats.holm([0.02]) == [0.02] and stats.holm([]) == []
  p = np.random.default_rng(0).random(40) ** 3
  adj = np.asarray(stats.holm(p))
  assert np.all(adj >= p) and np.all(adj <= 1)
  order = np.argsort(p)
  assert np.all(np.diff(adj[order]) >= 0)  # the adjustment keeps the order of the raw p-values
  with pytest.raises(ValueError, match="None"):
    stats.holm([0.1, None])
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    stats.holm([0.1, 1.5])


def test_holm_matches_statsmodels():
  multitest = pytest.importorskip("statsmodels.stats.multitest")
  p = np.random.default_rng(1).random(25) ** 2
  np.testing.assert_allclose(stats.holm(p), multitest.multipletests(p, method="holm")[1], rtol=1e-12)


def _exact_two_level(d, clusters):
  """Exact distribution of the two-level bootstrap statistic: all S^S x C^C ordered draws."""
  import itertools  # pylint: disable=g-import-not-at-top

  d = np.asarray(d, np.float64)
  labels = sorted(set(clusters))
  members = [[e for e, c in enumerate(clusters) if c == k] for k in labels]
  out = []
  for seeds in itertools.product(range(d.shape[0]), repeat=d.shape[0]):
    for drawn in itertools.product(range(len(labels)), repeat=len(labels)):
      examples = [e for k in drawn for e in members[k]]
      out.append(np.mean([d[s, examples].mean() for s in seeds]))
  return np.asarray(out)


def test_clustered_bootstrap_matches_exact_enumeration():
  # S = 2 seeds, E = 4 examples in clusters x (1 example) and y (3 examples): 2^2 * 2^2 = 16 draws.
  a = [[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]]
  b = [[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]]
  clusters = ["x", "y", "y", "y"]
  d = np.subtract(a, b)
  exact = _exact_two_level(d, clusters)
  assert exact.size == 16 and np.unique(exact).size > 4
  r = 200_000
  got = stats.clustered_bootstrap(a, b, clusters, resamples=r, seed=5)
  sums, sizes = stats._cluster_sums(d, clusters)  # pylint: disable=protected-access
  np.testing.assert_array_equal(sums, [[1.0, -1.0], [0.0, 2.0]])
  np.testing.assert_array_equal(sizes, [1, 3])
  reps = stats._bootstrap_replicates(sums, sizes, r, seed=5)  # pylint: disable=protected-access
  assert got["se"] == pytest.approx(np.std(reps, ddof=1), rel=1e-12)  # the same replicates
  assert reps.mean() == pytest.approx(exact.mean(), abs=0.003)
  assert got["se"] == pytest.approx(exact.std(), abs=0.003)
  below, above = np.mean(exact <= 0), np.mean(exact >= 0)
  assert np.mean(reps <= 0) == pytest.approx(below, abs=0.01)
  assert np.mean(reps >= 0) == pytest.approx(above, abs=0.01)
  assert got["p_value"] == pytest.approx(min(1.0, 2 * min(below, above)), abs=0.02)
  # Each of the 16 draws has probability 1/16 > 2.5%: the exact 2.5% and 97.5% quantiles are the extremes.
  assert got["low"] == pytest.approx(exact.min()) and got["high"] == pytest.approx(exact.max())
  assert got["mean"] == pytest.approx(d.mean()) and got["per_seed"] == pytest.approx(d.mean(axis=1))
  assert (got["n_seeds"], got["n_examples"], got["n_clusters"], got["resamples"]) == (2, 4, 2, r)
  # Chunks of any size draw from the same distribution.
  small = stats._bootstrap_replicates(sums, sizes, 20_003, seed=1, chunk=7)  # pylint: disable=protected-access
  assert small.shape == (20_003,) and small.mean() == pytest.approx(exact.mean(), abs=0.01)


def test_clustered_bootstrap_one_seed_is_an_example_bootstrap():
  rng = np.random.default_rng(0)
  a = (rng.random((1, 500)) < 0.8).astype(np.float64)
  b = (rng.random((1, 500)) < 0.7).astype(np.float64)
  got = stats.clustered_bootstrap(a, b, seed=2)
  assert got == stats.clustered_bootstrap(a, b, seed=2)  # seeded
  assert got["n_clusters"] == 500 and got["mean"] == pytest.approx(np.mean(a - b))
  ref = scipy_stats.bootstrap(
    (a[0], b[0]),
    lambda x, y, axis: np.mean(x - y, axis=axis),
    paired=True,
    confidence_level=0.95,
    method="percentile",
    n_resamples=10_000,
    rng=np.random.default_rng(2),
  )
  assert got["low"] == pytest.approx(ref.confidence_interval.low, abs=0.01)
  assert got["high"] == pytest.approx(ref.confidence_interval.high, abs=0.01)
  assert got["se"] == pytest.approx(ref.standard_error, abs=0.002)


def test_clusters_widen_the_interval_when_examples_are_correlated():
  rng = np.random.default_rng(0)
  clusters = np.repeat(np.arange(30), 10)  # 30 movies of 10 reviews
  shared = rng.choice([-1.0, 0.0, 1.0], size=30)  # one difference per movie, for every review
  a = np.tile(np.where(shared > 0, 1.0, 0.0)[clusters], (3, 1))
  b = np.tile(np.where(shared < 0, 1.0, 0.0)[clusters], (3, 1))
  wide = stats.clustered_bootstrap(a, b, clusters.tolist(), resamples=4000)
  narrow = stats.clustered_bootstrap(a, b, resamples=4000)
  assert wide["mean"] == narrow["mean"]
  assert wide["high"] - wide["low"] > 2 * (narrow["high"] - narrow["low"])  # about sqrt(10)x
  assert wide["se"] > 2 * narrow["se"]


def test_clustered_bootstrap_bad_input():
  a = np.zeros((2, 3))
  with pytest.raises(ValueError, match="one shape"):
    stats.clustered_bootstrap(a, np.zeros((2, 4)))
  with pytest.raises(ValueError, match="one shape"):
    stats.clustered_bootstrap(np.zeros(3), np.zeros(3))
  with pytest.raises(ValueError, match="at least one"):
    stats.clustered_bootstrap(np.zeros((2, 0)), np.zeros((2, 0)))
  with pytest.raises(ValueError, match="finite"):
    stats.clustered_bootstrap(a, np.full((2, 3), np.nan))
  with pytest.raises(ValueError, match="clusters has 2 labels"):
    stats.clustered_bootstrap(a, a, clusters=["x", "y"])
  with pytest.raises(ValueError, match="resamples=0"):
    stats.clustered_bootstrap(a, a, resamples=0)
  for c in (0.0, 1.0, 1.5):
    with pytest.raises(ValueError, match="confidence="):
      stats.clustered_bootstrap(a, a, confidence=c)
