"""Dropout whose mask comes from a counter-based integer hash instead of threefry.

`flax.linen.Dropout` draws its mask with `jax.random.bernoulli`, i.e. 20 rounds of
threefry per 32 random bits. On XLA CPU that dominated the student's step: one mask
for the attention probabilities of MiniLM at batch 32, length 128 ([32, 12, 128, 128])
took ~150 ms against ~4 ms for this one (measured side by side, docs/notes/benchmark_runs.md), and
the train step spent ~20% of its time generating dropout masks.

The mask here is `hash(position, key) < keep_prob * 2^32`, where hash is two rounds of
the murmur3 32-bit finaliser (fmix32) over the element's position, mixed with the words
of the rng that `make_rng("dropout")` gives (so every module, layer, step and device
gets its own mask, exactly as with flax's Dropout: same rng plumbing, same keep
probability to 2^-32, same inverse scaling). It is not a cryptographic generator; its
masks are uncorrelated enough for dropout (tested: keep fraction, independence of
neighbouring elements, of layers and of steps).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_GOLDEN = 0x9E3779B9


def _fmix32(h: jax.Array) -> jax.Array:
  """murmur3's 32-bit finaliser: a bijection on uint32 with full avalanche."""
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def _key_words(rng: jax.Array) -> jax.Array:
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    rng = jax.random.key_data(rng)
  return jnp.asarray(rng).reshape(-1).astype(jnp.uint32)


def hash_bits(rng: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """uint32 [*shape] pseudo-random bits from `rng` (a PRNG key, typed or raw).

  The position of an element inside `shape[1:]` (at most 2^32 elements) and its index
  along axis 0 are hashed separately, so any batch size works.
  """
  words = _key_words(rng)
  s0 = words[0]
  s1 = words[1:].sum(dtype=jnp.uint32) if words.shape[0] > 1 else jnp.uint32(_GOLDEN)
  shape = tuple(int(d) for d in shape)
  if not shape:
    return _fmix32(_fmix32(s0) + s1)
  if int(np.prod(shape[1:], dtype=np.int64)) >= 2**32:
    raise ValueError(f"hash_bits: {shape[1:]} has 2^32 elements or more per row")
  lin = jnp.zeros(shape, jnp.uint32)
  for d in range(1, len(shape)):
    lin = lin * jnp.uint32(shape[d]) + lax.broadcasted_iota(jnp.uint32, shape, d)
  row = _fmix32(lax.broadcasted_iota(jnp.uint32, shape, 0) * jnp.uint32(_GOLDEN) ^ s1)
  return _fmix32(_fmix32(lin ^ s0) + row)


def keep_mask(rng: jax.Array, shape: tuple[int, ...], keep_prob: float) -> jax.Array:
  """bool [*shape], True with probability `keep_prob` (to 2^-32)."""
  threshold = min(int(round(float(keep_prob) * 2**32)), 2**32 - 1)
  return hash_bits(rng, shape) < jnp.uint32(threshold)


class Dropout(nn.Module):
  """Drop-in for `flax.linen.Dropout(rate)(x, deterministic=...)` with a hashed mask."""

  rate: float
  rng_collection: str = "dropout"

  @nn.compact
  def __call__(self, x, deterministic: bool = True):
    if self.rate == 0.0 or deterministic:
      return x
    if self.rate == 1.0:
      return jnp.zeros_like(x)
    keep_prob = 1.0 - self.rate
    mask = keep_mask(self.make_rng(self.rng_collection), x.shape, keep_prob)
    return lax.select(mask, x / jnp.asarray(keep_prob, x.dtype), jnp.zeros_like(x))
