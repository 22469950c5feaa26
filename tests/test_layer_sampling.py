"""Layer mappings: distinct, ascending, uniform over subsets, replayable, traceable."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from rail_kd_jax.distill import layer_sampling as ls
from rail_kd_jax.core import defaults


def _many(fn, n, m, count, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), count)
  return np.asarray(jax.jit(jax.vmap(lambda k: fn(k, n, m)))(keys))


@pytest.mark.parametrize("n,m", [(12, 6), (24, 6), (6, 3), (5, 5), (7, 1)])
def test_sample_layers_distinct_ascending_in_range(n, m):
  maps = _many(ls.sample_layers, n, m, 2000)
  assert maps.shape == (2000, m) and maps.dtype == np.int32
  assert maps.min() >= 1 and maps.max() <= n
  assert np.all(np.diff(maps, axis=1) > 0)  # strictly ascending => distinct


def test_sample_layers_uniform_over_subsets():
  n, m, count = 6, 3, 20000
  maps = _many(ls.sample_layers, n, m, count, seed=123)
  subsets = list(itertools.combinations(range(1, n + 1), m))
  index = {s: i for i, s in enumerate(subsets)}
  counts = np.zeros(len(subsets))
  for row in map(tuple, maps):
    counts[index[row]] += 1
  assert np.all(counts > 0)  # every M-subset appears
  assert scipy.stats.chisquare(counts).pvalue > 1e-3
  freq = ls.pairing_counts(maps, n).sum(0)[1:] / count
  np.testing.assert_allclose(freq, m / n, atol=0.02)


def test_larger_teacher_layer_frequency():
  n, m, count = 24, 6, 20000
  maps = _many(ls.sample_layers, n, m, count, seed=7)
  counts = ls.pairing_counts(maps, n).sum(0)
  assert counts[0] == 0
  np.testing.assert_allclose(counts[1:] / count, m / n, atol=0.02)
  assert scipy.stats.chisquare(counts[1:]).pvalue > 1e-3


def test_mapping_key_replayable_and_traceable():
  a = ls.sample_layers(ls.mapping_key(3, 17), 12, 6)
  b = ls.sample_layers(ls.mapping_key(3, 17), 12, 6)
  np.testing.assert_array_equal(a, b)
  dcfg = defaults.distill_config()

  @jax.jit
  def traced(counter):
    return ls.make_mapping(dcfg, ls.mapping_key(3, counter), 12, 6)

  for counter in range(5):
    eager = ls.make_mapping(dcfg, ls.mapping_key(3, counter), 12, 6)
    np.testing.assert_array_equal(traced(jnp.int32(counter)), eager)
  assert traced._cache_size() == 1  # new counters never recompile
  maps = {tuple(np.asarray(traced(jnp.int32(c)))) for c in range(20)}
  assert len(maps) > 10  # different counters give different mappings


@pytest.mark.parametrize("n,m", [(12, 6), (12, 5), (7, 3), (4, 4)])
def test_blockwise_stays_in_blocks(n, m):
  bounds = ls.block_bounds(n, m)
  sizes = [hi - lo for lo, hi in bounds]
  assert sum(sizes) == n and max(sizes) - min(sizes) <= 1
  assert sizes == sorted(sizes, reverse=True)  # larger blocks first
  maps = _many(ls.sample_blockwise, n, m, 2000)
  for j, (lo, hi) in enumerate(bounds):
    assert maps[:, j].min() >= lo and maps[:, j].max() < hi
    assert set(maps[:, j]) == set(range(lo, hi))  # every layer of the block is used
  assert np.all(np.diff(maps, axis=1) > 0)


def test_make_mapping_dispatch_and_fixed():
  dcfg = defaults.distill_config()
  key = ls.mapping_key(0, 0)
  np.testing.assert_array_equal(ls.make_mapping(dcfg, key, 12, 6), ls.sample_layers(key, 12, 6))
  dcfg.sampling = "blockwise"
  np.testing.assert_array_equal(ls.make_mapping(dcfg, key, 12, 6), ls.sample_blockwise(key, 12, 6))
  dcfg.sampling = "fixed"
  dcfg.fixed_layers = (2, 4, 6, 8, 10, 12)
  got = ls.make_mapping(dcfg, key, 12, 6)
  assert got.dtype == jnp.int32
  np.testing.assert_array_equal(got, [2, 4, 6, 8, 10, 12])
  np.testing.assert_array_equal(ls.fixed_layers("1, 3,5", 6, 3), [1, 3, 5])
  with pytest.raises(ValueError, match="fixed_layers"):
    ls.make_mapping(dcfg, key, 12, 5)
  dcfg.sampling = "bogus"
  with pytest.raises(ValueError, match="sampling"):
    ls.make_mapping(dcfg, key, 12, 6)


def test_pairing_counts():
  maps = np.array([[1, 3], [2, 3], [1, 4]])
  counts = ls.pairing_counts(maps, 4)
  np.testing.assert_array_equal(counts, [[0, 2, 1, 0, 0], [0, 0, 0, 2, 1]])
  assert ls.pairing_counts(np.array([1, 2]), 3).shape == (2, 4)
