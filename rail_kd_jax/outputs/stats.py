"""Statistics for comparing methods over seeds: summaries and paired differences.

Runs of two methods with the same seed share the student initialisation recipe, the
data order and the dropout keys, so they are compared **paired by seed**: the
difference per seed, its mean, a 95% interval, and the win count.

  mean_std([78.1, 77.9, 78.4])           -> (mean, sample std (ddof 1)), for every table over seeds
  format_mean_std(mean, std)             -> "78.13 ± 0.25", as every table shows them
  summary([78.1, 77.9, 78.4])            -> {"n", "mean", "std" (ddof 1), "values"}
  paired_difference(a, b)                -> mean of a - b with a paired-t interval and p-value
  paired_difference(a, b, "bootstrap")   -> the same with a percentile bootstrap interval and p-value
  mean_interval([78.1, 77.9, 78.4])      -> one method's mean with its t interval
  clustered_bootstrap(sa, sb, clusters)  -> accuracy difference of [S, E] scores, resampling seeds x clusters
  holm([0.01, 0.04, 0.03])               -> Holm-Bonferroni adjusted p-values, in the input order

An interval that contains 0 means the data do not separate the two methods.
"""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np

METHODS = ("t", "bootstrap")

# Replicates per chunk in `_bootstrap_replicates` are this many cluster counts / max(C, S), so
# the [chunk, C] draw matrices stay near 16 MiB whatever the number of clusters.
_CHUNK_ELEMENTS = 1 << 21


def _bootstrap_p_value(replicates: np.ndarray) -> float:
  """Two-sided bootstrap p-value of "the statistic is 0" from replicates [R]:
  min(1, 2 * min((1 + #{<= 0}) / (R + 1), (1 + #{>= 0}) / (R + 1)))."""
  r = replicates.size
  below = (1 + int(np.sum(replicates <= 0))) / (r + 1)
  above = (1 + int(np.sum(replicates >= 0))) / (r + 1)
  return float(min(1.0, 2 * min(below, above)))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """(mean, sample standard deviation) of a flat list: ddof=1, 0.0 for a single value, (nan, nan)
  for none."""
  v = np.asarray(values, np.float64)
  if v.ndim != 1:
    raise ValueError(f"mean_std needs a flat list of numbers, got shape {v.shape}")
  if v.size == 0:
    return float("nan"), float("nan")
  return float(np.mean(v)), (float(np.std(v, ddof=1)) if v.size > 1 else 0.0)


def format_mean_std(mean: float, std: float, scale: float = 1.0, digits: int = 2) -> str:
  """'<mean> ± <std>', both times `scale` (100: in percent) with `digits` decimals."""
  return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def summary(values: Sequence[float]) -> dict:
  """Mean and sample standard deviation (`mean_std`) with the count and the values."""
  v = np.asarray(values, np.float64)
  if v.ndim != 1 or v.size == 0:
    raise ValueError(f"summary needs a non-empty list of numbers, got shape {v.shape}")
  mean, std = mean_std(v)
  return {"n": int(v.size), "mean": mean, "std": std, "values": [float(x) for x in v]}


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
    {"n", "mean", "low", "high", "p_value", "method", "confidence", "wins", "ties", "losses",
     "differences"}; with one seed, low = high = mean (no interval) and p_value is None.
    p_value is two-sided: for 't' the paired t-test's (scipy.stats.ttest_rel; 1.0 when every
    difference is 0, 0.0 when they are all the same nonzero value), for 'bootstrap' the
    bootstrap p-value of the same resamples (see `clustered_bootstrap`).
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
  n, (mean, sd) = d.size, mean_std(d)
  low = high = mean
  p_value = None
  if n > 1 and method == "t":
    from scipy import stats as scipy_stats  # pylint: disable=g-import-not-at-top

    half = float(scipy_stats.t.ppf((1 + confidence) / 2, n - 1) * sd / np.sqrt(n))
    low, high = mean - half, mean + half
    if np.all(d == d[0]):  # zero variance: the t statistic is 0/0 or +-inf
      p_value = 1.0 if d[0] == 0 else 0.0
    else:
      p_value = float(scipy_stats.ttest_rel(x, y).pvalue)
  elif n > 1:
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    low, high = (float(q) for q in np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2]))
    p_value = _bootstrap_p_value(means)
  return {
    "n": int(n),
    "mean": mean,
    "low": float(low),
    "high": float(high),
    "p_value": p_value,
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
  mean, sd = mean_std(v)
  if v.size == 1:
    return {"mean": mean, "low": mean, "high": mean}
  from scipy import stats as scipy_stats  # pylint: disable=g-import-not-at-top

  half = float(scipy_stats.t.ppf((1 + confidence) / 2, v.size - 1) * sd / np.sqrt(v.size))
  return {"mean": mean, "low": mean - half, "high": mean + half}


def _cluster_sums(differences: np.ndarray, clusters: Sequence[Hashable] | None) -> tuple[np.ndarray, np.ndarray]:
  """Per-seed per-cluster sums D [S, C] of `differences` [S, E] and cluster sizes n [C] (clusters
  numbered in order of first appearance; None: every example is its own cluster)."""
  s, e = differences.shape
  if clusters is None:
    return differences.copy(), np.ones(e, np.int64)
  index: dict = {}
  idx = np.fromiter((index.setdefault(c, len(index)) for c in clusters), np.intp, count=e)
  c = len(index)
  flat = (idx[None, :] + c * np.arange(s)[:, None]).ravel()
  sums = np.bincount(flat, weights=differences.ravel(), minlength=s * c).reshape(s, c)
  return sums, np.bincount(idx, minlength=c)


def _bootstrap_replicates(
  cluster_sums: np.ndarray,
  cluster_sizes: np.ndarray,
  resamples: int,
  seed: int = 0,
  chunk: int | None = None,
) -> np.ndarray:
  """Two-level bootstrap replicates [R] of the mean accuracy difference (see `clustered_bootstrap`).

  Args:
    cluster_sums: D [S, C], per seed the sum of a - b over each cluster's examples.
    cluster_sizes: n [C], the examples per cluster (all >= 1).
    resamples: R, the number of replicates.
    chunk: replicates drawn at once (default: _CHUNK_ELEMENTS // max(C, S)); the result depends on it.

  Each replicate draws cluster counts w ~ Multinomial(C, 1/C) [C] and S seed indices with
  replacement, and is the mean over the drawn seeds s of (D[s] . w) / (n . w).
  """
  sums = np.asarray(cluster_sums, np.float64)
  sizes = np.asarray(cluster_sizes, np.float64)
  n_seeds, n_clusters = sums.shape
  if chunk is None:
    chunk = max(1, _CHUNK_ELEMENTS // max(n_clusters, n_seeds))
  rng = np.random.default_rng(seed)
  out = np.empty(resamples, np.float64)
  for start in range(0, resamples, chunk):
    r = min(chunk, resamples - start)
    # Multinomial(C, 1/C) counts per replicate, as the histogram of C uniform cluster draws.
    draws = rng.integers(0, n_clusters, size=(r, n_clusters)) + n_clusters * np.arange(r)[:, None]
    w = np.bincount(draws.ravel(), minlength=r * n_clusters).reshape(r, n_clusters).astype(np.float64)
    picks = rng.integers(0, n_seeds, size=(r, n_seeds))
    per_seed = (w @ sums.T) / (w @ sizes)[:, None]  # [r, S]: each seed's difference on the drawn test set
    out[start : start + r] = np.take_along_axis(per_seed, picks, axis=1).mean(axis=1)
  return out


def clustered_bootstrap(
  scores_a,
  scores_b,
  clusters: Sequence[Hashable] | None = None,
  resamples: int = 10_000,
  confidence: float = 0.95,
  seed: int = 0,
) -> dict:
  """Two-level paired bootstrap of the accuracy difference of two methods over seeds and examples.

  Both methods run with the same S seeds and are scored on the same E test examples. Each
  replicate resamples the seeds with replacement and, once for all its seeds (the examples are
  the same for every seed), the clusters with replacement; its statistic is the mean over the
  drawn seeds of the difference in accuracy on the drawn test set (sum of a - b over the drawn
  clusters' examples / their number of examples).

  Args:
    scores_a, scores_b: [S, E] per-seed per-example scores (1.0 correct, 0.0 wrong, or any
      score); row s of both is the same seed, column e the same example.
    clusters: [E] hashable labels; examples with one label are resampled together (e.g. the
      reviews of one movie). None: each example is its own cluster.
    resamples: R, the number of replicates.
    confidence: the percentile interval's level, in (0, 1).
    seed: seeds np.random.default_rng; the result is deterministic for a given seed.

  Returns:
    {"mean" (mean of scores_a - scores_b), "low", "high", "p_value" (two-sided bootstrap:
     min(1, 2 * min((1 + #{stat* <= 0}) / (R + 1), (1 + #{stat* >= 0}) / (R + 1)))),
     "se" (std of the replicates, ddof 1; 0.0 for R = 1), "n_seeds", "n_examples",
     "n_clusters", "resamples", "confidence", "method", "per_seed" (each seed's mean difference)}.
  """
  x, y = np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64)
  if x.shape != y.shape or x.ndim != 2:
    raise ValueError(
      f"clustered_bootstrap needs two [seeds, examples] arrays of one shape, got {x.shape} and {y.shape}"
    )
  if x.size == 0:
    raise ValueError(f"clustered_bootstrap needs at least one seed and one example, got shape {x.shape}")
  if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
    raise ValueError("clustered_bootstrap needs finite scores, got NaN or infinity in scores_a or scores_b")
  if clusters is not None and len(clusters) != x.shape[1]:
    raise ValueError(f"clusters has {len(clusters)} labels but the scores have {x.shape[1]} examples")
  if resamples < 1:
    raise ValueError(f"resamples={resamples!r} must be at least 1")
  if not 0 < confidence < 1:
    raise ValueError(f"confidence={confidence!r} must be in (0, 1)")
  d = x - y
  sums, sizes = _cluster_sums(d, clusters)
  reps = _bootstrap_replicates(sums, sizes, resamples, seed)
  low, high = (float(q) for q in np.quantile(reps, [(1 - confidence) / 2, (1 + confidence) / 2]))
  return {
    "mean": float(np.mean(d)),
    "low": low,
    "high": high,
    "p_value": _bootstrap_p_value(reps),
    "se": mean_std(reps)[1],
    "n_seeds": int(d.shape[0]),
    "n_examples": int(d.shape[1]),
    "n_clusters": int(sizes.size),
    "resamples": int(resamples),
    "confidence": confidence,
    "method": "two-level bootstrap (seeds x clusters)",
    "per_seed": [float(v) for v in d.mean(axis=1)],
  }


def holm(p_values: Sequence[float]) -> list[float]:
  """Holm-Bonferroni adjusted p-values [m], in the input order (as statsmodels'
  multipletests(p, method='holm')[1]): sorted ascending, adj_(i) = max_{j <= i} min(1, (m - j) p_(j))
  with 0-based j."""
  if any(p is None for p in p_values):
    raise ValueError(f"holm needs a p-value for every test, got None in {list(p_values)!r}")
  p = np.asarray(p_values, np.float64)
  if p.ndim != 1:
    raise ValueError(f"holm needs a flat list of p-values, got shape {p.shape}")
  if p.size == 0:
    return []
  if not np.all((p >= 0) & (p <= 1)):
    raise ValueError(f"holm needs p-values in [0, 1], got {list(p_values)!r}")
  m = p.size
  order = np.argsort(p, kind="stable")
  adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
  out = np.empty(m, np.float64)
  out[order] = adjusted
  return [float(v) for v in out]
