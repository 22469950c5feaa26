"""Pooling and projection heads against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rail_kd_jax.distill import pooling
from rail_kd_jax.distill import projections


def _data(seed=0):
  rng = np.random.default_rng(seed)
  hidden = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
  mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
  return hidden, mask


def test_mean_pool_matches_numpy_and_guards_empty_rows():
  hidden, mask = _data()
  got = np.asarray(pooling.pool(jnp.asarray(hidden), jnp.asarray(mask), "mean"))
  assert got.shape == (3, 4, 6) and got.dtype == np.float32
  for b in range(3):
    n = mask[b].sum()
    np.testing.assert_allclose(got[:, b], hidden[:, b, :n].mean(1), rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(got[:, 3], 0.0)  # all padding: zeros, not NaN


def test_pool_single_layer_bool_mask_and_bfloat16():
  hidden, mask = _data()
  one = pooling.pool(jnp.asarray(hidden[1]), jnp.asarray(mask, bool), "mean")
  assert one.shape == (4, 6)
  np.testing.assert_allclose(one, pooling.pool(hidden, mask, "mean")[1], rtol=1e-6)
  low = pooling.pool(jnp.asarray(hidden, jnp.bfloat16), jnp.asarray(mask), "mean")
  assert low.dtype == jnp.float32


def test_cls_pool_is_first_token():
  hidden, mask = _data()
  got = pooling.pool(hidden, mask, "cls")
  np.testing.assert_array_equal(got, hidden[:, :, 0])
  assert pooling.pool(hidden[0], mask, "cls").shape == (4, 6)


def test_unknown_pooling_names_field():
  hidden, mask = _data()
  with pytest.raises(ValueError, match="pooling='max'"):
    pooling.pool(hidden, mask, "max")


def test_linear_layers():
  p = projections.init_linear(jax.random.PRNGKey(0), 64, 256)
  assert p["kernel"].shape == (64, 256) and p["bias"].shape == (256,)
  assert abs(float(jnp.std(p["kernel"])) - projections.INIT_STDDEV) < 0.002
  np.testing.assert_array_equal(p["bias"], 0.0)
  rng = np.random.default_rng(1)
  p = {"kernel": rng.normal(size=(4, 3)).astype(np.float32), "bias": rng.normal(size=(3,)).astype(np.float32)}
  x = rng.normal(size=(2, 5, 4)).astype(np.float32)
  np.testing.assert_allclose(projections.linear(p, x), x @ p["kernel"] + p["bias"], rtol=1e-5)
  stack = projections.init_linear_stack(jax.random.PRNGKey(1), 3, 4, 2)
  assert stack["kernel"].shape == (3, 4, 2)
  assert not np.allclose(stack["kernel"][0], stack["kernel"][1])
  xs = rng.normal(size=(3, 5, 4)).astype(np.float32)
  want = np.stack([xs[i] @ np.asarray(stack["kernel"][i]) for i in range(3)])
  np.testing.assert_allclose(projections.linear_stack(stack, xs), want, rtol=1e-5, atol=1e-6)
