"""Distillation methods: a table of small pure loss functions (docs/METHODS.md).

Every method is a `Method(init_heads, loss, needs_teacher, needs_token_states,
uses_mapping)`:

  init_heads(key, dcfg, student_dim, teacher_dim, num_student_layers, num_teacher_layers) -> head params
  loss(head_params, inputs: MethodInputs, dcfg) -> (scalar, {name: scalar})

The metrics dict holds every term by name ('ce', 'kd', 'int' where the method
has it), the collapse diagnostics of the intermediate term (`diagnostics.NAMES`)
and the total as 'loss', all float32 scalars. Per-example terms are
averaged over real examples (`example_mask`), so padded examples of a last
partial batch never count. Teacher inputs are wrapped in `stop_gradient`.

Layer indexing: `*_pooled`, `*_cls` and `*_hidden` have the embedding output at
index 0 and layer j at index j; student layers are 1..M, teacher layers 1..N (in shapes
and formulas M = num_student_layers and N = num_teacher_layers, the names in code).
"""

import math
from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from rail_kd_jax import checks
from rail_kd_jax.distill import compare
from rail_kd_jax.distill import diagnostics
from rail_kd_jax.distill import layer_sampling
from rail_kd_jax.distill import pooling as pooling_lib
from rail_kd_jax.distill import projections
from rail_kd_jax.errors import ConfigError
from rail_kd_jax import defaults

Array = Any

RESAMPLE_EVERY = ("step", "epoch")
DISTANCES = compare.DISTANCES
PROJECTIONS = ("student_to_teacher", "both", "frozen_random", "none")
PROJ_INDEXES = ("slot", "teacher_layer")
PKD_MAPPINGS = ("skip", "last")
CKD_GRANULARITIES = ("token", "pooled")
PRESETS = ("uniform", "paper")
FROZEN_PREFIX = "frozen_"


@flax.struct.dataclass
class MethodInputs:
  """Everything a method may read. Unused fields may be None.

  Attributes:
    student_logits: `[B, C]` (regression: `[B, 1]` or `[B]`).
    labels: int `[B]` (regression: float `[B]`).
    example_mask: `[B]`, 1 for real examples; None means all real.
    label_mask: `[B]`, 1 where `labels` hold a label, 0 for unlabelled text
      (`data.unlabeled_file`), which counts in every teacher-driven term and no
      cross-entropy; None means all labelled.
    student_pooled: `[M+1, B, Hs]`, `pooling.pool(student_hidden, token_mask, dcfg.pooling)`.
    student_cls: `[M+1, B, Hs]`, `pooling.pool(student_hidden, token_mask, 'cls')`.
    teacher_logits: `[B, C]` or None.
    teacher_pooled: `[N+1, B, Ht]` (as student_pooled) or None.
    teacher_cls: `[N+1, B, Ht]` or None.
    student_hidden: `[M+1, B, T, Hs]` or None.
    teacher_hidden: `[N+1, B, T, Ht]` or None.
    token_mask: `[B, T]` attention mask or None.
    mapping: int32 `[M]` from `layer_sampling.make_mapping` (rail_*), may be traced.
    is_regression: static; True for a one-output regression task (STS-B).
    axis_name: static; the device axis the batch is split over (the step passes
      `step.AXIS`), or None when this call sees the whole batch. Centring,
      InfoNCE and the collapse diagnostics reduce over it.
  If a pooled/cls field is None but the hidden states and token_mask are
  given, the method pools them itself.
  """

  student_logits: Array = None
  labels: Array = None
  example_mask: Array = None
  label_mask: Array = None
  student_pooled: Array = None
  student_cls: Array = None
  teacher_logits: Array = None
  teacher_pooled: Array = None
  teacher_cls: Array = None
  student_hidden: Array = None
  teacher_hidden: Array = None
  token_mask: Array = None
  mapping: Array = None
  is_regression: bool = flax.struct.field(pytree_node=False, default=False)
  axis_name: Any = flax.struct.field(pytree_node=False, default=None)


class Knob(NamedTuple):
  """One choice a method leaves open, with the candidate values a comparison may try.

  A value is either a scalar (the distill field `name` takes it) or a dict {field: value}
  (a choice that sets several fields at once, e.g. a resampling period)."""

  name: str
  values: tuple
  why: str = ""  # where the candidates come from


class Method(NamedTuple):
  """One row of METHODS: the functions and the facts the trainer, the cache, the study and
  the reports read."""

  init_heads: Callable[..., Any]
  loss: Callable[..., Any]
  needs_teacher: bool  # the step runs (or reads the cache of) the teacher
  needs_token_states: bool = False  # the loss reads every token's hidden states, not only pooled ones
  uses_mapping: bool = False  # a random student->teacher layer mapping per step/epoch (RAIL-KD)
  pairs_layers: bool = False  # pairs student layers with teacher layers: needs as many teacher layers
  title: str = ""  # the name in result tables and plots
  pooling: str = ""  # its own pooling when distill.pooling is '' ('' = pools nothing)
  map_init: str = ""  # its own map start when distill.map_init is '' (see map_init_of)
  # The published values (distill.preset='paper') and where each number comes from.
  preset: dict = {}
  preset_source: str = ""
  # The knobs it leaves open, with candidates: the design space a study draws its grid from.
  space: tuple = ()
  # mapping(dcfg, key, num_teacher_layers, num_student_layers) -> int32 [K]; None = make_mapping.
  mapping: Callable[..., Any] | None = None


# ----------------------------------------------------------------------------
# Shared terms.


def _sg(x):
  return None if x is None else jax.lax.stop_gradient(jnp.asarray(x, jnp.float32))


def masked_mean(values, example_mask):
  """Mean of `values [B]` over examples with `example_mask > 0` (0 if none)."""
  values = values.astype(jnp.float32)
  if example_mask is None:
    return jnp.mean(values)
  keep = jnp.asarray(example_mask) > 0
  total = jnp.sum(jnp.where(keep, values, 0.0))
  return total / jnp.maximum(jnp.sum(keep.astype(jnp.float32)), 1.0)


def labeled_mean(values, inputs: "MethodInputs"):
  """Mean of `values [B]` over the real, labelled examples of the whole step batch.

  Without `label_mask` it is `masked_mean` over `example_mask`. With it, the number of
  labelled examples varies between devices, so the sum is normalised by their count over
  the device axis (times the axis size, which the step's pmean of every term divides back
  out): every labelled example weighs the same whichever device holds it. 0 when the batch
  holds no labelled example.
  """
  if inputs.label_mask is None:
    return masked_mean(values, inputs.example_mask)
  weight = jnp.asarray(inputs.label_mask, jnp.float32)
  if inputs.example_mask is not None:
    weight = weight * jnp.asarray(inputs.example_mask, jnp.float32)
  keep = weight > 0
  total = jnp.sum(jnp.where(keep, values.astype(jnp.float32), 0.0))
  count = jnp.sum(keep.astype(jnp.float32))
  if inputs.axis_name is not None:
    count = jax.lax.psum(count, inputs.axis_name) / jax.lax.psum(1.0, inputs.axis_name)
  return total / jnp.where(count > 0, count, 1.0)


def _regression_output(z):
  z = jnp.asarray(z, jnp.float32)
  return z.reshape(z.shape[0], -1)[:, 0]


def ce_per_example(inputs: MethodInputs):
  """Cross-entropy with the labels `[B]`; squared error for regression."""
  if inputs.is_regression:
    y = jnp.asarray(inputs.labels, jnp.float32).reshape(-1)
    return jnp.square(_regression_output(inputs.student_logits) - y)
  z = jnp.asarray(inputs.student_logits, jnp.float32)
  onehot = jax.nn.one_hot(inputs.labels, z.shape[-1], dtype=jnp.float32)
  return -jnp.sum(onehot * jax.nn.log_softmax(z, axis=-1), axis=-1)


def kd_per_example(inputs: MethodInputs, temperature: float):
  """T^2 KL(softmax(z_T/T) || softmax(z_S/T)) `[B]`; regression: (z_S - z_T)^2."""
  zt = _sg(inputs.teacher_logits)
  if inputs.is_regression:
    return jnp.square(_regression_output(inputs.student_logits) - _regression_output(zt))
  zs = jnp.asarray(inputs.student_logits, jnp.float32)
  log_pt = jax.nn.log_softmax(zt / temperature, axis=-1)
  log_ps = jax.nn.log_softmax(zs / temperature, axis=-1)
  kl = jnp.sum(jnp.exp(log_pt) * (log_pt - log_ps), axis=-1)
  return temperature**2 * kl


l2_normalize = compare.l2_normalize
distance = compare.distance


def _states(inputs: MethodInputs, side: str, kind: str):
  """`[L+1, B, H]` float32 vectors of one side ('student'/'teacher'), pooled by `kind`."""
  field = "cls" if kind == "cls" else "pooled"
  value = getattr(inputs, f"{side}_{field}")
  if value is None:
    hidden = getattr(inputs, f"{side}_hidden")
    if hidden is None:
      raise ValueError(f"MethodInputs.{side}_{field} is needed by this method but is None.")
    mask = inputs.token_mask
    if mask is None:
      mask = jnp.ones(hidden.shape[1:3], jnp.float32)
    value = pooling_lib.pool(hidden, mask, kind)
  value = jnp.asarray(value, jnp.float32)
  return jax.lax.stop_gradient(value) if side == "teacher" else value


def _ce_kd_metrics(inputs, dcfg, with_kd=True):
  ce = labeled_mean(ce_per_example(inputs), inputs)
  if not with_kd:
    return ce, None
  kd = masked_mean(kd_per_example(inputs, dcfg.temperature), inputs.example_mask)
  return ce, kd


def _weighted_total(dcfg, ce, kd, inter, diag):
  total = dcfg.ce_weight * ce + dcfg.kd_weight * kd + dcfg.int_weight * inter
  return total, {"ce": ce, "kd": kd, "int": inter, **diag, "loss": total}


def _no_heads(key, dcfg, student_dim, teacher_dim, num_student_layers, num_teacher_layers):
  del key, dcfg, student_dim, teacher_dim, num_student_layers, num_teacher_layers
  return {}


# ----------------------------------------------------------------------------
# none, kd.


def none_loss(head_params, inputs: MethodInputs, dcfg):
  """CE only (plain fine-tuning)."""
  del head_params
  ce, _ = _ce_kd_metrics(inputs, dcfg, with_kd=False)
  return ce, {"ce": ce, "loss": ce}


def kd_loss(head_params, inputs: MethodInputs, dcfg):
  """Hinton KD: (1 - a) CE + a T^2 KL, a = dcfg.kd_alpha."""
  del head_params
  ce, kd = _ce_kd_metrics(inputs, dcfg)
  a = dcfg.kd_alpha
  total = (1.0 - a) * ce + a * kd
  return total, {"ce": ce, "kd": kd, "loss": total}


# ----------------------------------------------------------------------------
# PKD (Sun et al. 2019).


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
  init = map_init_of(dcfg, student_dim, teacher_dim)
  return {
    "student_proj": projections.init_linear_stack(key, num_student_layers - 1, student_dim, teacher_dim, init=init)
  }


def pkd_loss(head_params, inputs: MethodInputs, dcfg):
  """(1 - a) CE + a KD + beta * L_PT, L_PT = mean over the M-1 pairs and the H features of
  (s_j/|s_j| - t_j/|t_j|)^2 on first-token vectors (`pooling_of`: 'cls' unless
  distill.pooling says otherwise): the PKD authors' `F.mse_loss` of the normalised vectors
  (src/KD_loss.py), so `beta` reads on their grid {10, 100, 500, 1000}."""
  ce, kd = _ce_kd_metrics(inputs, dcfg)
  s = _states(inputs, "student", pooling_of(dcfg))
  t = _states(inputs, "teacher", pooling_of(dcfg))
  m, n = s.shape[0] - 1, t.shape[0] - 1
  layers = pkd_teacher_layers(dcfg.pkd_mapping, n, m)
  if layers:
    s = s[1:m]
    if "student_proj" in head_params:
      s = projections.linear_stack(head_params["student_proj"], s)
    t = t[np.asarray(layers)]
    per_example = jnp.mean(distance(s, t, "sq_l2"), axis=0) / s.shape[-1]
    pt = masked_mean(per_example, inputs.example_mask)
    diag = diagnostics.collapse_stats([(s, t)], inputs.example_mask, inputs.axis_name)
  else:
    pt, diag = jnp.zeros((), jnp.float32), {}
  a = dcfg.kd_alpha
  total = (1.0 - a) * ce + a * kd + dcfg.pkd_beta * pt
  return total, {"ce": ce, "kd": kd, "int": pt, **diag, "loss": total}


# ----------------------------------------------------------------------------
# ALP-KD (Passban et al. 2021).


def alp_init_heads(key, dcfg, student_dim, teacher_dim, num_student_layers, num_teacher_layers):
  """Per student layer a student->teacher linear map when widths differ."""
  del num_teacher_layers
  if student_dim == teacher_dim:
    return {}
  init = map_init_of(dcfg, student_dim, teacher_dim)
  return {"student_proj": projections.init_linear_stack(key, num_student_layers, student_dim, teacher_dim, init=init)}


def alp_kd_loss(head_params, inputs: MethodInputs, dcfg):
  """Student layer j attends over all N teacher first-token vectors (`pooling_of`: 'cls'
  unless distill.pooling says otherwise); MSE to the mix."""
  ce, kd = _ce_kd_metrics(inputs, dcfg)
  s = _states(inputs, "student", pooling_of(dcfg))[1:]  # [M, B, Hs]
  t = _states(inputs, "teacher", pooling_of(dcfg))[1:]  # [N, B, Ht]
  if "student_proj" in head_params:
    s = projections.linear_stack(head_params["student_proj"], s)
  scores = jnp.einsum("mbh,nbh->bmn", s, t)  # unscaled dot product, as published
  weights = jax.nn.softmax(scores, axis=-1)
  context = jnp.einsum("bmn,nbh->mbh", weights, t)
  per_example = jnp.mean(distance(s, context, "mse"), axis=0)  # mean over M
  inter = masked_mean(per_example, inputs.example_mask)
  diag = diagnostics.collapse_stats([(s, context)], inputs.example_mask, inputs.axis_name)
  return _weighted_total(dcfg, ce, kd, inter, diag)


# ----------------------------------------------------------------------------
# CKD (Wu et al. 2020).


def ckd_init_heads(key, dcfg, student_dim, teacher_dim, num_student_layers, num_teacher_layers):
  """Per group j (1..M) a linear map of student layer j up to the group's concatenated
  width (k_j * Ht), as the authors' `Linear(H, k*H)`; `map_init_of` picks the start
  ('identity': the identity stacked k_j times, `projections.identity_like`)."""
  bounds = layer_sampling.block_bounds(num_teacher_layers, num_student_layers)
  keys = jax.random.split(key, num_student_layers)
  init = map_init_of(dcfg, student_dim, teacher_dim)
  return {
    "student_proj": {
      f"group_{j + 1}": projections.init_linear(keys[j], student_dim, (hi - lo) * teacher_dim, init=init)
      for j, (lo, hi) in enumerate(bounds)
    }
  }


def ckd_loss(head_params, inputs: MethodInputs, dcfg):
  """Student layer j projected up to the concatenated teacher group j; both sides
  L2-normalised; squared L2 distance summed over the M groups, as the authors' code
  (CKD_pytorch utils/loss.py: MSELoss(reduction='none') summed over layers and features).

  token (the authors'): per real token, averaged over the batch's real tokens (their
  `normalization: tokens`); pooled: one vector per example (`dcfg.pooling`), averaged
  over the real examples.
  """
  ce, kd = _ce_kd_metrics(inputs, dcfg)
  token = dcfg.ckd_granularity == "token"
  if token:
    if inputs.student_hidden is None or inputs.teacher_hidden is None:
      raise ValueError("distill.ckd_granularity='token' needs student_hidden and teacher_hidden.")
    s = jnp.asarray(inputs.student_hidden, jnp.float32)  # [M+1, B, T, Hs]
    t = _sg(inputs.teacher_hidden)  # [N+1, B, T, Ht]
    mask = inputs.token_mask
    mask = jnp.ones(s.shape[1:3], jnp.float32) if mask is None else (jnp.asarray(mask) > 0)
    mask = mask.astype(jnp.float32)  # [B, T]
  else:
    s = _states(inputs, "student", pooling_of(dcfg))  # [M+1, B, Hs]
    t = _states(inputs, "teacher", pooling_of(dcfg))  # [N+1, B, Ht]
  m, n = s.shape[0] - 1, t.shape[0] - 1
  per_group, pairs = [], []
  for j, (lo, hi) in enumerate(layer_sampling.block_bounds(n, m)):
    target = jnp.concatenate([t[i] for i in range(lo, hi)], axis=-1)  # [B(, T), k*Ht]
    pred = projections.linear(head_params["student_proj"][f"group_{j + 1}"], s[j + 1])
    per_group.append(distance(pred, target, "sq_l2"))  # [B] or [B, T]
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
    inter = masked_mean(d, weights)
  diag = diagnostics.collapse_stats(pairs, weights, inputs.axis_name, rank=not token)
  return _weighted_total(dcfg, ce, kd, inter, diag)


# ----------------------------------------------------------------------------
# RAIL-KD (Haidar et al. 2022).
#
# The projection options (docs/METHODS.md, "RAIL-KD"):
#   student_to_teacher  the student vector mapped to the teacher's width and compared
#                       with the raw teacher vector: a fixed target (the default);
#   both                one trainable map per side to proj_dim (the paper's literal
#                       form; collapses without center or infonce);
#   frozen_random       as both, the teacher's map drawn once and never trained;
#   none                raw vectors on both sides (equal widths).
# center=True subtracts each side's stop-gradient global-batch mean first and drops
# the biases; proj_index='teacher_layer' (rail_l) indexes the maps by the paired
# teacher layer instead of by the student slot.


def _teacher_proj_key(dcfg):
  return FROZEN_PREFIX + "teacher_proj" if dcfg.projection == "frozen_random" else "teacher_proj"


def _rail_heads(key, dcfg, din_s, din_t, count):
  """`count` maps per side (stacked); shapes by `dcfg.projection`."""
  if dcfg.projection == "none":
    return {}
  ks, kt = jax.random.split(key)
  bias = not dcfg.center
  if dcfg.projection == "student_to_teacher":
    # map_init '' starts an equal-width map at the identity (map_init_of), so the first
    # steps compare the student's own vectors with the teacher's (as projection='none')
    # and the map learns a correction.
    init = map_init_of(dcfg, din_s, din_t)
    return {"student_proj": projections.init_linear_stack(ks, count, din_s, din_t, bias=bias, init=init)}
  u = dcfg.proj_dim
  init = map_init_of(dcfg, din_s, u, both_sides=True)
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
  s = _states(inputs, "student", pooling_of(dcfg))[1:]  # [M, B, Hs]
  t_all = _states(inputs, "teacher", pooling_of(dcfg))  # [N+1, B, Ht]
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
  inter = masked_mean(jnp.mean(d, axis=0), w)
  return inter, diagnostics.collapse_stats([(s, t)], w, axis)


def rail_l_loss(head_params, inputs: MethodInputs, dcfg):
  """Mean over pairs j of d(P_s^j s_j, P_t^j t_{mapping[j]}) (maps by `dcfg.projection`)."""
  ce, kd = _ce_kd_metrics(inputs, dcfg)
  s, t = _rail_pairs(inputs, dcfg)
  index = None
  if dcfg.proj_index == "teacher_layer":
    index = jnp.asarray(inputs.mapping, jnp.int32) - 1
  inter, diag = _rail_compare(head_params, inputs, dcfg, s, t, index)
  return _weighted_total(dcfg, ce, kd, inter, diag)


def _concat_layers(x):
  """`[M, B, H] -> [1, B, M*H]`, layer 1's features first."""
  m, b, h = x.shape
  return jnp.transpose(x, (1, 0, 2)).reshape(1, b, m * h)


def rail_c_loss(head_params, inputs: MethodInputs, dcfg):
  """d(P_s [s_1;..;s_M], P_t [t_1;..;t_M]) on the concatenated vectors."""
  ce, kd = _ce_kd_metrics(inputs, dcfg)
  s, t = _rail_pairs(inputs, dcfg)
  inter, diag = _rail_compare(head_params, inputs, dcfg, _concat_layers(s), _concat_layers(t))
  return _weighted_total(dcfg, ce, kd, inter, diag)


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


def rail_paper_init_heads(key, dcfg, student_dim, teacher_dim, num_student_layers, num_teacher_layers):
  """One trainable map per side of the concatenated M-1 layers to proj_dim (u = 128), with a
  bias, started by `map_init_of` (its own: Xavier normal, zero bias, as that code)."""
  del num_teacher_layers
  k = max(num_student_layers - 1, 1)
  ks, kt = jax.random.split(key)
  init = map_init_of(dcfg, k * student_dim, dcfg.proj_dim, both_sides=True)
  return {
    "student_proj": projections.init_linear(ks, k * student_dim, dcfg.proj_dim, init=init),
    "teacher_proj": projections.init_linear(kt, k * teacher_dim, dcfg.proj_dim, init=init),
  }


def global_sum(values, example_mask, axis_name):
  """Sum of `values [B]` over the real examples of the whole step batch, as a per-device
  term: the step's pmean of every term divides by the device count, so each device returns
  its local sum times that count (exact on any number of devices)."""
  local = masked_mean(values, example_mask) * (
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
  ce, _ = _ce_kd_metrics(inputs, dcfg, with_kd=False)
  kd = masked_mean(kd_per_example(inputs, dcfg.temperature), inputs.example_mask) / dcfg.temperature**2
  s_all = _states(inputs, "student", pooling_of(dcfg))
  t_all = _states(inputs, "teacher", pooling_of(dcfg))
  m = s_all.shape[0] - 1
  if m < 2:
    inter, diag = jnp.zeros((), jnp.float32), {}
  else:
    s = _concat_layers(s_all[1:m])[0]  # [B, (M-1) Hs]
    t = _concat_layers(jnp.take(t_all, jnp.asarray(inputs.mapping, jnp.int32), axis=0))[0]
    ps = projections.linear(head_params["student_proj"], s)
    pt = projections.linear(head_params["teacher_proj"], t)
    per_example = distance(ps, pt, "sq_l2")  # [B]: squared L2 of the normalised vectors
    inter = global_sum(per_example, inputs.example_mask, inputs.axis_name)
    diag = diagnostics.collapse_stats([(ps[None], pt[None])], inputs.example_mask, inputs.axis_name)
  return _weighted_total(dcfg, ce, kd, inter, diag)


# ----------------------------------------------------------------------------
# The table.

# The design spaces (docs/METHODS.md "Design spaces"). Every method with a KD term offers
# the same temperatures; every intermediate method that pools offers both poolings; every
# method with a learned map (at the study's equal widths: ckd, rail_*) offers the same starts.
_T = Knob("temperature", (1.0, 4.0, 10.0), "1 (Hinton's plain KD), 4, 10 (PKD's and RAIL-KD's published T)")
_POOL = Knob("pooling", ("mean", "cls"), "masked mean over real tokens, or the first token")
_START = Knob("map_init", ("identity", "random"), "identity-like (CKD: stacked identity) or N(0, 0.02^2)")
_INT_W = Knob("int_weight", (1 / 3, 1.0, 3.0), "the intermediate term's weight, CE and KD at 1/3 each")
_ALPHA = Knob("kd_alpha", (0.5, 0.7, 0.9), "PKD's kd_alpha grid {0.2, 0.5, 0.7, 0.9} above 0.2")
_RESAMPLE = Knob(
  "resample",
  (
    {"resample_every": "step", "resample_every_steps": 0},
    {"resample_every": "step", "resample_every_steps": 20},
    {"resample_every": "epoch", "resample_every_steps": 0},
  ),
  "a new mapping every step, every 20 steps, or every epoch (the published period)",
)
_THIRD = 1 / 3

# fmt: off
METHODS = {
  "none": Method(_no_heads, none_loss, needs_teacher=False, title="student without KD"),
  "kd": Method(
    _no_heads, kd_loss, needs_teacher=True, title="KD",
    preset={"temperature": 10.0, "kd_alpha": 0.7},
    preset_source="Hinton KD on BERT as the PKD authors ran it: their kd.cls preset (src/argument_parser.py) "
    "minus the patient term",
    space=(_T, _ALPHA)),
  "pkd": Method(
    pkd_init_heads, pkd_loss, needs_teacher=True, pairs_layers=True, title="PKD", pooling="cls", map_init="random",
    preset={"temperature": 10.0, "kd_alpha": 0.7, "pkd_beta": 500.0},
    preset_source="PKD code, src/argument_parser.py 'kd.cls': T=10, alpha=0.7, beta=500 (normalised CLS)",
    space=(_T, _ALPHA, Knob("pkd_beta", (10.0, 100.0, 500.0, 1000.0), "the PKD authors' beta grid"),
           Knob("pkd_mapping", ("skip", "last"), "PKD-Skip and PKD-Last"), _POOL)),
  "alp_kd": Method(
    alp_init_heads, alp_kd_loss, needs_teacher=True, pairs_layers=True, title="ALP-KD", pooling="cls",
    map_init="random",
    preset={"temperature": 20.0, "ce_weight": 0.1, "kd_weight": 0.7, "int_weight": 0.2},
    preset_source="no code from the authors; aitsc/GLMKD's ALP-KD run: soft 0.7, hard 0.1, T=20, lambda 0.2",
    space=(_T, _INT_W, _POOL)),
  # needs_token_states because ckd_granularity='token' reads the hidden states; with
  # 'pooled' they are passed but unused (XLA drops them).
  "ckd": Method(
    ckd_init_heads, ckd_loss, needs_teacher=True, needs_token_states=True, pairs_layers=True, title="CKD",
    pooling="mean", map_init="random",
    preset={"temperature": 1.0, "ce_weight": 0.1, "kd_weight": 0.2, "int_weight": 0.7},
    preset_source="CKD_pytorch README: alpha (soft) 0.2, beta (intermediate) 0.7, hard 1 - alpha - beta; T=1",
    space=(_T, _INT_W, _POOL, _START)),
  "rail_l": Method(
    rail_l_init_heads, rail_l_loss, needs_teacher=True, uses_mapping=True, pairs_layers=True,
    title="RAIL-KD (rail_l)", pooling="mean", map_init="identity_when_square",
    preset={"temperature": 10.0, "ce_weight": _THIRD, "kd_weight": _THIRD, "int_weight": _THIRD},
    preset_source="aitsc/GLMKD's RAIL-KD run: soft = hard = intermediate = 1/3, T=10",
    space=(_T, _INT_W, _POOL, _START, _RESAMPLE)),
  "rail_c": Method(
    rail_c_init_heads, rail_c_loss, needs_teacher=True, uses_mapping=True, pairs_layers=True,
    title="RAIL-KD (rail_c)", pooling="mean", map_init="identity_when_square",
    preset={"temperature": 10.0, "ce_weight": _THIRD, "kd_weight": _THIRD, "int_weight": _THIRD},
    preset_source="aitsc/GLMKD's RAIL-KD run: soft = hard = intermediate = 1/3, T=10",
    space=(_T, _INT_W, _POOL, _START, _RESAMPLE)),
  # The published recipe; its structure (M-1 pairs from 1..N-1, both sides mapped to u,
  # concatenated, summed) is its loss; the preset holds the values that code was run with.
  "rail_paper": Method(
    rail_paper_init_heads, rail_paper_loss, needs_teacher=True, uses_mapping=True, pairs_layers=True,
    title="RAIL-KD (published)", pooling="mean", map_init="xavier", mapping=paper_mapping,
    preset={"temperature": 10.0, "ce_weight": _THIRD, "kd_weight": _THIRD, "int_weight": _THIRD,
            "proj_dim": 128, "resample_every": "epoch", "resample_every_steps": 0},
    preset_source="aitsc/GLMKD distill/readme.md's RAIL-KD command: --distill_soft_rate=0.3333 "
    "--distill_hard_rate=0.3333 --rail_kd_inter_rate=0.3333 --distill_temperature=10 --rail_kd_u=128 "
    "--rail_kd_concatenated --rail_kd_epochs=1",
    # The structure is the recipe; what it leaves to tuning: T, the weight, pooling, map start.
    space=(_T, _INT_W, _POOL, Knob("map_init", ("identity", "random", "xavier"),
                                   "identity-like, N(0, 0.02^2), or that code's Xavier normal"))),
}
# fmt: on

RAIL = tuple(name for name, m in METHODS.items() if m.uses_mapping)
MAP_INITS = ("",) + projections.INITS


def pooling_of(dcfg) -> str:
  """The pooling a run uses: distill.pooling, or the method's own when it is ''."""
  own = METHODS[dcfg.method].pooling if dcfg.method in METHODS else ""
  return dcfg.get("pooling", "") or own or "mean"


def map_init_of(dcfg, din: int, dout: int, both_sides: bool = False) -> str:
  """How a learned map of `dcfg.method` starts: distill.map_init, or the method's own when it
  is '' ('identity_when_square': the identity for an equal-width student->teacher map,
  N(0, 0.02^2) otherwise)."""
  init = dcfg.get("map_init", "") or METHODS[dcfg.method].map_init or "random"
  if init == "identity_when_square":
    return "identity" if din == dout and not both_sides else "random"
  return init


def mapping_for(dcfg, key, num_teacher_layers: int, num_student_layers: int):
  """The method's layer mapping (int32 [K], traceable): its own rule, or `make_mapping`."""
  rule = METHODS[dcfg.method].mapping
  if rule is not None:
    return rule(dcfg, key, num_teacher_layers, num_student_layers)
  return layer_sampling.make_mapping(dcfg, key, num_teacher_layers, num_student_layers)


# Methods that pair student layers with teacher layers (need no more student layers).
_LAYERWISE = tuple(name for name, m in METHODS.items() if m.pairs_layers)


def get_method(name: str) -> Method:
  if name not in METHODS:
    raise ValueError(f"unknown distillation method {name!r}; valid: {', '.join(METHODS)}.")
  return METHODS[name]


def is_frozen(path) -> bool:
  """True for a parameter under a key starting with FROZEN_PREFIX: the optimizer never updates it."""
  return any(str(getattr(k, "key", "")).startswith(FROZEN_PREFIX) for k in path)


def trainable_mask(head_params):
  """Pytree of bools like `head_params`: False under any key starting with 'frozen_'.

  Frozen heads get zero gradient, but decoupled weight decay would still shrink
  them; give this mask to `optax.masked` (or zero their updates) in the optimizer.
  """

  return jax.tree_util.tree_map_with_path(lambda path, _: not is_frozen(path), head_params)


# ----------------------------------------------------------------------------
# Presets (docs/METHODS.md, "Presets", has the source of every number).

# distill.preset='paper': the published (or, where the authors published none, the named
# reimplementation's) values of each method: its row's `preset`, with `preset_source`.
# Only these fields; everything else keeps its configured value.
PAPER_PRESETS = {name: dict(m.preset) for name, m in METHODS.items()}


def preset_values(dcfg) -> dict:
  """{field: value} that `dcfg.preset` sets for `dcfg.method` ({} for 'uniform')."""
  if dcfg.get("preset", "uniform") == "uniform":
    return {}
  return dict(PAPER_PRESETS[dcfg.method])


def _check_preset(dcfg):
  """A field the user moved off its default that the preset would overwrite is an error."""
  if dcfg.get("preset", "uniform") == "uniform":
    return
  default = defaults.distill_config()
  same = lambda a, b: np.isclose(a, b) if isinstance(b, float) else a == b
  for field, value in preset_values(dcfg).items():
    given = dcfg[field]
    if not (same(given, default[field]) or same(given, value)):
      raise ValueError(
        f"distill.{field}={given!r} conflicts with distill.preset='paper', which sets it to {value!r} for "
        f"{dcfg.method}; drop the override or use preset='uniform'."
      )


def apply_preset(dcfg):
  """A copy of `dcfg` with its preset's values written in (raises ValueError on a conflict)."""
  checks.choice("distill.method", dcfg.method, tuple(METHODS))
  checks.choice("distill.preset", dcfg.preset, PRESETS)
  _check_preset(dcfg)
  out = dcfg.copy_and_resolve_references()
  with out.unlocked():
    for field, value in preset_values(dcfg).items():
      out[field] = type(out[field])(value)
  return out


# ----------------------------------------------------------------------------
# Validation (before any compile).


# Fields that were renamed: an old config naming one gets an error naming the new one.
RENAMED = {"teacher_proj": "projection"}
_RENAME_HINT = {"teacher_proj": "the old 'trainable' is 'both'"}


def renamed_field_message(dcfg) -> str | None:
  """The one-sentence error for a distill config that still sets a renamed field, or None."""
  for old, new in RENAMED.items():
    if old in dcfg:
      return (
        f"distill.{old} was replaced by distill.{new} (one of {', '.join(PROJECTIONS)}; "
        f"{_RENAME_HINT[old]}); set distill.{new} instead"
      )
  return None


def renamed_flag_message(key: str) -> str | None:
  """The same for a command-line override `--config.distill.<key>=...`, or None."""
  if key not in RENAMED:
    return None
  return f"--config.distill.{key} was replaced by --config.distill.{RENAMED[key]} ({_RENAME_HINT[key]})"


def check_options(dcfg) -> None:
  """The options' own rules (choices, types, ranges), whatever the models: ConfigError on a bad one."""
  renamed = renamed_field_message(dcfg)
  if renamed:
    raise ConfigError(renamed)
  checks.choice("distill.method", dcfg.method, tuple(METHODS))
  checks.choice("distill.sampling", dcfg.sampling, layer_sampling.SAMPLINGS)
  checks.choice("distill.resample_every", dcfg.resample_every, RESAMPLE_EVERY)
  checks.choice("distill.pooling", dcfg.pooling, ("",) + pooling_lib.POOLINGS)
  checks.choice("distill.map_init", dcfg.get("map_init", ""), MAP_INITS)
  checks.choice("distill.distance", dcfg.distance, DISTANCES)
  checks.choice("distill.projection", dcfg.projection, PROJECTIONS)
  checks.choice("distill.proj_index", dcfg.proj_index, PROJ_INDEXES)
  checks.choice("distill.pkd_mapping", dcfg.pkd_mapping, PKD_MAPPINGS)
  checks.choice("distill.ckd_granularity", dcfg.ckd_granularity, CKD_GRANULARITIES)
  checks.choice("distill.preset", dcfg.preset, PRESETS)
  checks.positive("distill.temperature", dcfg.temperature)
  checks.positive("distill.infonce_tau", dcfg.infonce_tau)
  for field in ("ce_weight", "kd_weight", "int_weight", "pkd_beta"):
    checks.positive(f"distill.{field}", dcfg[field], allow_zero=True)
  checks.in_range("distill.kd_alpha", dcfg.kd_alpha, 0, 1)
  checks.in_range("distill.collapse_threshold", dcfg.collapse_threshold, 0, 1)
  checks.boolean("distill.center", dcfg.center)
  checks.boolean("distill.cache_teacher", dcfg.cache_teacher)
  checks.integer("distill.proj_dim", dcfg.proj_dim, minimum=1)
  checks.integer("distill.resample_every_steps", dcfg.resample_every_steps, minimum=0)
  checks.integer("distill.collapse_patience", dcfg.collapse_patience, minimum=0)


def validate(
  dcfg, num_student_layers: int, num_teacher_layers: int, student_dim: int = None, teacher_dim: int = None
) -> list[str]:
  """Raises ValueError (one sentence naming field, value and valid choices) on a bad config.

  Args:
    dcfg: distillation config.
    M, N: student and teacher layer counts.
    student_dim, teacher_dim: hidden widths; width checks are skipped when None.

  Returns:
    Warning lines (one sentence each) for accepted but doubtful combinations.
  """
  check_options(dcfg)
  if num_student_layers < 1 or num_teacher_layers < 1:
    raise ValueError(
      f"the student has {num_student_layers} layers and the teacher {num_teacher_layers}; both need >= 1."
    )
  method = dcfg.method
  if method in _LAYERWISE and num_student_layers > num_teacher_layers:
    raise ValueError(
      f"distill.method={method!r} pairs each student layer with a teacher layer, "
      f"but the student has more layers ({num_student_layers}) than the teacher ({num_teacher_layers})."
    )
  if METHODS[method].uses_mapping and METHODS[method].mapping is None and dcfg.sampling == "fixed":
    _validate_fixed(dcfg.fixed_layers, num_student_layers, num_teacher_layers)
  _check_preset(dcfg)
  if method == "rail_paper":
    return _ignored_warning(dcfg, method, ("projection", "center", "proj_index", "distance", "sampling"))
  if method in RAIL:
    warnings = _validate_rail(dcfg, student_dim, teacher_dim)
    if method == "rail_c" and dcfg.proj_index != "slot":
      warnings.append("distill.proj_index='teacher_layer' only applies to rail_l; rail_c has one map per side.")
    return warnings
  warnings = _ignored_warning(dcfg, method, ("projection", "center", "proj_index", "distance"))
  if method == "pkd" and 0 < dcfg.pkd_beta < 1:
    warnings.append(
      f"distill.pkd_beta={dcfg.pkd_beta:g} is tiny on the PKD authors' scale (a mean over pairs "
      f"and features; their grid 10-1000, 100 by default)."
    )
  return warnings


def _ignored_warning(dcfg, method: str, fields) -> list[str]:
  """One warning line naming the rail_l/rail_c options moved off their defaults that `method` ignores."""
  default = defaults.distill_config()
  ignored = [f for f in fields if dcfg[f] != default[f]]
  if ignored and METHODS[method].needs_teacher:
    return [f"distill.{', distill.'.join(ignored)} only apply to rail_l/rail_c; {method} ignores them."]
  return []


def _validate_rail(dcfg, student_dim, teacher_dim) -> list[str]:
  """The projection rules of rail_*: refusals with an exact trivial minimiser, warnings."""
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


def resampling_warnings(
  dcfg, num_student_layers: int, num_teacher_layers: int, total_steps: int, steps_per_epoch: int
) -> list[str]:
  """A warning line when resample_every='epoch' leaves a run with few distinct mappings."""
  if (
    not get_method(dcfg.method).uses_mapping
    or (dcfg.sampling == "fixed" and get_method(dcfg.method).mapping is None)
    or dcfg.resample_every_steps
    or dcfg.resample_every != "epoch"
  ):
    return []
  if total_steps >= 2 * steps_per_epoch:
    return []
  seen = -(-int(total_steps) // int(steps_per_epoch))
  if dcfg.method == "rail_paper":
    possible = math.comb(num_teacher_layers - 1, num_student_layers - 1)
  else:
    possible = math.comb(num_teacher_layers, num_student_layers) if dcfg.sampling == "uniform" else None
  of = f" of the {possible} possible" if possible else ""
  return [
    f"distill.resample_every='epoch' on a run of {total_steps} steps ({total_steps / steps_per_epoch:.2f} "
    f"epochs) samples at most {seen} distinct layer mapping(s){of}; use resample_every='step' or "
    f"resample_every_steps=k to see more."
  ]


def _validate_fixed(fixed, num_student_layers, num_teacher_layers):
  try:
    layers = layer_sampling.parse_layers(fixed)
  except (TypeError, ValueError):
    raise ValueError(
      f"distill.fixed_layers={fixed!r} must be a tuple of {num_student_layers} ints in 1..{num_teacher_layers}."
    ) from None
  if len(layers) != num_student_layers:
    raise ValueError(
      f"distill.fixed_layers={layers} has {len(layers)} entries; sampling='fixed' "
      f"needs one teacher layer per student layer ({num_student_layers})."
    )
  bad = [x for x in layers if not 1 <= x <= num_teacher_layers]
  if bad:
    raise ValueError(f"distill.fixed_layers={layers} has layers {bad} outside the teacher's 1..{num_teacher_layers}.")
  if len(set(layers)) != len(layers):
    raise ValueError(f"distill.fixed_layers={layers} has duplicate teacher layers.")
  if list(layers) != sorted(layers):
    raise ValueError(f"distill.fixed_layers={layers} must be in ascending order.")
