"""AdamW with warmup + linear decay, a weight-decay mask and optional clipping.

Gradient accumulation is done inside the train step (a scan over micro-batches,
see `step.py`), so the optimizer always sees one averaged gradient per step.
"""

from __future__ import annotations

from typing import Any

import jax
import optax

from rail_kd_jax.distill import methods


def _path_names(path) -> list[str]:
  names = []
  for entry in path:
    name = getattr(entry, "key", None)
    if name is None:
      name = getattr(entry, "name", None)
    if name is None:
      name = getattr(entry, "idx", "")
    names.append(str(name))
  return names


def decay_mask(params: Any) -> Any:
  """True where weight decay applies: not on biases, LayerNorm or embeddings' LN."""

  def keep(path, _):
    names = [n.lower() for n in _path_names(path)]
    if names and names[-1] == "bias":
      return False
    if any("layernorm" in n or "layer_norm" in n for n in names):
      return False
    return True

  return jax.tree_util.tree_map_with_path(keep, params)


def frozen_labels(params: Any) -> Any:
  """'frozen' for the parameters `methods.is_frozen` names (e.g. the `frozen_random` teacher
  projections of RAIL-KD: kept in the state so a checkpoint is self-contained, never
  updated), 'train' for the rest."""

  def label(path, _):
    return "frozen" if methods.is_frozen(path) else "train"

  return jax.tree_util.tree_map_with_path(label, params)


def make_schedule(learning_rate: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
  """Linear warmup from 0 to `learning_rate`, then linear decay to 0 at `total_steps`."""
  warmup_steps = max(0, min(int(warmup_steps), int(total_steps)))
  decay_steps = max(1, int(total_steps) - warmup_steps)
  warm = optax.linear_schedule(0.0, learning_rate, max(1, warmup_steps))
  decay = optax.linear_schedule(learning_rate, 0.0, decay_steps)
  if warmup_steps == 0:
    return decay
  return optax.join_schedules([warm, decay], [warmup_steps])


def make_optimizer(opt_cfg, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Builds the AdamW chain from `config.optim`.

  Fields: learning_rate, warmup_ratio (or warmup_steps >= 0 wins), weight_decay,
  b1, b2, eps, clip_norm (0 disables).
  """
  warmup = opt_cfg.warmup_steps if opt_cfg.warmup_steps >= 0 else int(opt_cfg.warmup_ratio * total_steps)
  schedule = make_schedule(opt_cfg.learning_rate, total_steps, warmup)
  parts = []
  if opt_cfg.clip_norm and opt_cfg.clip_norm > 0:
    parts.append(optax.clip_by_global_norm(opt_cfg.clip_norm))
  parts.append(
    optax.adamw(
      learning_rate=schedule,
      b1=opt_cfg.b1,
      b2=opt_cfg.b2,
      eps=opt_cfg.eps,
      weight_decay=opt_cfg.weight_decay,
      mask=decay_mask,
    )
  )
  train_tx = optax.chain(*parts)
  tx = optax.multi_transform({"train": train_tx, "frozen": optax.set_to_zero()}, frozen_labels)
  return tx, schedule
