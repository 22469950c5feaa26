"""Collapse diagnostics of an intermediate-layer term (docs/METHODS.md, "Collapse").

A loss that compares a student vector with a target can be minimised without
learning anything about the example: send every example, on both sides, to one
common direction. Two numbers show it, computed inside the step from the vectors
the loss already compares (no extra pass), over the global batch:

  dir_var_<side> = 1 - ||mean_i u_i||^2 for that side's unit vectors u_i: 1 for
      directions spread evenly, 0 when every example points the same way.
  own_other = mean_i d(s_i, t_i) / mean_{i != j} d(s_i, t_j), with d the squared
      L2 distance of unit vectors: how much closer an example's student vector is
      to its own target than to the other examples' targets (1 = no
      example-specific information, 0 = perfect).

  rank_<side> = (sum_k lambda_k)^2 / sum_k lambda_k^2, the participation ratio of the
      eigenvalues of that side's centred unit vectors over the global batch: 1 when
      the vectors vary along a single axis. It catches what the two above miss: bias-free
      maps on centred inputs can still zero the loss by splitting the batch into two
      antipodal clusters (dir_var ~1, own_other ~0, rank ~1; tests/test_collapse.py).

All are averaged over the compared pairs (layers). `own_other` uses sums only:
sum_{i != j} s_i.t_j = (sum_i s_i).(sum_j t_j) - sum_i s_i.t_i, so it costs O(b D),
not a b x b matrix; the rank uses the global batch's Gram matrix (B x B, the unit
vectors gathered over devices), and is left out for token-level pairs (ckd token).

`CollapseWatch` reads the logged values on the host and warns once per side when
`dir_var` stays under a threshold for several consecutive logs.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
from jax import lax

from rail_kd_jax.distill import compare

NAMES = ("dir_var_student", "dir_var_teacher", "own_other")
RANK_NAMES = ("rank_student", "rank_teacher")
ALL_NAMES = NAMES + RANK_NAMES  # every read-out a method may log (none is a loss term)
_RATIO_EPS = 1e-4  # own_other of a total collapse (0 / 0, float32 rounding ~1e-7) reads ~1


def _stack(x):
  x = jnp.asarray(x, jnp.float32)
  return x[None] if x.ndim == 2 else x


def _participation_ratio(u, mean, w, axis_name):
  """(tr G)^2 / ||G||_F^2 of the Gram matrix G of the centred real rows of `u [K, n, D]`."""
  c = (u - mean[:, None, :]) * w[None, :, None]
  if axis_name is not None:
    c = lax.all_gather(c, axis_name, axis=1, tiled=True)  # [K, B, D]
  gram = jnp.einsum("kid,kjd->kij", c, c)
  trace = jnp.einsum("kii->k", gram)
  return jnp.square(trace) / jnp.maximum(jnp.sum(jnp.square(gram), axis=(1, 2)), 1e-20)


def _pair_stats(s, t, w, axis_name, rank):
  """Sums over the global batch for one stack of pairs `[K, n, D]`."""
  su, tu = compare.l2_normalize(_stack(s)), compare.l2_normalize(_stack(t))
  total = lambda x: compare.global_sum(x, axis_name)
  n = total(jnp.sum(w))
  s_sum = total(jnp.einsum("knd,n->kd", su, w))
  t_sum = total(jnp.einsum("knd,n->kd", tu, w))
  own_dot = total(jnp.einsum("knd,knd,n->k", su, tu, w))
  safe_n = jnp.maximum(n, 1.0)
  dir_var_s = 1.0 - jnp.sum(jnp.square(s_sum / safe_n), axis=-1)
  dir_var_t = 1.0 - jnp.sum(jnp.square(t_sum / safe_n), axis=-1)
  own = 2.0 - 2.0 * own_dot / safe_n
  cross = jnp.sum(s_sum * t_sum, axis=-1) - own_dot
  other = 2.0 - 2.0 * cross / jnp.maximum(n * (n - 1.0), 1.0)
  ratio = (own + _RATIO_EPS) / (other + _RATIO_EPS)
  if not rank:
    return dir_var_s, dir_var_t, ratio
  return (
    dir_var_s,
    dir_var_t,
    ratio,
    _participation_ratio(su, s_sum / safe_n, w, axis_name),
    _participation_ratio(tu, t_sum / safe_n, w, axis_name),
  )


def collapse_stats(pairs: Sequence, weights, axis_name: str | None = None, rank: bool = True) -> dict:
  """{'dir_var_student', 'dir_var_teacher', 'own_other'} (+ 'rank_student', 'rank_teacher'
  when `rank`): float32 scalars, no gradient.

  Args:
    pairs: `(student, target)` couples, each `[K, n, D]` (or `[n, D]`), the vectors
      exactly as the loss compares them (before normalisation). Couples may differ
      in K and D.
    weights: `[n]` example mask (1 real, 0 padding), or None for all real.
    axis_name: the device axis to reduce over, or None (the local batch is global).
    rank: also the participation ratios (per-example pairs only: costs a B x B Gram).
  """
  pairs = [(lax.stop_gradient(s), lax.stop_gradient(t)) for s, t in pairs]
  n = _stack(pairs[0][0]).shape[1]
  w = jnp.ones((n,), jnp.float32) if weights is None else (jnp.asarray(weights) > 0).astype(jnp.float32)
  parts = [_pair_stats(s, t, w, axis_name, rank) for s, t in pairs]
  mean = lambda i: jnp.mean(jnp.concatenate([p[i] for p in parts]))
  names = NAMES + (RANK_NAMES if rank else ())
  return {name: mean(i).astype(jnp.float32) for i, name in enumerate(names)}


RANK_FLOOR = 1.5  # rank_<side> under this: the vectors vary along about one axis
RANK_MIN_BATCH = 8  # centred, B vectors span at most B - 1 axes: no rank check on smaller batches


# What to try when a side collapses, unless the method's row says better (`collapse_advice`).
ADVICE = "lower distill.int_weight or optim.learning_rate, or try distill.center=True (rail_*)"


class CollapseWatch:
  """Host side: one warning per side when `dir_var_<side>` < `threshold` (or `rank_<side>`
  < RANK_FLOOR, on global batches of at least RANK_MIN_BATCH) for `patience` consecutive
  logged steps. The teacher side is watched only when its map trains (`watch_teacher`, the
  row's `trainable_target`): elsewhere the target is fixed, and its dir_var is the teacher's,
  not a collapse. `patience <= 0` switches it off; `methods.collapse_watch` builds it for a run."""

  def __init__(
    self,
    method: str,
    projection: str,
    threshold: float,
    patience: int,
    batch_size: int = 32,
    watch_teacher: bool = False,
    advice: str = ADVICE,
  ):
    self.method, self.projection, self.advice = method, projection, advice
    self.threshold, self.patience = float(threshold), int(patience)
    self.sides = ("student", "teacher") if watch_teacher else ("student",)
    self.check_rank = int(batch_size) >= RANK_MIN_BATCH
    self._low = {"student": 0, "teacher": 0}
    self.warned: set[str] = set()

  def update(self, step: int, values: dict) -> list[str]:
    """Feeds one logged record; returns the warning lines to print (usually none)."""
    if self.patience <= 0:
      return []
    lines = []
    for side in self.sides:
      v = values.get(f"dir_var_{side}")
      if v is None:
        continue
      v, r = float(v), values.get(f"rank_{side}")
      low_rank = self.check_rank and r is not None and float(r) < RANK_FLOOR
      self._low[side] = self._low[side] + 1 if (v < self.threshold or low_rank) else 0
      if self._low[side] >= self.patience and side not in self.warned:
        self.warned.add(side)
        if v < self.threshold:
          what = (f"dir_var_{side}={v:.3f} has stayed under {self.threshold:g}", "sends every example the same way")
        else:
          what = (
            f"rank_{side}={float(r):.2f} has stayed under {RANK_FLOOR:g}",
            "varies along about one axis (e.g. two opposite clusters)",
          )
        lines.append(
          f"collapse: method {self.method} (projection={self.projection}): {what[0]} for {self._low[side]} "
          f"logs up to step {step}, so the {side} side {what[1]} and the intermediate term teaches little; "
          f"{self.advice}"
        )
    return lines
