"""What every method shares: its inputs, its row, the CE and KD terms, pooling and map starts.

A method is a `Method` row (one file per family in this package, registered in
`methods.METHODS`):

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

from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from rail_kd_jax.distill import compare
from rail_kd_jax.distill import pooling as pooling_lib

Array = Any

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
    mapping: int32 `[M]` from the method's mapping rule (`methods.mapping_for`), may be traced.
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


def never(dcfg) -> bool:
  """The default of a row's per-config yes/no facts."""
  del dcfg
  return False


class Method(NamedTuple):
  """One row of METHODS: every fact about a method that the trainer, the cache, the checks,
  the checkpoint, the study, the reports and the PyTorch peer read (docs/METHODS.md)."""

  init_heads: Callable[..., Any]
  loss: Callable[..., Any]
  needs_teacher: bool  # the step runs (or reads the cache of) the teacher
  name: str = ""  # distill.method
  needs_token_states: bool = False  # the loss may read every token's hidden states, not only pooled ones
  # token_level(dcfg): whether this config does read them (a teacher cache cannot serve it).
  token_level: Callable[[Any], bool] = never
  uses_mapping: bool = False  # a random student->teacher layer mapping per step/epoch (RAIL-KD)
  pairs_layers: bool = False  # pairs student layers with teacher layers: needs as many teacher layers
  title: str = ""  # the name in result tables and plots
  # The distill fields it reads (beyond method, preset, the cache and the collapse watch):
  # a checkpoint resumes across a change of any other, and validation names the ignored ones.
  options: tuple = ()
  pooling: str = ""  # its own pooling when distill.pooling is '' ('' = pools nothing)
  map_init: str = ""  # its own map start when distill.map_init is '' (see resolve_map_init)
  # The published values (distill.preset='paper') and where each number comes from.
  preset: dict = {}
  preset_source: str = ""
  # The knobs it leaves open, with candidates: the design space a study draws its grid from.
  space: tuple = ()
  # mapping(dcfg, key, num_teacher_layers, num_student_layers) -> int32 [K]; None = make_mapping.
  mapping: Callable[..., Any] | None = None
  # count_mappings(dcfg, num_teacher_layers, num_student_layers) -> how many distinct mappings
  # its own rule draws (None = unknown); None = make_mapping's count.
  count_mappings: Callable[..., Any] | None = None
  # check(dcfg, num_student_layers, num_teacher_layers, student_dim, teacher_dim) -> warning
  # lines; raises ValueError on a refused combination of its options. None = no own rules.
  check: Callable[..., list] | None = None
  # trainable_target(dcfg): whether the teacher-side vectors go through a trainable map (the
  # collapse watch then watches that side too); collapse_advice(dcfg): what to try instead.
  trainable_target: Callable[[Any], bool] = never
  collapse_advice: Callable[[Any], str] | None = None
  # The PyTorch peer (torch is optional: these import it inside): torch_heads(dcfg, hs, ht,
  # num_student_layers, num_teacher_layers) -> {name: initialised nn.Module} (the names of
  # init_heads' params); torch_loss(dcfg, heads, inputs: torch_terms.TorchInputs) -> scalar;
  # torch_mapping(generator, num_teacher_layers, num_student_layers) -> long tensor [K] (None
  # when it uses no mapping).
  torch_heads: Callable[..., dict] | None = None
  torch_loss: Callable[..., Any] | None = None
  torch_mapping: Callable[..., Any] | None = None


# ----------------------------------------------------------------------------
# Shared terms.


def sg(x):
  """`x` as float32 under stop_gradient (None stays None)."""
  return None if x is None else jax.lax.stop_gradient(jnp.asarray(x, jnp.float32))


def masked_mean(values, example_mask):
  """Mean of `values [B]` over examples with `example_mask > 0` (0 if none)."""
  values = values.astype(jnp.float32)
  if example_mask is None:
    return jnp.mean(values)
  keep = jnp.asarray(example_mask) > 0
  total = jnp.sum(jnp.where(keep, values, 0.0))
  return total / jnp.maximum(jnp.sum(keep.astype(jnp.float32)), 1.0)


def labeled_mean(values, inputs: MethodInputs):
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
  zt = sg(inputs.teacher_logits)
  if inputs.is_regression:
    return jnp.square(_regression_output(inputs.student_logits) - _regression_output(zt))
  zs = jnp.asarray(inputs.student_logits, jnp.float32)
  log_pt = jax.nn.log_softmax(zt / temperature, axis=-1)
  log_ps = jax.nn.log_softmax(zs / temperature, axis=-1)
  kl = jnp.sum(jnp.exp(log_pt) * (log_pt - log_ps), axis=-1)
  return temperature**2 * kl


l2_normalize = compare.l2_normalize
distance = compare.distance


def states(inputs: MethodInputs, side: str, kind: str):
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


def ce_kd(inputs: MethodInputs, dcfg, with_kd: bool = True):
  """(CE over the labelled examples, T^2-scaled KD over the real ones, or None)."""
  ce = labeled_mean(ce_per_example(inputs), inputs)
  if not with_kd:
    return ce, None
  kd = masked_mean(kd_per_example(inputs, dcfg.temperature), inputs.example_mask)
  return ce, kd


def weighted_total(dcfg, ce, kd, inter, diag):
  """ce_weight CE + kd_weight KD + int_weight L_int, and the metrics dict with every term."""
  total = dcfg.ce_weight * ce + dcfg.kd_weight * kd + dcfg.int_weight * inter
  return total, {"ce": ce, "kd": kd, "int": inter, **diag, "loss": total}


def no_heads(key, dcfg, student_dim, teacher_dim, num_student_layers, num_teacher_layers):
  del key, dcfg, student_dim, teacher_dim, num_student_layers, num_teacher_layers
  return {}


# The options of the shared terms (`ce_kd`, `weighted_total`) and of a pooled, mapped method.
KD_OPTIONS = ("temperature",)
WEIGHTS = ("ce_weight", "kd_weight", "int_weight")


# ----------------------------------------------------------------------------
# Pooling and map starts.


def pooling_of(dcfg, own: str) -> str:
  """The pooling a run uses: distill.pooling, or the method's `own` when it is '' (then 'mean')."""
  return dcfg.get("pooling", "") or own or "mean"


def resolve_map_init(dcfg, own: str, din: int, dout: int, both_sides: bool = False) -> str:
  """How a learned map starts: distill.map_init, or the method's `own` when it is ''
  ('identity_when_square': the identity for an equal-width student->teacher map,
  N(0, 0.02^2) otherwise)."""
  init = dcfg.get("map_init", "") or own or "random"
  if init == "identity_when_square":
    return "identity" if din == dout and not both_sides else "random"
  return init


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
# The design-space knobs several families share (docs/METHODS.md "Design spaces"). Every
# method with a KD term offers the same temperatures; every intermediate method that pools
# offers both poolings; every method with a learned map (at the study's equal widths: ckd,
# rail_*) offers the same starts.

T_KNOB = Knob("temperature", (1.0, 4.0, 10.0), "1 (Hinton's plain KD), 4, 10 (PKD's and RAIL-KD's published T)")
POOL_KNOB = Knob("pooling", ("mean", "cls"), "masked mean over real tokens, or the first token")
START_KNOB = Knob("map_init", ("identity", "random"), "identity-like (CKD: stacked identity) or N(0, 0.02^2)")
INT_W_KNOB = Knob("int_weight", (1 / 3, 1.0, 3.0), "the intermediate term's weight, CE and KD at 1/3 each")
ALPHA_KNOB = Knob("kd_alpha", (0.5, 0.7, 0.9), "PKD's kd_alpha grid {0.2, 0.5, 0.7, 0.9} above 0.2")
THIRD = 1 / 3
