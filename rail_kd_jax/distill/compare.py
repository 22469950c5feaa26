"""Comparing a student vector with its teacher target: normalisation, centring, distances.

The functions here work on stacks of K compared pairs, `[K, b, D]`, where b is
this device's share of the batch. Everything that needs the *global* batch (the
centring mean, InfoNCE's negatives, the collapse diagnostics) reduces over the
named device axis `axis_name` when one is given (inside `pmap`/`shard_map`), so
that 8 devices give the numbers of 1 device; with `axis_name=None` the local
batch is the whole batch.

`weights` are the example mask `[b]` (1 real, 0 padding): padded examples never
enter a mean, never serve as a negative, and never count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

DISTANCES = ("sq_l2", "cosine", "mse", "infonce")
_EPS = 1e-12  # floor on the squared norm when normalising: zero vectors stay zero
_NEG = -1e9  # logit of an excluded (padded) InfoNCE negative


def l2_normalize(x):
  x = x.astype(jnp.float32)
  return x * lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), _EPS))


def global_sum(x, axis_name: str | None):
  """Sum over every device of the axis (identity without an axis)."""
  return x if axis_name is None else lax.psum(x, axis_name)


def global_masked_mean(values, weights, axis_name: str | None):
  """This device's share of the mean of `values [n]` over the real entries of the global
  batch: sum_local(w v) * num_devices / sum_global(w), so that the mean over devices (the
  step's pmean) is the global mean exactly, whatever each device's count of real entries."""
  values = values.astype(jnp.float32)
  w = _weights(weights, values.shape[0])
  count = global_sum(jnp.sum(w), axis_name)
  devices = 1.0 if axis_name is None else lax.psum(1.0, axis_name)
  return jnp.sum(jnp.where(w > 0, values, 0.0)) * devices / jnp.maximum(count, 1.0)


def _weights(weights, b: int):
  if weights is None:
    return jnp.ones((b,), jnp.float32)
  return (jnp.asarray(weights) > 0).astype(jnp.float32)


def global_mean(x, weights, axis_name: str | None):
  """Stop-gradient mean of `x [K, b, D]` over the real examples of the global batch -> `[K, 1, D]`."""
  x = lax.stop_gradient(x.astype(jnp.float32))
  w = _weights(weights, x.shape[1])
  total = global_sum(jnp.einsum("kbd,b->kd", x, w), axis_name)
  count = global_sum(jnp.sum(w), axis_name)
  return (total / jnp.maximum(count, 1.0))[:, None, :]


def center(x, weights, axis_name: str | None):
  """`x [K, b, D]` minus its stop-gradient global-batch mean (per pair k)."""
  return x.astype(jnp.float32) - global_mean(x, weights, axis_name)


def infonce(a, b, weights, axis_name: str | None, tau: float):
  """Per-example InfoNCE `[K, b]`: example i's student vector must pick its own target
  among the targets of every real example of the global batch.

  loss_i = -log softmax_j(cos(a_i, b_j) / tau)[own], with j over the global batch
  (every device's `b`, gathered; padded examples excluded as negatives). The
  gather keeps `b`'s gradient (a trainable teacher-side map still learns).
  """
  a, b = l2_normalize(a), l2_normalize(b)
  k, n, _ = a.shape
  w = _weights(weights, n)
  if axis_name is None:
    b_all, w_all, offset = b, w, 0
  else:
    b_all = lax.all_gather(b, axis_name, axis=1, tiled=True)  # [K, B, D]
    w_all = lax.all_gather(w, axis_name, tiled=True)  # [B]
    offset = lax.axis_index(axis_name) * n
  logits = jnp.einsum("kid,kjd->kij", a, b_all) / tau  # [K, b, B]
  own = jax.nn.one_hot(offset + jnp.arange(n), b_all.shape[1], dtype=jnp.bool_)  # [b, B]
  allowed = jnp.logical_or(own, (w_all > 0)[None, :])
  logits = jnp.where(allowed[None], logits, _NEG)
  positive = jnp.sum(jnp.where(own[None], logits, 0.0), axis=-1)
  return jax.nn.logsumexp(logits, axis=-1) - positive


def distance(a, b, kind: str, weights=None, axis_name: str | None = None, tau: float = 0.1):
  """Per-pair, per-example distance `[K, b, D] x [K, b, D] -> [K, b]` (any leading shape
  for the pointwise kinds).

  sq_l2: ||a/|a| - b/|b|||^2; cosine: 1 - cos(a, b); mse: mean over D of (a - b)^2
  (unnormalised); infonce: see `infonce` (needs the `[K, b, D]` layout).
  """
  if kind == "sq_l2":
    return jnp.sum(jnp.square(l2_normalize(a) - l2_normalize(b)), axis=-1)
  if kind == "cosine":
    return 1.0 - jnp.sum(l2_normalize(a) * l2_normalize(b), axis=-1)
  if kind == "mse":
    return jnp.mean(jnp.square(a.astype(jnp.float32) - b.astype(jnp.float32)), axis=-1)
  if kind == "infonce":
    return infonce(a, b, weights, axis_name, tau)
  raise ValueError(f"distill.distance={kind!r} is not valid; choose one of {DISTANCES}.")
