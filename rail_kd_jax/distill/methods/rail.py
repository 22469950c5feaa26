"""RAIL-KD (Haidar et al. 2022): rail_l (layer-wise), rail_c (concatenated), rail_paper (as published).

Each step (or period) pairs the M student layers with M teacher layers drawn at random
(`layer_sampling.make_mapping`; rail_paper: its own rule, `paper_mapping`).

The projection options of rail_l/rail_c (docs/METHODS.md, "RAIL-KD"):
  student_to_teacher  the student vector mapped to the teacher's width and compared
                      with the raw teacher vector: a fixed target (the default);
  both                one trainable map per side to proj_dim (the paper's literal
                      form; collapses without center or infonce);
  frozen_random       as both, the teacher's map drawn once and never trained;
  none                raw vectors on both sides (equal widths).
center=True subtracts each side's stop-gradient global-batch mean first and drops
the biases; proj_index='teacher_layer' (rail_l) indexes the maps by the paired
teacher layer instead of by the student slot.
"""

import math

import jax
import jax.numpy as jnp

from rail_kd_jax.distill import compare, diagnostics, layer_sampling, projections
from rail_kd_jax.distill.methods import base
from rail_kd_jax.distill.methods.base import MethodInputs

RESAMPLE_EVERY = ("step", "epoch")
PROJECTIONS = ("student_to_teacher", "both", "frozen_random", "none")
PROJ_INDEXES = ("slot", "teacher_layer")
POOLING = "mean"
MAP_INIT = "identity_when_square"
PAPER_MAP_INIT = "xavier"
# The mapping's options (how it is drawn and how often), read by every rail_* row but rail_paper.
MAPPING_OPTIONS = ("sampling", "fixed_layers", "resample_every", "resample_every_steps")
PROJECTION_OPTIONS = ("projection", "proj_dim", "center", "distance", "infonce_tau")


def _teacher_proj_key(dcfg):
  return base.FROZEN_PREFIX + "teacher_proj" if dcfg.projection == "frozen_random" else "teacher_proj"


def _rail_heads(key, dcfg, din_s, din_t, count):
  """`count` maps per side (stacked); shapes by `dcfg.projection`."""
  if dcfg.projection == "none":
    return {}
  ks, kt = jax.random.split(key)
  bias = not dcfg.center
  if dcfg.projection == "student_to_teacher":
    # map_init '' starts an equal-width map at the identity (resolve_map_init), so the first
    # steps compare the student's own vectors with the teacher's (as projection='none')
    # and the map learns a correction.
    init = base.resolve_map_init(dcfg, MAP_INIT, din_s, din_t)
    return {"student_proj": projections.init_linear_stack(ks, count, din_s, din_t, bias=bias, init=init)}
  u = dcfg.proj_dim
  init = base.resolve_map_init(dcfg, MAP_INIT, din_s, u, both_sides=True)
  return {
    "student_proj": projections.init_linear_stack(ks, count, din_s, u, bias=bias, init=init),
    _teacher_proj_key(dcfg): projections.init_linear_stack(kt, count, din_t, u, bias=bias, init=init),
  }


def rail_l_init_heads(key, dcfg, student_dim, teacher_dim, num_student_layers, num_teacher_layers):
  """Per student slot (or per teacher layer, `proj_index`) the maps of `dcfg.projection`."""
  count = num_teacher_layers if dcfg.proj_index == "teacher_layer" else num_student_layers
  return _rail_heads(key, dcfg, student_dim, teacher_dim, count)


def rail_c_init_heads(key, dcfg, student_dim, teacher_dim, num_student_layers, num_teacher_layers):
  """One map per side of the concatenated M layers (a stack of 1)."""
  del num_teacher_layers
  return _rail_heads(key, dcfg, num_student_layers * student_dim, num_student_layers * teacher_dim, 1)


def _rail_pairs(inputs: MethodInputs, dcfg):
  s = base.states(inputs, "student", base.pooling_of(dcfg, POOLING))[1:]  # [M, B, Hs]
  t_all = base.states(inputs, "teacher", base.pooling_of(dcfg, POOLING))  # [N+1, B, Ht]
  mapping = jnp.asarray(inputs.mapping, jnp.int32)
  t = jnp.take(t_all, mapping, axis=0)  # [M, B, Ht], traced indices
  return s, t


def _rail_project(head_params, dcfg, s, t, index=None):
  """Projects `s, t [K, B, D]` with the maps of `dcfg.projection`; `index [K]` picks maps
  of a larger stack (traced indices are fine)."""
  if dcfg.projection == "none":
    return s, t
  pick = (lambda p: p) if index is None else (lambda p: projections.take(p, index))
  s = projections.linear_stack(pick(head_params["student_proj"]), s)
  if dcfg.projection == "student_to_teacher":
    return s, t
  tp = head_params[_teacher_proj_key(dcfg)]
  if dcfg.projection == "frozen_random":
    tp = jax.lax.stop_gradient(tp)
  return s, projections.linear_stack(pick(tp), t)


def _rail_compare(head_params, inputs: MethodInputs, dcfg, s, t, index=None):
  w, axis = inputs.example_mask, inputs.axis_name
  if dcfg.center:
    s, t = compare.center(s, w, axis), compare.center(t, w, axis)
  s, t = _rail_project(head_params, dcfg, s, t, index)
  d = compare.distance(s, t, dcfg.distance, w, axis, dcfg.infonce_tau)  # [K, B]
  inter = base.masked_mean(jnp.mean(d, axis=0), w)
  return inter, diagnostics.collapse_stats([(s, t)], w, axis)


def rail_l_loss(head_params, inputs: MethodInputs, dcfg):
  """Mean over pairs j of d(P_s^j s_j, P_t^j t_{mapping[j]}) (maps by `dcfg.projection`)."""
  ce, kd = base.ce_kd(inputs, dcfg)
  s, t = _rail_pairs(inputs, dcfg)
  index = None
  if dcfg.proj_index == "teacher_layer":
    index = jnp.asarray(inputs.mapping, jnp.int32) - 1
  inter, diag = _rail_compare(head_params, inputs, dcfg, s, t, index)
  return base.weighted_total(dcfg, ce, kd, inter, diag)


def concat_layers(x):
  """`[M, B, H] -> [1, B, M*H]`, layer 1's features first."""
  m, b, h = x.shape
  return jnp.transpose(x, (1, 0, 2)).reshape(1, b, m * h)


def rail_c_loss(head_params, inputs: MethodInputs, dcfg):
  """d(P_s [s_1;..;s_M], P_t [t_1;..;t_M]) on the concatenated vectors."""
  ce, kd = base.ce_kd(inputs, dcfg)
  s, t = _rail_pairs(inputs, dcfg)
  inter, diag = _rail_compare(head_params, inputs, dcfg, concat_layers(s), concat_layers(t))
  return base.weighted_total(dcfg, ce, kd, inter, diag)


def check(dcfg, num_student_layers, num_teacher_layers, student_dim, teacher_dim) -> list[str]:
  """The projection rules of rail_l/rail_c: refusals with an exact trivial minimiser, warnings."""
  del num_student_layers, num_teacher_layers
  proj, dist = dcfg.projection, dcfg.distance
  if proj == "none" and student_dim is not None and teacher_dim is not None and student_dim != teacher_dim:
    raise ValueError(
      f"distill.projection='none' compares raw vectors, which needs equal widths, "
      f"but the student is {student_dim} wide and the teacher {teacher_dim}; "
      f"use 'student_to_teacher'."
    )
  if proj == "both" and dist == "mse":
    raise ValueError(
      "distill.distance='mse' with distill.projection='both' has an exact zero whatever the "
      "inputs (both maps -> 0), so it trains nothing; use projection='student_to_teacher' "
      "(a fixed target) or distance='infonce'."
    )
  if proj == "both" and dist in ("sq_l2", "cosine") and not dcfg.center:
    return [
      f"distill.projection='both' with distance={dist!r} and center=False has a trivial "
      f"minimiser (both maps send every example to one direction, loss 0) and collapses in "
      f"practice; watch dir_var_teacher, or use projection='student_to_teacher', center=True "
      f"or distance='infonce'."
    ]
  return []


def trainable_target(dcfg) -> bool:
  """projection='both' trains the teacher side's map (frozen_random does not)."""
  return dcfg.projection == "both"


def collapse_advice(dcfg) -> str:
  if dcfg.projection == "both":
    return (
      "use distill.projection='student_to_teacher' (a fixed target), or keep 'both' with "
      "distill.center=True or distill.distance='infonce'"
    )
  return ""


# ----------------------------------------------------------------------------
# RAIL-KD as published (rail_paper): the public reimplementation aitsc/GLMKD,
# distill/distill_model.py class RAIL_KD, run as its readme's command
# (--rail_kd_concatenated --rail_kd_u=128 --rail_kd_epochs=1, soft = hard = inter = 0.3333,
# T = 10). Every choice below is that code's; docs/METHODS.md "rail_paper" cites the lines.


def paper_mapping(dcfg, key, num_teacher_layers: int, num_student_layers: int):
  """int32 [M-1]: `sorted(random.sample(range(1, N), M - 1))`, the teacher layers paired with
  student layers 1..M-1 (the embedding output and both top layers left out); traceable."""
  del dcfg
  if num_student_layers < 2:
    return jnp.zeros((0,), jnp.int32)
  return layer_sampling.sample_layers(key, num_teacher_layers - 1, num_student_layers - 1)


def count_paper_mappings(dcfg, num_teacher_layers: int, num_student_layers: int) -> int:
  """How many distinct mappings `paper_mapping` draws: C(N-1, M-1)."""
  del dcfg
  return math.comb(num_teacher_layers - 1, num_student_layers - 1)


def rail_paper_init_heads(key, dcfg, student_dim, teacher_dim, num_student_layers, num_teacher_layers):
  """One trainable map per side of the concatenated M-1 layers to proj_dim (u = 128), with a
  bias, started by distill.map_init (its own: Xavier normal, zero bias, as that code)."""
  del num_teacher_layers
  k = max(num_student_layers - 1, 1)
  ks, kt = jax.random.split(key)
  init = base.resolve_map_init(dcfg, PAPER_MAP_INIT, k * student_dim, dcfg.proj_dim, both_sides=True)
  return {
    "student_proj": projections.init_linear(ks, k * student_dim, dcfg.proj_dim, init=init),
    "teacher_proj": projections.init_linear(kt, k * teacher_dim, dcfg.proj_dim, init=init),
  }


def global_sum(values, example_mask, axis_name):
  """Sum of `values [B]` over the real examples of the whole step batch, as a per-device
  term: the step's pmean of every term divides by the device count, so each device returns
  its local sum times that count (exact on any number of devices)."""
  local = base.masked_mean(values, example_mask) * (
    jnp.asarray(values.shape[0], jnp.float32)
    if example_mask is None
    else jnp.sum((jnp.asarray(example_mask) > 0).astype(jnp.float32))
  )
  if axis_name is None:
    return local
  return local * jax.lax.psum(jnp.ones((), jnp.float32), axis_name)


def rail_paper_loss(head_params, inputs: MethodInputs, dcfg):
  """ce_weight CE + kd_weight KL(p_T || p_S) at temperature T *without* the T^2 factor (that
  code's soft term is the soft cross-entropy, whose gradient this is) + int_weight L_int;
  L_int = the sum over the batch's examples and the u features of the squared difference of
  the L2-normalised projections of [s_1; ..; s_{M-1}] and [t_{m_1}; ..; t_{m_{M-1}}]
  (mean-pooled; that code's mean counts padding, a bug: here the mean is over real tokens)."""
  ce, _ = base.ce_kd(inputs, dcfg, with_kd=False)
  kd = base.masked_mean(base.kd_per_example(inputs, dcfg.temperature), inputs.example_mask) / dcfg.temperature**2
  s_all = base.states(inputs, "student", base.pooling_of(dcfg, POOLING))
  t_all = base.states(inputs, "teacher", base.pooling_of(dcfg, POOLING))
  m = s_all.shape[0] - 1
  if m < 2:
    inter, diag = jnp.zeros((), jnp.float32), {}
  else:
    s = concat_layers(s_all[1:m])[0]  # [B, (M-1) Hs]
    t = concat_layers(jnp.take(t_all, jnp.asarray(inputs.mapping, jnp.int32), axis=0))[0]
    ps = projections.linear(head_params["student_proj"], s)
    pt = projections.linear(head_params["teacher_proj"], t)
    per_example = base.distance(ps, pt, "sq_l2")  # [B]: squared L2 of the normalised vectors
    inter = global_sum(per_example, inputs.example_mask, inputs.axis_name)
    diag = diagnostics.collapse_stats([(ps[None], pt[None])], inputs.example_mask, inputs.axis_name)
  return base.weighted_total(dcfg, ce, kd, inter, diag)


def paper_advice(dcfg) -> str:
  del dcfg
  return "the published form has this trivial minimiser; use rail_l or rail_c with projection='student_to_teacher'"


# ----------------------------------------------------------------------------
# The PyTorch peer's side.


def _torch_heads(dcfg, hs, ht, num_student_layers, num_teacher_layers, concatenated: bool) -> dict:
  """As `_rail_heads` (rail_l: per slot or teacher layer; rail_c: one map of the concatenation)."""
  import torch

  from rail_kd_jax.distill.methods import torch_terms

  if dcfg.projection == "none":
    return {}
  per_layer = num_teacher_layers if dcfg.proj_index == "teacher_layer" else num_student_layers
  count = 1 if concatenated else per_layer
  din_s, din_t = (num_student_layers * hs, num_student_layers * ht) if concatenated else (hs, ht)
  bias = not dcfg.center
  if dcfg.projection == "student_to_teacher":
    student = torch_terms.linear_stack(count, din_s, din_t, bias)
    torch_terms.init_normal(student)
    if din_s == din_t:  # as `_rail_heads`: an equal-width map starts at the identity
      for mod in student:
        torch.nn.init.eye_(mod.weight)
    return {"student_proj": student}
  student = torch_terms.linear_stack(count, din_s, dcfg.proj_dim, bias)
  teacher = torch_terms.linear_stack(count, din_t, dcfg.proj_dim, bias)
  if dcfg.projection == "frozen_random":
    teacher.requires_grad_(False)
  torch_terms.init_normal(student, teacher)
  return {"student_proj": student, "teacher_proj": teacher}


def torch_l_heads(dcfg, hs, ht, num_student_layers, num_teacher_layers) -> dict:
  return _torch_heads(dcfg, hs, ht, num_student_layers, num_teacher_layers, concatenated=False)


def torch_c_heads(dcfg, hs, ht, num_student_layers, num_teacher_layers) -> dict:
  return _torch_heads(dcfg, hs, ht, num_student_layers, num_teacher_layers, concatenated=True)


def _torch_rail(dcfg, heads, x, concatenated: bool):
  """As `rail_l_loss` / `rail_c_loss`, in torch."""
  from rail_kd_jax.distill.methods import torch_terms

  s = torch_terms.pool(x.student_hidden, x.token_mask, base.pooling_of(dcfg, POOLING))[1:]
  t = torch_terms.pool(x.teacher_hidden, x.token_mask, base.pooling_of(dcfg, POOLING))[x.mapping]
  if concatenated:  # [1, B, M*H]
    s = s.permute(1, 0, 2).reshape(1, s.shape[1], -1)
    t = t.permute(1, 0, 2).reshape(1, t.shape[1], -1)
    index = [0]
  else:
    index = (x.mapping - 1).tolist() if dcfg.proj_index == "teacher_layer" else None
  if dcfg.center:
    s, t = torch_terms.center(s, x.example_mask), torch_terms.center(t, x.example_mask)
  if dcfg.projection != "none":
    s = torch_terms.project_stack(heads.student_proj, s, index)
    if dcfg.projection != "student_to_teacher":
      t = torch_terms.project_stack(heads.teacher_proj, t, index)
  inter = torch_terms.masked_mean(torch_terms.distance(s, t, dcfg.distance).mean(0), x.example_mask)
  return torch_terms.weighted_total(dcfg, torch_terms.ce(x), torch_terms.kd(x, dcfg.temperature), inter)


def torch_l_loss(dcfg, heads, x):
  return _torch_rail(dcfg, heads, x, concatenated=False)


def torch_c_loss(dcfg, heads, x):
  return _torch_rail(dcfg, heads, x, concatenated=True)


def torch_mapping(generator, num_teacher_layers: int, num_student_layers: int):
  from rail_kd_jax.distill.methods import torch_terms

  return torch_terms.uniform_mapping(generator, num_teacher_layers, num_student_layers)


def torch_paper_heads(dcfg, hs, ht, num_student_layers, num_teacher_layers) -> dict:
  """As `rail_paper_init_heads` (both sides of the concatenated M-1 layers to u), in torch."""
  from torch import nn

  from rail_kd_jax.distill.methods import torch_terms

  del num_teacher_layers
  if num_student_layers < 2:
    return {}
  k = num_student_layers - 1
  student, teacher = nn.Linear(k * hs, dcfg.proj_dim), nn.Linear(k * ht, dcfg.proj_dim)
  torch_terms.init_normal(student, teacher)
  return {"student_proj": student, "teacher_proj": teacher}


def torch_paper_loss(dcfg, heads, x):
  """As `rail_paper_loss`: KD without T^2, the term summed over the batch."""
  import torch

  from rail_kd_jax.distill.methods import torch_terms

  ce, temp = torch_terms.ce(x), dcfg.temperature
  kd = torch_terms.kd(x, temp) / temp**2
  m = x.student_hidden.shape[0] - 1
  if m < 2:
    return torch_terms.weighted_total(dcfg, ce, kd, torch.zeros((), device=x.student_logits.device))
  s = torch_terms.pool(x.student_hidden, x.token_mask, base.pooling_of(dcfg, POOLING))[1:m]
  t = torch_terms.pool(x.teacher_hidden, x.token_mask, base.pooling_of(dcfg, POOLING))[x.mapping]
  s = heads.student_proj(s.permute(1, 0, 2).reshape(s.shape[1], -1))
  t = heads.teacher_proj(t.permute(1, 0, 2).reshape(t.shape[1], -1))
  inter = (torch_terms.distance(s, t, "sq_l2") * (x.example_mask > 0).to(s.dtype)).sum()
  return torch_terms.weighted_total(dcfg, ce, kd, inter)


def torch_paper_mapping(generator, num_teacher_layers: int, num_student_layers: int):
  """M-1 of 1..N-1 (the student's top layer and the teacher's left out)."""
  from rail_kd_jax.distill.methods import torch_terms

  return torch_terms.uniform_mapping(generator, num_teacher_layers - 1, num_student_layers - 1)


# ----------------------------------------------------------------------------
# The rows.

RESAMPLE_KNOB = base.Knob(
  "resample",
  (
    {"resample_every": "step", "resample_every_steps": 0},
    {"resample_every": "step", "resample_every_steps": 20},
    {"resample_every": "epoch", "resample_every_steps": 0},
  ),
  "a new mapping every step, every 20 steps, or every epoch (the published period)",
)
_SHARED = dict(
  needs_teacher=True,
  uses_mapping=True,
  pairs_layers=True,
  pooling=POOLING,
  preset_source="aitsc/GLMKD's RAIL-KD run: soft = hard = intermediate = 1/3, T=10",
  preset={"temperature": 10.0, "ce_weight": base.THIRD, "kd_weight": base.THIRD, "int_weight": base.THIRD},
  trainable_target=trainable_target,
  collapse_advice=collapse_advice,
  check=check,
  torch_mapping=torch_mapping,
)
_OPTIONS = base.KD_OPTIONS + base.WEIGHTS + ("pooling", "map_init") + MAPPING_OPTIONS + PROJECTION_OPTIONS
_SPACE = (base.T_KNOB, base.INT_W_KNOB, base.POOL_KNOB, base.START_KNOB, RESAMPLE_KNOB)

RAIL_L = base.Method(
  rail_l_init_heads,
  rail_l_loss,
  name="rail_l",
  title="RAIL-KD (rail_l)",
  options=_OPTIONS + ("proj_index",),
  map_init=MAP_INIT,
  space=_SPACE,
  torch_heads=torch_l_heads,
  torch_loss=torch_l_loss,
  **_SHARED,
)

RAIL_C = base.Method(
  rail_c_init_heads,
  rail_c_loss,
  name="rail_c",
  title="RAIL-KD (rail_c)",
  options=_OPTIONS,
  map_init=MAP_INIT,
  space=_SPACE,
  torch_heads=torch_c_heads,
  torch_loss=torch_c_loss,
  **_SHARED,
)

# The published recipe; its structure (M-1 pairs from 1..N-1, both sides mapped to u,
# concatenated, summed) is its loss; the preset holds the values that code was run with.
RAIL_PAPER = base.Method(
  rail_paper_init_heads,
  rail_paper_loss,
  needs_teacher=True,
  name="rail_paper",
  uses_mapping=True,
  pairs_layers=True,
  title="RAIL-KD (published)",
  options=base.KD_OPTIONS
  + base.WEIGHTS
  + ("pooling", "map_init", "proj_dim", "resample_every", "resample_every_steps"),
  pooling=POOLING,
  map_init=PAPER_MAP_INIT,
  preset={
    "temperature": 10.0,
    "ce_weight": base.THIRD,
    "kd_weight": base.THIRD,
    "int_weight": base.THIRD,
    "proj_dim": 128,
    "resample_every": "epoch",
    "resample_every_steps": 0,
  },
  preset_source="aitsc/GLMKD distill/readme.md's RAIL-KD command: --distill_soft_rate=0.3333 "
  "--distill_hard_rate=0.3333 --rail_kd_inter_rate=0.3333 --distill_temperature=10 --rail_kd_u=128 "
  "--rail_kd_concatenated --rail_kd_epochs=1",
  # The structure is the recipe; what it leaves to tuning: T, the weight, pooling, map start.
  space=(
    base.T_KNOB,
    base.INT_W_KNOB,
    base.POOL_KNOB,
    base.Knob(
      "map_init", ("identity", "random", "xavier"), "identity-like, N(0, 0.02^2), or that code's Xavier normal"
    ),
  ),
  mapping=paper_mapping,
  count_mappings=count_paper_mappings,
  trainable_target=lambda dcfg: True,
  collapse_advice=paper_advice,
  torch_heads=torch_paper_heads,
  torch_loss=torch_paper_loss,
  torch_mapping=torch_paper_mapping,
)

ROWS = (RAIL_L, RAIL_C, RAIL_PAPER)
