"""Distillation methods: one file per family, each defining its whole row (docs/METHODS.md).

  base.py     the row (`Method`), `MethodInputs`, `Knob`, the shared CE/KD terms, pooling
              and map starts
  kd.py       none, kd            pkd.py   pkd          alp_kd.py   alp_kd
  ckd.py      ckd                 rail.py  rail_l, rail_c, rail_paper
  torch_terms.py   the shared terms of the rows' PyTorch losses (torch is optional)

This module holds the registry `METHODS` (name -> row), `register` for a method defined
outside the package (a module named in $RAIL_KD_METHODS is imported by `load_plugins`
before a command checks its config), and what reads the rows: the pooling, map start and
mapping of a run, the presets, the option checks and `validate`. No other module needs a
method's name: each asks its row.
"""

import importlib
import math
import os

import numpy as np

from rail_kd_jax.core import checks, defaults
from rail_kd_jax.core.errors import ConfigError
from rail_kd_jax.distill import compare, diagnostics, layer_sampling, projections
from rail_kd_jax.distill import pooling as pooling_lib
from rail_kd_jax.distill.methods import alp_kd, base, ckd, kd, pkd, rail

# The public names, as before the package was split (`methods.X` keeps working).
from rail_kd_jax.distill.methods.alp_kd import alp_init_heads, alp_kd_loss  # noqa: F401
from rail_kd_jax.distill.methods.base import (  # noqa: F401
  FROZEN_PREFIX,
  Knob,
  Method,
  MethodInputs,
  ce_per_example,
  distance,
  is_frozen,
  kd_per_example,
  l2_normalize,
  labeled_mean,
  masked_mean,
  trainable_mask,
)
from rail_kd_jax.distill.methods.ckd import CKD_GRANULARITIES, ckd_init_heads, ckd_loss  # noqa: F401
from rail_kd_jax.distill.methods.kd import kd_loss, none_loss  # noqa: F401
from rail_kd_jax.distill.methods.pkd import PKD_MAPPINGS, pkd_init_heads, pkd_loss, pkd_teacher_layers  # noqa: F401
from rail_kd_jax.distill.methods.rail import (  # noqa: F401
  PROJ_INDEXES,
  PROJECTIONS,
  RESAMPLE_EVERY,
  global_sum,
  paper_mapping,
  rail_c_init_heads,
  rail_c_loss,
  rail_l_init_heads,
  rail_l_loss,
  rail_paper_init_heads,
  rail_paper_loss,
)

DISTANCES = compare.DISTANCES
PRESETS = ("uniform", "paper")
MAP_INITS = ("",) + projections.INITS
PLUGINS_ENV = "RAIL_KD_METHODS"

METHODS: dict[str, Method] = {}
# distill.preset='paper': the published (or, where the authors published none, the named
# reimplementation's) values of each method: its row's `preset`, with `preset_source`
# (docs/METHODS.md, "Presets"). Only these fields; everything else keeps its configured value.
PAPER_PRESETS: dict[str, dict] = {}


def register(*rows: Method) -> None:
  """Adds `rows` to METHODS (and their presets to PAPER_PRESETS); ValueError on a name
  that another row already holds. Registering the same row again does nothing."""
  for row in rows:
    if not row.name or not isinstance(row.name, str):
      raise ValueError(f"a method row needs a name (Method(name=...)), got {row.name!r}.")
    if METHODS.get(row.name, row) is not row:
      raise ValueError(f"distill.method {row.name!r} is already registered; give the new row another name.")
    METHODS[row.name] = row
    PAPER_PRESETS[row.name] = dict(row.preset)


register(*kd.ROWS)
register(*pkd.ROWS)
register(*alp_kd.ROWS)
register(*ckd.ROWS)
register(*rail.ROWS)


def load_plugins() -> list[str]:
  """Imports every module named in $RAIL_KD_METHODS (comma-separated dotted names), each of
  which registers its rows; ConfigError when one cannot be imported. Returns the names."""
  names = [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
  for name in names:
    try:
      importlib.import_module(name)
    except ImportError as e:
      raise ConfigError(f"${PLUGINS_ENV} names the module {name!r}, which cannot be imported ({e})") from None
  return names


def get_method(name: str) -> Method:
  if name not in METHODS:
    raise ValueError(f"unknown distillation method {name!r}; valid: {', '.join(METHODS)}.")
  return METHODS[name]


def _own(dcfg, field: str) -> str:
  row = METHODS.get(dcfg.method)
  return getattr(row, field) if row is not None else ""


def pooling_of(dcfg) -> str:
  """The pooling a run uses: distill.pooling, or the method's own when it is ''."""
  return base.pooling_of(dcfg, _own(dcfg, "pooling"))


def map_init_of(dcfg, din: int, dout: int, both_sides: bool = False) -> str:
  """How a learned map of `dcfg.method` starts: distill.map_init, or the method's own when it
  is '' (`base.resolve_map_init`)."""
  return base.resolve_map_init(dcfg, _own(dcfg, "map_init"), din, dout, both_sides)


def mapping_for(dcfg, key, num_teacher_layers: int, num_student_layers: int):
  """The method's layer mapping (int32 [K], traceable): its own rule, or `make_mapping`."""
  rule = METHODS[dcfg.method].mapping
  if rule is not None:
    return rule(dcfg, key, num_teacher_layers, num_student_layers)
  return layer_sampling.make_mapping(dcfg, key, num_teacher_layers, num_student_layers)


def token_level(dcfg) -> bool:
  """Whether the run compares every token's hidden states (a teacher cache cannot serve it)."""
  return get_method(dcfg.method).token_level(dcfg)


def reads_option(method: str, field: str) -> bool:
  """Whether a run of `method` reads distill.`field`: a field that no row lists in its
  `options` is read by every method, and a method not registered reads every field."""
  row = METHODS.get(method)
  if row is None or field in row.options:
    return True
  return not any(field in other.options for other in METHODS.values())


def collapse_watch(dcfg, batch_size: int) -> diagnostics.CollapseWatch:
  """The host-side collapse watch of a run: the teacher side watched when the row's target trains."""
  row = get_method(dcfg.method)
  return diagnostics.CollapseWatch(
    dcfg.method,
    dcfg.get("projection", ""),
    dcfg.get("collapse_threshold", 0.05),
    dcfg.get("collapse_patience", 3),
    batch_size=batch_size,
    watch_teacher=row.trainable_target(dcfg),
    advice=(row.collapse_advice(dcfg) if row.collapse_advice else "") or diagnostics.ADVICE,
  )


# ----------------------------------------------------------------------------
# Presets (docs/METHODS.md, "Presets", has the source of every number).


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
# Options whose change a method that ignores them reports (the others stay silent: e.g. the
# tiny config's proj_dim).
WARN_IF_IGNORED = ("projection", "center", "proj_index", "distance", "sampling")


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
  method, row = dcfg.method, METHODS[dcfg.method]
  if row.pairs_layers and num_student_layers > num_teacher_layers:
    raise ValueError(
      f"distill.method={method!r} pairs each student layer with a teacher layer, "
      f"but the student has more layers ({num_student_layers}) than the teacher ({num_teacher_layers})."
    )
  if row.uses_mapping and row.mapping is None and dcfg.sampling == "fixed":
    _validate_fixed(dcfg.fixed_layers, num_student_layers, num_teacher_layers)
  _check_preset(dcfg)
  warnings = _ignored_warning(dcfg, row)
  if row.check is not None:
    warnings += row.check(dcfg, num_student_layers, num_teacher_layers, student_dim, teacher_dim)
  return warnings


def _ignored_warning(dcfg, row: Method) -> list[str]:
  """One warning line naming the options of WARN_IF_IGNORED moved off their defaults that `row` ignores."""
  default = defaults.distill_config()
  ignored = [f for f in WARN_IF_IGNORED if f not in row.options and dcfg[f] != default[f]]
  if not ignored or not row.needs_teacher:
    return []
  readers = [name for name, other in METHODS.items() if all(f in other.options for f in ignored)]
  return [f"distill.{', distill.'.join(ignored)} only apply to {'/'.join(readers)}; {row.name} ignores them."]


def resampling_warnings(
  dcfg, num_student_layers: int, num_teacher_layers: int, total_steps: int, steps_per_epoch: int
) -> list[str]:
  """A warning line when resample_every='epoch' leaves a run with few distinct mappings."""
  row = get_method(dcfg.method)
  if (
    not row.uses_mapping
    or (dcfg.sampling == "fixed" and row.mapping is None)
    or dcfg.resample_every_steps
    or dcfg.resample_every != "epoch"
  ):
    return []
  if total_steps >= 2 * steps_per_epoch:
    return []
  seen = -(-int(total_steps) // int(steps_per_epoch))
  if row.count_mappings is not None:
    possible = row.count_mappings(dcfg, num_teacher_layers, num_student_layers)
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
