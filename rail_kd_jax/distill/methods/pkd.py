"""PKD (Sun et al. 2019): KD plus normalised first-token vectors of M-1 fixed layer pairs."""

import jax.numpy as jnp
import numpy as np

from rail_kd_jax.distill import diagnostics, projections
from rail_kd_jax.distill.methods import base
from rail_kd_jax.distill.methods.base import MethodInputs

PKD_MAPPINGS = ("skip", "last")
POOLING = "cls"
MAP_INIT = "random"


def pkd_teacher_layers(pkd_mapping: str, num_teacher_layers: int, num_student_layers: int):
  """Static teacher layers for student layers 1..M-1 (the top is left to KD).

  skip: floor(j*N/M) (2, 4, .., 10 for 12 -> 6); last: N-M+j (7, .., 11 for 12 -> 6).
  """
  n, m = num_teacher_layers, num_student_layers
  if pkd_mapping == "skip":
    return [j * n // m for j in range(1, m)]
  if pkd_mapping == "last":
    return [n - m + j for j in range(1, m)]
  raise ValueError(f"distill.pkd_mapping={pkd_mapping!r} is not valid; choose one of {PKD_MAPPINGS}.")


def pkd_init_heads(key, dcfg, student_dim, teacher_dim, num_student_layers, num_teacher_layers):
  """Per pair a student->teacher linear map when widths differ, else nothing."""
  del num_teacher_layers
  if student_dim == teacher_dim or num_student_layers < 2:
    return {}
  init = base.resolve_map_init(dcfg, MAP_INIT, student_dim, teacher_dim)
  return {
    "student_proj": projections.init_linear_stack(key, num_student_layers - 1, student_dim, teacher_dim, init=init)
  }


def pkd_loss(head_params, inputs: MethodInputs, dcfg):
  """(1 - a) CE + a KD + beta * L_PT, L_PT = mean over the M-1 pairs and the H features of
  (s_j/|s_j| - t_j/|t_j|)^2 on first-token vectors ('cls' unless distill.pooling says
  otherwise): the PKD authors' `F.mse_loss` of the normalised vectors (src/KD_loss.py), so
  `beta` reads on their grid {10, 100, 500, 1000}."""
  ce, kd = base.ce_kd(inputs, dcfg)
  pooling = base.pooling_of(dcfg, POOLING)
  s = base.states(inputs, "student", pooling)
  t = base.states(inputs, "teacher", pooling)
  m, n = s.shape[0] - 1, t.shape[0] - 1
  layers = pkd_teacher_layers(dcfg.pkd_mapping, n, m)
  if layers:
    s = s[1:m]
    if "student_proj" in head_params:
      s = projections.linear_stack(head_params["student_proj"], s)
    t = t[np.asarray(layers)]
    per_example = jnp.mean(base.distance(s, t, "sq_l2"), axis=0) / s.shape[-1]
    pt = base.masked_mean(per_example, inputs.example_mask)
    diag = diagnostics.collapse_stats([(s, t)], inputs.example_mask, inputs.axis_name)
  else:
    pt, diag = jnp.zeros((), jnp.float32), {}
  a = dcfg.kd_alpha
  total = (1.0 - a) * ce + a * kd + dcfg.pkd_beta * pt
  return total, {"ce": ce, "kd": kd, "int": pt, **diag, "loss": total}


def check(dcfg, num_student_layers, num_teacher_layers, student_dim, teacher_dim) -> list[str]:
  """A beta far under the authors' scale is a warning."""
  del num_student_layers, num_teacher_layers, student_dim, teacher_dim
  if 0 < dcfg.pkd_beta < 1:
    return [
      f"distill.pkd_beta={dcfg.pkd_beta:g} is tiny on the PKD authors' scale (a mean over pairs "
      f"and features; their grid 10-1000, 100 by default)."
    ]
  return []


def torch_heads(dcfg, hs, ht, num_student_layers, num_teacher_layers) -> dict:
  """As `pkd_init_heads`, in torch."""
  from rail_kd_jax.distill.methods import torch_terms

  del dcfg, num_teacher_layers
  if hs == ht or num_student_layers < 2:
    return {}
  proj = torch_terms.linear_stack(num_student_layers - 1, hs, ht)
  torch_terms.init_normal(proj)
  return {"student_proj": proj}


def torch_loss(dcfg, heads, x):
  """As `pkd_loss`, in torch (first-token vectors)."""
  from rail_kd_jax.distill.methods import torch_terms

  m, n = x.student_hidden.shape[0] - 1, x.teacher_hidden.shape[0] - 1
  layers = pkd_teacher_layers(dcfg.pkd_mapping, n, m)
  s, t = x.student_hidden[1:m, :, 0], x.teacher_hidden[layers, :, 0]
  if hasattr(heads, "student_proj"):
    s = torch_terms.project_stack(heads.student_proj, s)
  pt = torch_terms.masked_mean(torch_terms.distance(s, t, "sq_l2").mean(0) / s.shape[-1], x.example_mask)
  a = dcfg.kd_alpha
  return (1 - a) * torch_terms.ce(x) + a * torch_terms.kd(x, dcfg.temperature) + dcfg.pkd_beta * pt


PKD = base.Method(
  pkd_init_heads,
  pkd_loss,
  needs_teacher=True,
  name="pkd",
  pairs_layers=True,
  title="PKD",
  options=base.KD_OPTIONS + ("kd_alpha", "pkd_beta", "pkd_mapping", "pooling", "map_init"),
  pooling=POOLING,
  map_init=MAP_INIT,
  preset={"temperature": 10.0, "kd_alpha": 0.7, "pkd_beta": 500.0},
  preset_source="PKD code, src/argument_parser.py 'kd.cls': T=10, alpha=0.7, beta=500 (normalised CLS)",
  space=(
    base.T_KNOB,
    base.ALPHA_KNOB,
    base.Knob("pkd_beta", (10.0, 100.0, 500.0, 1000.0), "the PKD authors' beta grid"),
    base.Knob("pkd_mapping", ("skip", "last"), "PKD-Skip and PKD-Last"),
    base.POOL_KNOB,
  ),
  check=check,
  torch_heads=torch_heads,
  torch_loss=torch_loss,
)

ROWS = (PKD,)
