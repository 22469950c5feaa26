"""Hash-based dropout (models/dropout.py): rate, independence, rng plumbing, scaling."""

import jax
import jax.numpy as jnp
import numpy as np

from rail_kd_jax.models import dropout


def test_keep_fraction_and_independence():
  key = jax.random.PRNGKey(0)
  mask = np.asarray(dropout.keep_mask(key, (32, 12, 128, 128), 0.9))
  assert abs(mask.mean() - 0.9) < 1e-3  # 6.3M draws: std 1.2e-4
  m = mask.astype(np.float64) - mask.mean()
  for axis in range(4):  # neighbours along every axis are uncorrelated
    a, b = np.take(m, range(0, m.shape[axis] - 1), axis), np.take(m, range(1, m.shape[axis]), axis)
    assert abs(np.mean(a * b)) / m.var() < 5e-3, axis
  # Other keys (other layers, steps, devices) give unrelated masks; so do raw and typed keys alike.
  other = np.asarray(dropout.keep_mask(jax.random.fold_in(key, 1), mask.shape, 0.9))
  assert abs(np.corrcoef(mask.ravel(), other.ravel())[0, 1]) < 5e-3
  typed = np.asarray(dropout.keep_mask(jax.random.wrap_key_data(key), mask.shape, 0.9))
  np.testing.assert_array_equal(typed, mask)
  bits = np.asarray(dropout.hash_bits(key, (1 << 16,)))
  assert len(np.unique(bits)) > 0.99 * (1 << 16)
  for bit in (0, 7, 16, 31):
    assert abs(((bits >> bit) & 1).mean() - 0.5) < 0.01


def test_module_matches_flax_dropout_semantics():
  x = jnp.arange(1, 4097, dtype=jnp.float32).reshape(4, 1024)
  mod = dropout.Dropout(0.25)
  assert mod.apply({}, x, deterministic=True) is x
  assert dropout.Dropout(0.0).apply({}, x, deterministic=False) is x
  y = mod.apply({}, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(3)})
  y = np.asarray(y)
  kept = y != 0
  np.testing.assert_allclose(y[kept], np.asarray(x)[kept] / 0.75, rtol=1e-6)
  assert abs(kept.mean() - 0.75) < 0.03
  g = jax.grad(lambda v: mod.apply({}, v, deterministic=False, rngs={"dropout": jax.random.PRNGKey(3)}).sum())(x)
  np.testing.assert_allclose(np.asarray(g), kept / 0.75, rtol=1e-6)
  z = mod.apply({}, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(4)})
  assert (np.asarray(z) != 0).tolist() != kept.tolist()
