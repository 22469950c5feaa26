"""CKD (Wu et al. 2020): student layer j against the concatenated teacher group j."""

import jax
import jax.numpy as jnp

from rail_kd_jax.distill import compare, diagnostics, layer_sampling, projections
from rail_kd_jax.distill.methods import base
from rail_kd_jax.distill.methods.base import MethodInputs

CKD_GRANULARITIES = ("token", "pooled")
POOLING = "mean"
MAP_INIT = "random"


def token_level(dcfg) -> bool:
  """ckd_granularity='token' compares every token's hidden states (no teacher cache holds them)."""
  return dcfg.ckd_granularity == "token"


def ckd_init_heads(key, dcfg, student_dim, teacher_dim, num_student_layers, num_teacher_layers):
  """Per group j (1..M) a linear map of student layer j up to the group's concatenated
  width (k_j * Ht), as the authors' `Linear(H, k*H)`; `map_init` picks the start
  ('identity': the identity stacked k_j times, `projections.identity_like`)."""
  bounds = layer_sampling.block_bounds(num_teacher_layers, num_student_layers)
  keys = jax.random.split(key, num_student_layers)
  init = base.resolve_map_init(dcfg, MAP_INIT, student_dim, teacher_dim)
  return {
    "student_proj": {
      f"group_{j + 1}": projections.init_linear(keys[j], student_dim, (hi - lo) * teacher_dim, init=init)
      for j, (lo, hi) in enumerate(bounds)
    }
  }


def _token_states(inputs: MethodInputs):
  """Student `[M+1, B, T, Hs]`, teacher `[N+1, B, T, Ht]` and the token mask `[B, T]`."""
  if inputs.student_hidden is None or inputs.teacher_hidden is None:
    raise ValueError("distill.ckd_granularity='token' needs student_hidden and teacher_hidden.")
  s = jnp.asarray(inputs.student_hidden, jnp.float32)
  t = base.sg(inputs.teacher_hidden)
  mask = inputs.token_mask
  mask = jnp.ones(s.shape[1:3], jnp.float32) if mask is None else (jnp.asarray(mask) > 0)
  return s, t, mask.astype(jnp.float32)


def ckd_loss(head_params, inputs: MethodInputs, dcfg):
  """Student layer j projected up to the concatenated teacher group j; both sides
  L2-normalised; squared L2 distance summed over the M groups, as the authors' code
  (CKD_pytorch utils/loss.py: MSELoss(reduction='none') summed over layers and features).

  token (the authors'): per real token, averaged over the batch's real tokens (their
  `normalization: tokens`); pooled: one vector per example (`dcfg.pooling`), averaged
  over the real examples.
  """
  ce, kd = base.ce_kd(inputs, dcfg)
  token = token_level(dcfg)
  if token:
    s, t, mask = _token_states(inputs)
  else:
    s = base.states(inputs, "student", base.pooling_of(dcfg, POOLING))  # [M+1, B, Hs]
    t = base.states(inputs, "teacher", base.pooling_of(dcfg, POOLING))  # [N+1, B, Ht]
  m, n = s.shape[0] - 1, t.shape[0] - 1
  per_group, pairs = [], []
  for j, (lo, hi) in enumerate(layer_sampling.block_bounds(n, m)):
    target = jnp.concatenate([t[i] for i in range(lo, hi)], axis=-1)  # [B(, T), k*Ht]
    pred = projections.linear(head_params["student_proj"][f"group_{j + 1}"], s[j + 1])
    per_group.append(base.distance(pred, target, "sq_l2"))  # [B] or [B, T]
    if token:
      flat = lambda x: x.reshape(1, -1, x.shape[-1])
      pairs.append((flat(pred), flat(target)))
    else:
      pairs.append((pred, target))
  d = jnp.sum(jnp.stack(per_group), axis=0)  # [B] or [B, T]
  if token:
    em = jnp.ones(mask.shape[:1]) if inputs.example_mask is None else inputs.example_mask
    weights = (mask * (jnp.asarray(em)[:, None] > 0)).reshape(-1)  # real tokens of real examples
    # The mean over the global batch's real tokens (exact on any number of devices).
    inter = compare.global_masked_mean(d.reshape(-1), weights, inputs.axis_name)
  else:
    weights = inputs.example_mask
    inter = base.masked_mean(d, weights)
  diag = diagnostics.collapse_stats(pairs, weights, inputs.axis_name, rank=not token)
  return base.weighted_total(dcfg, ce, kd, inter, diag)


def torch_heads(dcfg, hs, ht, num_student_layers, num_teacher_layers) -> dict:
  """As `ckd_init_heads` (one map per group), in torch."""
  from torch import nn

  from rail_kd_jax.distill.methods import torch_terms

  del dcfg
  bounds = layer_sampling.block_bounds(num_teacher_layers, num_student_layers)
  proj = nn.ModuleList([nn.Linear(hs, (hi - lo) * ht) for lo, hi in bounds])
  torch_terms.init_normal(proj)
  return {"student_proj": proj}


def torch_loss(dcfg, heads, x):
  """As `ckd_loss`, in torch."""
  import torch

  from rail_kd_jax.distill.methods import torch_terms

  token, mask, em = token_level(dcfg), x.token_mask, x.example_mask
  s, t = x.student_hidden, x.teacher_hidden
  if not token:
    pooling = base.pooling_of(dcfg, POOLING)
    s, t = torch_terms.pool(s, mask, pooling), torch_terms.pool(t, mask, pooling)
  m, n = x.student_hidden.shape[0] - 1, x.teacher_hidden.shape[0] - 1
  per_group = []
  for j, (lo, hi) in enumerate(layer_sampling.block_bounds(n, m)):
    target = torch.cat([t[i] for i in range(lo, hi)], -1)
    per_group.append(torch_terms.distance(heads.student_proj[j](s[j + 1]), target, "sq_l2"))  # [B] or [B, T]
  d = torch.stack(per_group).sum(0)
  if token:
    tm = ((mask > 0) & (em[:, None] > 0)).to(d.dtype)
    inter = (d * tm).sum() / torch.clamp(tm.sum(), min=1.0)
  else:
    inter = torch_terms.masked_mean(d, em)
  return torch_terms.weighted_total(dcfg, torch_terms.ce(x), torch_terms.kd(x, dcfg.temperature), inter)


CKD = base.Method(
  ckd_init_heads,
  ckd_loss,
  needs_teacher=True,
  name="ckd",
  # ckd_granularity='token' reads the hidden states; with 'pooled' they are passed but
  # unused (XLA drops them).
  needs_token_states=True,
  token_level=token_level,
  pairs_layers=True,
  title="CKD",
  options=base.KD_OPTIONS + base.WEIGHTS + ("pooling", "map_init", "ckd_granularity"),
  pooling=POOLING,
  map_init=MAP_INIT,
  preset={"temperature": 1.0, "ce_weight": 0.1, "kd_weight": 0.2, "int_weight": 0.7},
  preset_source="CKD_pytorch README: alpha (soft) 0.2, beta (intermediate) 0.7, hard 1 - alpha - beta; T=1",
  space=(base.T_KNOB, base.INT_W_KNOB, base.POOL_KNOB, base.START_KNOB),
  torch_heads=torch_heads,
  torch_loss=torch_loss,
)

ROWS = (CKD,)
