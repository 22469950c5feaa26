"""Distillation methods: a table of small pure loss functions (docs/METHODS.md).

Every method is a `Method(init_heads, loss, needs_teacher, needs_token_states,
uses_mapping)`:

  init_heads(key, dcfg, student_dim, teacher_dim, M, N) -> head params pytree
  loss(head_params, inputs: MethodInputs, dcfg) -> (scalar, {name: scalar})

The metrics dict holds every term by name ('ce', 'kd', 'int' where the method
has it) and the total as 'loss', all float32 scalars. Per-example terms are
averaged over real examples (`example_mask`), so padded examples of a last
partial batch never count. Teacher inputs are wrapped in `stop_gradient`.

Layer indexing: `*_pooled`, `*_cls` and `*_hidden` have the embedding output at
index 0 and layer j at index j; student layers are 1..M, teacher layers 1..N.
"""

from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from rail_kd_jax.distill import layer_sampling
from rail_kd_jax.distill import pooling as pooling_lib
from rail_kd_jax.distill import projections

Array = Any

RESAMPLE_EVERY = ("step", "epoch")
DISTANCES = ("sq_l2", "cosine", "mse")
TEACHER_PROJS = ("trainable", "frozen_random", "none")
PKD_MAPPINGS = ("skip", "last")
CKD_GRANULARITIES = ("pooled", "token")
FROZEN_PREFIX = "frozen_"
_EPS = 1e-12  # floor on the squared norm when normalising: zero vectors stay zero


@flax.struct.dataclass
class MethodInputs:
  """Everything a method may read. Unused fields may be None.

  Attributes:
    student_logits: `[B, C]` (regression: `[B, 1]` or `[B]`).
    labels: int `[B]` (regression: float `[B]`).
    example_mask: `[B]`, 1 for real examples; None means all real.
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
  If a pooled/cls field is None but the hidden states and token_mask are
  given, the method pools them itself.
  """
  student_logits: Array = None
  labels: Array = None
  example_mask: Array = None
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


class Method(NamedTuple):
  init_heads: Callable[..., Any]
  loss: Callable[..., Any]
  needs_teacher: bool
  needs_token_states: bool
  uses_mapping: bool


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


def l2_normalize(x):
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), _EPS))


def distance(a, b, kind: str):
  """Per-vector distance over the last axis: `[..., D] x [..., D] -> [...]`."""
  if kind == "sq_l2":
    return jnp.sum(jnp.square(l2_normalize(a) - l2_normalize(b)), axis=-1)
  if kind == "cosine":
    return 1.0 - jnp.sum(l2_normalize(a) * l2_normalize(b), axis=-1)
  if kind == "mse":
    return jnp.mean(jnp.square(a.astype(jnp.float32) - b.astype(jnp.float32)), axis=-1)
  raise ValueError(f"distill.distance={kind!r} is not valid; choose one of {DISTANCES}.")


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
  ce = masked_mean(ce_per_example(inputs), inputs.example_mask)
  if not with_kd:
    return ce, None
  kd = masked_mean(kd_per_example(inputs, dcfg.temperature), inputs.example_mask)
  return ce, kd


def _weighted_total(dcfg, ce, kd, inter):
  total = dcfg.ce_weight * ce + dcfg.kd_weight * kd + dcfg.int_weight * inter
  return total, {"ce": ce, "kd": kd, "int": inter, "loss": total}


def _no_heads(key, dcfg, student_dim, teacher_dim, M, N):
  del key, dcfg, student_dim, teacher_dim, M, N
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
  raise ValueError(
      f"distill.pkd_mapping={pkd_mapping!r} is not valid; choose one of {PKD_MAPPINGS}.")


def pkd_init_heads(key, dcfg, student_dim, teacher_dim, M, N):
  """Per pair a student->teacher linear map when widths differ, else nothing."""
  del dcfg, N
  if student_dim == teacher_dim or M < 2:
    return {}
  return {"student_proj": projections.init_linear_stack(key, M - 1, student_dim, teacher_dim)}


def pkd_loss(head_params, inputs: MethodInputs, dcfg):
  """(1 - a) CE + a KD + beta * sum_{j<M} ||s_j/|s_j| - t_j/|t_j|||^2 (first tokens)."""
  ce, kd = _ce_kd_metrics(inputs, dcfg)
  s = _states(inputs, "student", "cls")
  t = _states(inputs, "teacher", "cls")
  m, n = s.shape[0] - 1, t.shape[0] - 1
  layers = pkd_teacher_layers(dcfg.pkd_mapping, n, m)
  if layers:
    s = s[1:m]
    if "student_proj" in head_params:
      s = projections.linear_stack(head_params["student_proj"], s)
    t = t[np.asarray(layers)]
    pt = masked_mean(jnp.sum(distance(s, t, "sq_l2"), axis=0), inputs.example_mask)
  else:
    pt = jnp.zeros((), jnp.float32)
  a = dcfg.kd_alpha
  total = (1.0 - a) * ce + a * kd + dcfg.pkd_beta * pt
  return total, {"ce": ce, "kd": kd, "int": pt, "loss": total}


# ----------------------------------------------------------------------------
# ALP-KD (Passban et al. 2021).


def alp_init_heads(key, dcfg, student_dim, teacher_dim, M, N):
  """Per student layer a student->teacher linear map when widths differ."""
  del dcfg, N
  if student_dim == teacher_dim:
    return {}
  return {"student_proj": projections.init_linear_stack(key, M, student_dim, teacher_dim)}


def alp_kd_loss(head_params, inputs: MethodInputs, dcfg):
  """Student layer j attends over all N teacher first-token vectors; MSE to the mix."""
  ce, kd = _ce_kd_metrics(inputs, dcfg)
  s = _states(inputs, "student", "cls")[1:]  # [M, B, Hs]
  t = _states(inputs, "teacher", "cls")[1:]  # [N, B, Ht]
  if "student_proj" in head_params:
    s = projections.linear_stack(head_params["student_proj"], s)
  scores = jnp.einsum("mbh,nbh->bmn", s, t)  # unscaled dot product, as published
  weights = jax.nn.softmax(scores, axis=-1)
  context = jnp.einsum("bmn,nbh->mbh", weights, t)
  per_example = jnp.mean(distance(s, context, "mse"), axis=0)  # mean over M
  inter = masked_mean(per_example, inputs.example_mask)
  return _weighted_total(dcfg, ce, kd, inter)


# ----------------------------------------------------------------------------
# CKD (Wu et al. 2020).


def ckd_init_heads(key, dcfg, student_dim, teacher_dim, M, N):
  """Per group j (1..M) a linear map from the concatenated group to the student width."""
  del dcfg
  bounds = layer_sampling.block_bounds(N, M)
  keys = jax.random.split(key, M)
  return {"teacher_proj": {
      f"group_{j + 1}": projections.init_linear(keys[j], (hi - lo) * teacher_dim, student_dim)
      for j, (lo, hi) in enumerate(bounds)}}


def ckd_loss(head_params, inputs: MethodInputs, dcfg):
  """Teacher groups concatenated, projected to Hs, MSE to the student layer."""
  ce, kd = _ce_kd_metrics(inputs, dcfg)
  token = dcfg.ckd_granularity == "token"
  if token:
    if inputs.student_hidden is None or inputs.teacher_hidden is None:
      raise ValueError("distill.ckd_granularity='token' needs student_hidden and teacher_hidden.")
    s = jnp.asarray(inputs.student_hidden, jnp.float32)  # [M+1, B, T, Hs]
    t = _sg(inputs.teacher_hidden)  # [N+1, B, T, Ht]
  else:
    s = _states(inputs, "student", dcfg.pooling)  # [M+1, B, Hs]
    t = _states(inputs, "teacher", dcfg.pooling)  # [N+1, B, Ht]
  m, n = s.shape[0] - 1, t.shape[0] - 1
  per_layer = []
  for j, (lo, hi) in enumerate(layer_sampling.block_bounds(n, m)):
    group = jnp.concatenate([t[i] for i in range(lo, hi)], axis=-1)
    target = projections.linear(head_params["teacher_proj"][f"group_{j + 1}"], group)
    per_layer.append(distance(s[j + 1], target, "mse"))  # [B] or [B, T]
  d = jnp.mean(jnp.stack(per_layer), axis=0)
  if token:
    mask = inputs.token_mask
    mask = jnp.ones(d.shape, jnp.float32) if mask is None else (jnp.asarray(mask) > 0)
    mask = mask.astype(jnp.float32)
    d = jnp.sum(d * mask, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)
  inter = masked_mean(d, inputs.example_mask)
  return _weighted_total(dcfg, ce, kd, inter)


# ----------------------------------------------------------------------------
# RAIL-KD (Haidar et al. 2022).


def _teacher_proj_key(dcfg):
  return FROZEN_PREFIX + "teacher_proj" if dcfg.teacher_proj == "frozen_random" else "teacher_proj"


def _teacher_proj_params(head_params, dcfg):
  if dcfg.teacher_proj == "frozen_random":
    return jax.lax.stop_gradient(head_params[FROZEN_PREFIX + "teacher_proj"])
  return head_params["teacher_proj"]


def rail_l_init_heads(key, dcfg, student_dim, teacher_dim, M, N):
  """Per pair j: student Hs->u and teacher Ht->u linear maps (none: no params)."""
  del N
  if dcfg.teacher_proj == "none":
    return {}
  ks, kt = jax.random.split(key)
  u = dcfg.proj_dim
  return {"student_proj": projections.init_linear_stack(ks, M, student_dim, u),
          _teacher_proj_key(dcfg): projections.init_linear_stack(kt, M, teacher_dim, u)}


def rail_c_init_heads(key, dcfg, student_dim, teacher_dim, M, N):
  """One student M*Hs->u and one teacher M*Ht->u linear map (none: no params)."""
  del N
  if dcfg.teacher_proj == "none":
    return {}
  ks, kt = jax.random.split(key)
  u = dcfg.proj_dim
  return {"student_proj": projections.init_linear(ks, M * student_dim, u),
          _teacher_proj_key(dcfg): projections.init_linear(kt, M * teacher_dim, u)}


def _rail_pairs(inputs: MethodInputs, dcfg):
  s = _states(inputs, "student", dcfg.pooling)[1:]  # [M, B, Hs]
  t_all = _states(inputs, "teacher", dcfg.pooling)  # [N+1, B, Ht]
  mapping = jnp.asarray(inputs.mapping, jnp.int32)
  t = jnp.take(t_all, mapping, axis=0)  # [M, B, Ht], traced indices
  return s, t


def rail_l_loss(head_params, inputs: MethodInputs, dcfg):
  """Mean over pairs j of d(P_s^j s_j, P_t^j t_{mapping[j]})."""
  ce, kd = _ce_kd_metrics(inputs, dcfg)
  s, t = _rail_pairs(inputs, dcfg)
  if dcfg.teacher_proj != "none":
    s = projections.linear_stack(head_params["student_proj"], s)
    t = projections.linear_stack(_teacher_proj_params(head_params, dcfg), t)
  per_example = jnp.mean(distance(s, t, dcfg.distance), axis=0)
  inter = masked_mean(per_example, inputs.example_mask)
  return _weighted_total(dcfg, ce, kd, inter)


def _concat_layers(x):
  """`[M, B, H] -> [B, M*H]`, layer 1's features first."""
  m, b, h = x.shape
  return jnp.transpose(x, (1, 0, 2)).reshape(b, m * h)


def rail_c_loss(head_params, inputs: MethodInputs, dcfg):
  """d(P_s [s_1;..;s_M], P_t [t_1;..;t_M]) on the concatenated vectors."""
  ce, kd = _ce_kd_metrics(inputs, dcfg)
  s, t = _rail_pairs(inputs, dcfg)
  s, t = _concat_layers(s), _concat_layers(t)
  if dcfg.teacher_proj != "none":
    s = projections.linear(head_params["student_proj"], s)
    t = projections.linear(_teacher_proj_params(head_params, dcfg), t)
  inter = masked_mean(distance(s, t, dcfg.distance), inputs.example_mask)
  return _weighted_total(dcfg, ce, kd, inter)


# ----------------------------------------------------------------------------
# The table.

METHODS = {
    "none": Method(_no_heads, none_loss, needs_teacher=False, needs_token_states=False,
                   uses_mapping=False),
    "kd": Method(_no_heads, kd_loss, needs_teacher=True, needs_token_states=False,
                 uses_mapping=False),
    "pkd": Method(pkd_init_heads, pkd_loss, needs_teacher=True, needs_token_states=False,
                  uses_mapping=False),
    "alp_kd": Method(alp_init_heads, alp_kd_loss, needs_teacher=True,
                     needs_token_states=False, uses_mapping=False),
    # True because ckd_granularity='token' reads the hidden states; with 'pooled'
    # they are passed but unused (XLA drops them).
    "ckd": Method(ckd_init_heads, ckd_loss, needs_teacher=True, needs_token_states=True,
                  uses_mapping=False),
    "rail_l": Method(rail_l_init_heads, rail_l_loss, needs_teacher=True,
                     needs_token_states=False, uses_mapping=True),
    "rail_c": Method(rail_c_init_heads, rail_c_loss, needs_teacher=True,
                     needs_token_states=False, uses_mapping=True),
}

# Methods that pair student layers with teacher layers (need M <= N).
_LAYERWISE = ("pkd", "alp_kd", "ckd", "rail_l", "rail_c")


def get_method(name: str) -> Method:
  if name not in METHODS:
    raise ValueError(
        f"unknown distillation method {name!r}; valid: {', '.join(METHODS)}.")
  return METHODS[name]


def trainable_mask(head_params):
  """Pytree of bools like `head_params`: False under any key starting with 'frozen_'.

  Frozen heads get zero gradient, but decoupled weight decay would still shrink
  them; give this mask to `optax.masked` (or zero their updates) in the optimizer.
  """
  def is_trainable(path, _):
    return not any(str(getattr(k, "key", "")).startswith(FROZEN_PREFIX) for k in path)
  return jax.tree_util.tree_map_with_path(is_trainable, head_params)


# ----------------------------------------------------------------------------
# Validation (before any compile).


def _check_choice(dcfg, field, choices):
  value = dcfg[field]
  if value not in choices:
    raise ValueError(
        f"distill.{field}={value!r} is not valid; choose one of {', '.join(choices)}.")


def validate(dcfg, M: int, N: int, student_dim: int = None, teacher_dim: int = None):
  """Raises ValueError (one sentence naming field, value and valid choices) on a bad config.

  Args:
    dcfg: distillation config.
    M, N: student and teacher layer counts.
    student_dim, teacher_dim: hidden widths; width checks are skipped when None.
  """
  get_method(dcfg.method)
  _check_choice(dcfg, "sampling", layer_sampling.SAMPLINGS)
  _check_choice(dcfg, "resample_every", RESAMPLE_EVERY)
  _check_choice(dcfg, "pooling", pooling_lib.POOLINGS)
  _check_choice(dcfg, "distance", DISTANCES)
  _check_choice(dcfg, "teacher_proj", TEACHER_PROJS)
  _check_choice(dcfg, "pkd_mapping", PKD_MAPPINGS)
  _check_choice(dcfg, "ckd_granularity", CKD_GRANULARITIES)
  if not dcfg.temperature > 0:
    raise ValueError(f"distill.temperature={dcfg.temperature!r} must be > 0.")
  for field in ("ce_weight", "kd_weight", "int_weight", "pkd_beta"):
    if not dcfg[field] >= 0:
      raise ValueError(f"distill.{field}={dcfg[field]!r} must be >= 0.")
  if not 0 <= dcfg.kd_alpha <= 1:
    raise ValueError(f"distill.kd_alpha={dcfg.kd_alpha!r} must be in [0, 1].")
  proj_dim = dcfg.proj_dim
  if isinstance(proj_dim, bool) or not isinstance(proj_dim, (int, np.integer)) or proj_dim <= 0:
    raise ValueError(f"distill.proj_dim={proj_dim!r} must be a positive int.")
  if M < 1 or N < 1:
    raise ValueError(f"student layers M={M} and teacher layers N={N} must both be >= 1.")
  method = dcfg.method
  if method in _LAYERWISE and M > N:
    raise ValueError(
        f"distill.method={method!r} pairs each student layer with a teacher layer, "
        f"but the student has more layers (M={M}) than the teacher (N={N}).")
  if METHODS[method].uses_mapping and dcfg.sampling == "fixed":
    _validate_fixed(dcfg.fixed_layers, M, N)
  if (method in ("rail_l", "rail_c") and dcfg.teacher_proj == "none"
      and student_dim is not None and teacher_dim is not None
      and student_dim != teacher_dim):
    raise ValueError(
        f"distill.teacher_proj='none' compares raw vectors, which needs equal widths, "
        f"but the student is {student_dim} wide and the teacher {teacher_dim}; "
        f"use 'trainable' or 'frozen_random'.")


def _validate_fixed(fixed, M, N):
  try:
    layers = layer_sampling.parse_layers(fixed)
  except (TypeError, ValueError):
    raise ValueError(
        f"distill.fixed_layers={fixed!r} must be a tuple of {M} ints in 1..{N}.") from None
  if len(layers) != M:
    raise ValueError(
        f"distill.fixed_layers={layers} has {len(layers)} entries; sampling='fixed' "
        f"needs one teacher layer per student layer ({M}).")
  bad = [x for x in layers if not 1 <= x <= N]
  if bad:
    raise ValueError(
        f"distill.fixed_layers={layers} has layers {bad} outside the teacher's 1..{N}.")
  if len(set(layers)) != len(layers):
    raise ValueError(f"distill.fixed_layers={layers} has duplicate teacher layers.")
  if list(layers) != sorted(layers):
    raise ValueError(f"distill.fixed_layers={layers} must be in ascending order.")
