"""ALP-KD (Passban et al. 2021): each student layer attends over every teacher layer."""

import jax
import jax.numpy as jnp

from rail_kd_jax.distill import diagnostics, projections
from rail_kd_jax.distill.methods import base
from rail_kd_jax.distill.methods.base import MethodInputs

POOLING = "cls"
MAP_INIT = "random"


def alp_init_heads(key, dcfg, student_dim, teacher_dim, num_student_layers, num_teacher_layers):
  """Per student layer a student->teacher linear map when widths differ."""
  del num_teacher_layers
  if student_dim == teacher_dim:
    return {}
  init = base.resolve_map_init(dcfg, MAP_INIT, student_dim, teacher_dim)
  return {"student_proj": projections.init_linear_stack(key, num_student_layers, student_dim, teacher_dim, init=init)}


def alp_kd_loss(head_params, inputs: MethodInputs, dcfg):
  """Student layer j attends over all N teacher first-token vectors ('cls' unless
  distill.pooling says otherwise); MSE to the mix."""
  ce, kd = base.ce_kd(inputs, dcfg)
  pooling = base.pooling_of(dcfg, POOLING)
  s = base.states(inputs, "student", pooling)[1:]  # [M, B, Hs]
  t = base.states(inputs, "teacher", pooling)[1:]  # [N, B, Ht]
  if "student_proj" in head_params:
    s = projections.linear_stack(head_params["student_proj"], s)
  scores = jnp.einsum("mbh,nbh->bmn", s, t)  # unscaled dot product, as published
  weights = jax.nn.softmax(scores, axis=-1)
  context = jnp.einsum("bmn,nbh->mbh", weights, t)
  per_example = jnp.mean(base.distance(s, context, "mse"), axis=0)  # mean over M
  inter = base.masked_mean(per_example, inputs.example_mask)
  diag = diagnostics.collapse_stats([(s, context)], inputs.example_mask, inputs.axis_name)
  return base.weighted_total(dcfg, ce, kd, inter, diag)


def torch_heads(dcfg, hs, ht, num_student_layers, num_teacher_layers) -> dict:
  """As `alp_init_heads`, in torch."""
  from rail_kd_jax.distill.methods import torch_terms

  del dcfg, num_teacher_layers
  if hs == ht:
    return {}
  proj = torch_terms.linear_stack(num_student_layers, hs, ht)
  torch_terms.init_normal(proj)
  return {"student_proj": proj}


def torch_loss(dcfg, heads, x):
  """As `alp_kd_loss`, in torch (first-token vectors)."""
  import torch

  from rail_kd_jax.distill.methods import torch_terms

  s, t = x.student_hidden[1:, :, 0], x.teacher_hidden[1:, :, 0]
  if hasattr(heads, "student_proj"):
    s = torch_terms.project_stack(heads.student_proj, s)
  weights = torch.softmax(torch.einsum("mbh,nbh->bmn", s, t), -1)
  context = torch.einsum("bmn,nbh->mbh", weights, t)
  inter = torch_terms.masked_mean(torch_terms.distance(s, context, "mse").mean(0), x.example_mask)
  return torch_terms.weighted_total(dcfg, torch_terms.ce(x), torch_terms.kd(x, dcfg.temperature), inter)


ALP_KD = base.Method(
  alp_init_heads,
  alp_kd_loss,
  needs_teacher=True,
  name="alp_kd",
  pairs_layers=True,
  title="ALP-KD",
  options=base.KD_OPTIONS + base.WEIGHTS + ("pooling", "map_init"),
  pooling=POOLING,
  map_init=MAP_INIT,
  preset={"temperature": 20.0, "ce_weight": 0.1, "kd_weight": 0.7, "int_weight": 0.2},
  preset_source="no code from the authors; aitsc/GLMKD's ALP-KD run: soft 0.7, hard 0.1, T=20, lambda 0.2",
  space=(base.T_KNOB, base.INT_W_KNOB, base.POOL_KNOB),
  torch_heads=torch_heads,
  torch_loss=torch_loss,
)

ROWS = (ALP_KD,)
