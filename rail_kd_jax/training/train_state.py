"""The student's train state: student params, distillation head params, optimizer.

The frozen teacher is deliberately *not* part of this state: it is never in the
optimizer, never in a checkpoint of the student, and never receives gradients.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """`params = {"student": ..., "heads": ...}`; `step` counts optimizer updates."""

  step: jax.Array
  params: Any
  opt_state: Any
  # Steps skipped because the loss or gradient was not finite (see step.py).
  skipped: jax.Array

  @classmethod
  def create(cls, params: Any, tx: optax.GradientTransformation) -> "TrainState":
    return cls(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      skipped=jnp.zeros((), jnp.int32),
    )
