"""The study's plan: each method's grid from its own design space, the checks, every run's config.

The grid (docs/STUDY.md "Equal freedom"): every method with a design space gets the same
number of points, `study.grid_points` = K. Point 1 is the method's published preset
(`Method.preset`, written out as explicit values); points 2..K start from the preset and
set every knob of the method's space (`Method.space`) to a combination drawn uniformly
without replacement from the Cartesian product of the knobs' candidates (a NumPy generator
seeded by `study.grid_seed` and the method's name; a combination equal to an earlier point
is skipped). `none` has no knob: one point.
"""

from __future__ import annotations

import itertools
import json
import zlib

import numpy as np

from rail_kd_jax import models
from rail_kd_jax.core import defaults
from rail_kd_jax.core.checks import model_folder
from rail_kd_jax.core.errors import ConfigError
from rail_kd_jax.distill import methods as methods_lib
from rail_kd_jax.experiments import stages
from rail_kd_jax.training import builders, teacher_cache

GRIDS = ("default", "runlocal")
TASKS = ("rotten_tomatoes", "tweets", "glue", "local")
# Knob values in point names: short forms.
_SHORT = {
  "temperature": "T",
  "int_weight": "w",
  "kd_alpha": "a",
  "pkd_beta": "b",
  "pooling": "",
  "map_init": "",
  "pkd_mapping": "",
}


def _fmt(v) -> str:
  return f"{v:.3g}" if isinstance(v, float) else str(v)


def point_name(point: dict, knobs: tuple = ()) -> str:
  """A short folder-safe name: 'paper' for the preset, else its knob values ('T4_w1_cls_identity_step20')."""
  if point.get("_name"):
    return point["_name"]
  if not point:
    return "default"
  parts = []
  for k, v in point.items():
    if k.startswith("_") or (knobs and k not in knobs):
      continue
    if k == "resample_every_steps":
      continue
    if k == "resample_every":
      every = int(point.get("resample_every_steps", 0))
      parts.append(f"step{every}" if every else str(v))
      continue
    parts.append(f"{_SHORT.get(k, k)}{_fmt(v)}")
  return "_".join(parts).replace("/", "-") or "default"


def _knob_fields(knob) -> set:
  fields = set()
  for v in knob.values:
    fields |= set(v) if isinstance(v, dict) else {knob.name}
  return fields


def draw_points(method: str, k: int, seed: int) -> list[dict]:
  """`k` points of `method`'s design space: its preset, then k-1 drawn combinations (module doc).

  Each point is {distill field: value} plus '_name' (its folder name); `none` gets [{}]."""
  row = methods_lib.get_method(method)
  if not row.space:
    return [{}]
  preset = dict(row.preset)
  points = [dict(preset, _name="paper")]
  combos = list(itertools.product(*[range(len(knob.values)) for knob in row.space]))
  rng = np.random.default_rng([int(seed), zlib.crc32(method.encode())])
  fields = set().union(*[_knob_fields(knob) for knob in row.space])
  for i in rng.permutation(len(combos)):
    if len(points) >= k:
      break
    point, chosen = dict(preset), {}
    for knob, j in zip(row.space, combos[i]):
      v = knob.values[j]
      chosen.update(v if isinstance(v, dict) else {knob.name: v})
    point.update(chosen)
    if any(all(p.get(f) == point.get(f) for f in fields | set(preset)) for p in points):
      continue  # the preset itself, drawn again
    point["_name"] = point_name(chosen)
    points.append(point)
  return points


def _check_point(m: str, p: dict, fields) -> None:
  for k, v in p.items():
    if k.startswith("_"):
      continue
    if k not in fields or k in ("method", "cache_teacher", "cache_dtype", "preset"):
      raise ConfigError(
        f"study.grid[{m!r}] point {p} sets {k!r}, which is not a distill field the grid "
        f"may set (see distill_config in rail_kd_jax/core/defaults.py)"
      )
    want = type(fields[k])
    ok = (isinstance(v, (int, float)) and not isinstance(v, bool)) if want in (int, float) else isinstance(v, want)
    if not ok:
      raise ConfigError(
        f"study.grid[{m!r}] point {p}: {k}={v!r} must be a {want.__name__} like the field's default {fields[k]!r}"
      )


def grid_for(config) -> dict[str, list[dict]]:
  """{method: [point, ...]} for `study.methods` from `study.grid`: 'default' (draw_points with
  study.grid_points and study.grid_seed), 'runlocal' (the same; tests), or a JSON object
  {method: [{field: value}, ...]} (methods it leaves out get their drawn points). Every method
  with a design space must end with the same number of points; ConfigError otherwise."""
  s = config.study
  spec = str(s.grid).strip()
  k = int(s.grid_points)
  drawn = lambda m: draw_points(m, k, int(s.grid_seed))
  if spec in GRIDS:
    grid = {m: drawn(m) for m in s.methods}
  else:
    try:
      given = json.loads(spec)
    except json.JSONDecodeError as e:
      raise ConfigError(
        f"study.grid is neither one of {', '.join(GRIDS)} nor a JSON object "
        f"{{method: [{{field: value}}, ...]}} ({e.msg} at character {e.pos})"
      ) from None
    if not isinstance(given, dict):
      raise ConfigError("study.grid must be a JSON object {method: [{field: value}, ...]}")
    extra = sorted(set(given) - set(s.methods))
    if extra:
      raise ConfigError(f"study.grid names {extra}, which are not in study.methods={list(s.methods)}")
    grid = {}
    for m in s.methods:
      pts = given.get(m)
      if pts is None:
        grid[m] = drawn(m)
        continue
      if not isinstance(pts, list) or not pts or not all(isinstance(p, dict) for p in pts):
        raise ConfigError(f"study.grid[{m!r}] must be a non-empty list of {{field: value}} objects, got {pts!r}")
      grid[m] = [dict(p) for p in pts]
  fields = defaults.distill_config()
  for m, pts in grid.items():
    for p in pts:
      _check_point(m, p, fields)
      p.setdefault("_name", point_name(p))
    names = [p["_name"] for p in pts]
    if len(set(names)) != len(names):
      raise ConfigError(f"study.grid[{m!r}] repeats a point: {names}")
  sizes = {m: len(p) for m, p in grid.items() if methods_lib.get_method(m).space}
  if len(set(sizes.values())) > 1:
    raise ConfigError(
      f"study.grid gives the methods unequal numbers of points {sizes}; every method with a design space "
      "gets the same number (equal freedom, docs/STUDY.md)"
    )
  return grid


def validate(config) -> None:
  """The study fields' own rules: ConfigError (one sentence) before anything runs."""
  s = config.study
  if not tuple(s.methods):
    raise ConfigError("study.methods is empty; give e.g. ('none', 'kd', 'pkd', 'alp_kd', 'ckd', 'rail_l')")
  for m in s.methods:
    if m not in methods_lib.METHODS:
      raise ConfigError(f"study.methods has {m!r}; valid: {', '.join(methods_lib.METHODS)}")
  if len(set(s.methods)) != len(tuple(s.methods)):
    raise ConfigError(f"study.methods repeats a method: {list(s.methods)}")
  seeds = [int(x) for x in s.seeds]
  tune = [int(x) for x in s.tune_seeds]
  for name, vals in (("seeds", seeds), ("tune_seeds", tune)):
    if not vals or len(set(vals)) != len(vals) or min(vals) < 0:
      raise ConfigError(f"study.{name}={vals} must be distinct integers >= 0, at least one")
  both = sorted(set(seeds) & set(tune))
  if both:
    raise ConfigError(
      f"study.tune_seeds={tune} and study.seeds={seeds} share {both}; a seed that selects a point is never "
      "reported (docs/STUDY.md), so keep them apart"
    )
  if int(s.grid_points) < 1:
    raise ConfigError(f"study.grid_points={s.grid_points} must be >= 1")
  if s.student_init not in stages.STUDENT_INITS:
    raise ConfigError(
      f"study.student_init={s.student_init!r} is not valid; choose one of: {', '.join(stages.STUDENT_INITS)}"
    )
  if not int(s.long_factor) >= 0:
    raise ConfigError(f"study.long_factor={s.long_factor} must be >= 0 (0 = no longer runs)")
  bad = [m for m in s.time_online if m not in s.methods]
  if bad:
    raise ConfigError(f"study.time_online names {bad}, which are not in study.methods={list(s.methods)}")
  for field in ("claims_for", "claim_baselines"):  # names missing from study.methods are skipped
    bad = [m for m in s[field] if m not in methods_lib.METHODS]
    if bad:
      raise ConfigError(f"study.{field} names {bad}, which are not methods; valid: {', '.join(methods_lib.METHODS)}")
  if not int(s.bootstrap_resamples) >= 100:
    raise ConfigError(f"study.bootstrap_resamples={s.bootstrap_resamples} must be >= 100")
  for stage in ("teacher", "student"):
    if not (int(s[f"{stage}_steps"]) > 0 or float(s[f"{stage}_epochs"]) > 0):
      raise ConfigError(f"study.{stage}_steps and study.{stage}_epochs are both 0: set one of them > 0")
    if not float(s[f"{stage}_learning_rate"]) > 0:
      raise ConfigError(f"study.{stage}_learning_rate={s[f'{stage}_learning_rate']!r} must be > 0")
  if s.task not in TASKS:
    raise ConfigError(f"study.task={s.task!r} is not valid; choose one of: {', '.join(TASKS)}")
  if s.task == "glue" and not s.glue_task:
    raise ConfigError("study.task='glue' needs study.glue_task (use the arg configs/study.py:glue/<task>)")
  if s.task == "glue" and not s.teacher_path:
    raise ConfigError(
      "study.task='glue' needs study.teacher_path: a BERT-base (12-layer) Hugging Face folder, "
      "e.g. --config.study.teacher_path=/models/bert-base-uncased"
    )
  if s.task == "local" and not s.local_dir:
    raise ConfigError("study.task='local' needs study.local_dir (use the arg configs/study.py:local/<folder>)")
  if not s.teacher_finetune and not s.teacher_path:
    raise ConfigError("study.teacher_finetune=False uses study.teacher_path as the teacher as it is; set teacher_path")


def stage_configs(config, files: dict, teacher_dir: str, init: dict, grid: dict, workdir: str, teacher_src: str):
  """({(method, point name, tune seed): (stage config, point)} of every tuning run, validated;
  make(method, point, seed, cached, steps_factor=1) for the other runs)."""
  s = config.study
  cache_dir = f"{workdir}/cache"

  def make(method: str, point: dict, seed: int, cached: bool, steps_factor: int = 1):
    c = stages.student_config(config, files, teacher_dir, init, method, section="study")
    c.seed = int(seed)
    c.data.cache_dir = cache_dir
    c.train.plots = bool(s.stage_plots)
    c.train.eval_predictions = tuple(sorted(set(files) - {"train", "dev"}))
    if steps_factor != 1:
      c.train.num_steps = int(c.train.num_steps) * int(steps_factor)
      c.train.num_epochs = float(c.train.num_epochs) * int(steps_factor)
    for k, v in point.items():
      if not k.startswith("_"):
        c.distill[k] = type(c.distill[k])(v) if not isinstance(c.distill[k], tuple) else tuple(v)
    c.distill.cache_teacher = bool(cached and methods_lib.get_method(method).needs_teacher)
    c.distill.cache_dtype = s.cache_dtype
    if c.distill.cache_teacher:
      try:
        teacher_cache.check_supported(c.distill)
      except ConfigError as e:
        raise ConfigError(
          f"study.methods has {method!r} at grid point {point_name(point)!r}, which the teacher cache cannot serve: {e}"
        ) from None
    return c

  try:
    tcfg = models.read_config(model_folder("study.teacher_path", teacher_src))
  except ConfigError:
    raise
  except (ValueError, FileNotFoundError, OSError) as e:
    raise ConfigError(f"study.teacher_path={teacher_src!r}: {e}") from None
  num_student_layers = len(tuple(s.student_layers))
  bad = [i for i in s.student_layers if not 0 <= int(i) < tcfg.num_hidden_layers]
  if not num_student_layers or bad or len(set(s.student_layers)) != num_student_layers:
    raise ConfigError(
      f"study.student_layers={tuple(s.student_layers)} must be distinct layer indices (0-based) "
      f"of the {tcfg.num_hidden_layers}-layer teacher checkpoint {teacher_src!r}"
    )
  out = {}
  for m, pts in grid.items():
    for p in pts:
      for seed in s.tune_seeds:
        out[(m, p["_name"], int(seed))] = (make(m, p, seed, bool(s.cache_teacher)), p)
  for key, (c, _) in out.items():
    # The teacher and the student's start do not exist yet: check the rest against the source.
    v = c.copy_and_resolve_references()
    v.teacher.path = teacher_src
    if v.student.init == "pretrained":
      v.student.path = teacher_src
    try:
      builders.check_config(
        v,
        num_student_layers=num_student_layers,
        num_teacher_layers=tcfg.num_hidden_layers,
        student_dim=tcfg.hidden_size,
        teacher_dim=tcfg.hidden_size,
      )
    except ConfigError as e:
      raise ConfigError(f"study grid point {key[0]}/{key[1]}: {e}") from None
  return out, make
