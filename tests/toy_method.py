"""A method defined outside the package, in one file: the acceptance test of "a method is one file".

toy_cos: CE + KD + the cosine distance between the first-token vectors of student layer j
and teacher layer floor(j N / M), j = 1..M, averaged over the pairs and the real examples.
No heads, so the widths must be equal (its own check). Importing this module registers it;
the CLI finds it with RAIL_KD_METHODS=toy_method (tests/ on the path).
"""

import jax.numpy as jnp
import numpy as np

from rail_kd_jax.distill import methods
from rail_kd_jax.distill.methods import base

NAME = "toy_cos"


def teacher_layers(num_teacher_layers: int, num_student_layers: int) -> list[int]:
  """floor(j N / M) for student layers j = 1..M (4 -> 2: [2, 4])."""
  return [j * num_teacher_layers // num_student_layers for j in range(1, num_student_layers + 1)]


def toy_loss(head_params, inputs: base.MethodInputs, dcfg):
  """ce_weight CE + kd_weight KD + int_weight mean_j (1 - cos(s_j, t_{jN/M})) on first tokens."""
  del head_params
  ce, kd = base.ce_kd(inputs, dcfg)
  s = base.states(inputs, "student", "cls")  # [M+1, B, H]
  t = base.states(inputs, "teacher", "cls")  # [N+1, B, H]
  m, n = s.shape[0] - 1, t.shape[0] - 1
  d = base.distance(s[1:], t[np.asarray(teacher_layers(n, m))], "cosine")  # [M, B]
  inter = base.masked_mean(jnp.mean(d, axis=0), inputs.example_mask)
  return base.weighted_total(dcfg, ce, kd, inter, {})


def check(dcfg, num_student_layers, num_teacher_layers, student_dim, teacher_dim) -> list[str]:
  """Raw vectors are compared: the widths must match."""
  del dcfg, num_student_layers, num_teacher_layers
  if student_dim is not None and teacher_dim is not None and student_dim != teacher_dim:
    raise ValueError(
      f"distill.method={NAME!r} compares raw vectors, but the widths differ ({student_dim}, {teacher_dim})."
    )
  return []


def torch_heads(dcfg, hs, ht, num_student_layers, num_teacher_layers) -> dict:
  del dcfg, hs, ht, num_student_layers, num_teacher_layers
  return {}


def torch_loss(dcfg, heads, x):
  """As `toy_loss`, in torch (the PyTorch peer's side)."""
  from rail_kd_jax.distill.methods import torch_terms

  del heads
  m, n = x.student_hidden.shape[0] - 1, x.teacher_hidden.shape[0] - 1
  s, t = x.student_hidden[1:, :, 0], x.teacher_hidden[teacher_layers(n, m), :, 0]
  inter = torch_terms.masked_mean(torch_terms.distance(s, t, "cosine").mean(0), x.example_mask)
  return torch_terms.weighted_total(dcfg, torch_terms.ce(x), torch_terms.kd(x, dcfg.temperature), inter)


ROW = base.Method(
  base.no_heads,
  toy_loss,
  needs_teacher=True,
  name=NAME,
  pairs_layers=True,
  title="toy cosine KD",
  options=base.KD_OPTIONS + base.WEIGHTS,
  preset={"temperature": 4.0, "ce_weight": 0.5, "kd_weight": 0.5, "int_weight": 1.0},
  preset_source="none: a test method",
  space=(base.T_KNOB, base.INT_W_KNOB),
  check=check,
  torch_heads=torch_heads,
  torch_loss=torch_loss,
)

methods.register(ROW)
