"""The study's runs: teacher, grid at the tuning seeds, reported seeds, longer runs; their facts.

Folders of the workdir (docs/STUDY.md):

  data/, ood/            the task's files (study.data)
  student_init/          the student's starting weights (the same for every run)
  teacher/               the fine-tuned teacher (once)
  cache/                 the teacher cache, built by the first cached run, read by the others
  tune/<m>/<point>/seed_<t>/   the grid of method m at each tuning seed; selected on dev
  runs/<m>/seed_<s>/     the selected point at each reported seed (never a tuning seed)
  long/<m>/seed_<s>/     the selected point at study.long_factor x the steps, first reported seed
  online/<m>/            optional (study.time_online): the selected point without the cache

A finished run (its stage_result.json records the same settings) is reused, so a killed study
continues where it stopped.
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
from absl import logging

from rail_kd_jax import models
from rail_kd_jax.core import files as files_lib
from rail_kd_jax.data import tokenize
from rail_kd_jax.distill import diagnostics
from rail_kd_jax.experiments import stages
from rail_kd_jax.experiments.study import data as data_lib
from rail_kd_jax.experiments.study import plan as plan_lib
from rail_kd_jax.experiments.study import report, summary
from rail_kd_jax.outputs import writers


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


def run_facts(result: dict, data: data_lib.StudyData | None = None) -> dict:
  """What the report needs from one finished stage: accuracies (dev from the run's own eval;
  test and ood from its per-example predictions, by the task's rule), the per-example
  predictions, time, diagnostics and RAIL-KD's mapping counts."""
  wd = result["workdir"]
  records = writers.read_metrics(wd)
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
    "predictions": {},
  }
  ev = result.get("eval") or {"dev": {"accuracy": result["dev_accuracy"]}, "test": {"accuracy": result["accuracy"]}}
  for split in summary.SPLITS:
    if split in ev and "accuracy" in ev[split]:
      facts[split] = float(ev[split]["accuracy"])
  for split in ("test", "ood"):
    path = os.path.join(wd, "eval_predictions", f"{split}.npz")
    if not os.path.isfile(path):
      continue
    with np.load(path) as z:
      logits, labels = z["logits"], z["labels"]
    classes = data.ood_classes if (data is not None and split == "ood") else ()
    pred = data_lib.predictions(logits, classes)
    facts["predictions"][split] = pred
    facts.setdefault("labels", {})[split] = np.asarray(labels)
    facts[split] = float(np.mean(pred == labels))
  mc = os.path.join(wd, "mapping_counts.json")
  if os.path.isfile(mc):
    with open(mc) as f:
      facts["mapping_counts"] = json.load(f)["counts"]
  return facts


def _make_tiny_pretrained(workdir: str, tokenizer_src: str) -> str:
  """study.teacher_path='tiny' (tests): a random 4-layer, 32-wide BERT with `tokenizer_src`'s
  vocabulary, saved as an HF folder; it then plays the pre-trained checkpoint."""
  import jax  # pylint: disable=g-import-not-at-top

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


def _clusters(data: data_lib.StudyData, facts: dict) -> dict:
  """{split: int cluster ids [E] or None} for the splits with per-example predictions."""
  out = {}
  for split, pred in facts["predictions"].items():
    column = data.clusters.get(split)
    out[split] = data_lib.cluster_ids(data.files[split], column, len(pred)) if column else None
  return out


def run_study(config, workdir: str) -> dict:
  """Runs configs/study.py under `workdir`; returns the study's JSON object."""
  plan_lib.validate(config)
  config = config.copy_and_resolve_references()
  s = config.study
  t_start = time.perf_counter()
  os.makedirs(workdir, exist_ok=True)
  reuse = bool(s.reuse)
  grid = plan_lib.grid_for(config)
  data = data_lib.prepare(config, workdir)
  for k, v in data.data_fields.items():  # every stage reads the task's files as a local task
    config.data[k] = v
  teacher_src = s.teacher_path or stages.default_teacher_path()
  if teacher_src == "tiny":
    teacher_src = _make_tiny_pretrained(workdir, stages.default_teacher_path())
  files = data.files
  data_key = stages.fingerprint({k: [os.path.abspath(v), files_lib.sha256(v)] for k, v in files.items()})

  # Every point's config is built and validated before anything trains.
  layers = tuple(int(x) for x in s.student_layers)
  init = (
    {"init": "pretrained", "path": os.path.join(workdir, "student_init")}
    if s.student_init == "pretrained"
    else {"init": "teacher_layers", "teacher_layers": layers}
  )
  teacher_dir = os.path.join(workdir, "teacher") if s.teacher_finetune else os.path.abspath(teacher_src)
  plan, make = plan_lib.stage_configs(config, files, teacher_dir, init, grid, workdir, teacher_src)
  seeds = [int(x) for x in s.seeds]
  methods = list(grid)
  long_factor = int(s.long_factor)
  total = (
    int(bool(s.teacher_finetune))
    + len(plan)
    + len(methods) * len(seeds)
    + (len(methods) if long_factor > 1 else 0)
    + len(tuple(s.time_online))
  )
  progress = _Progress(total)
  done = []
  if s.teacher_finetune:
    progress.start("teacher")
    t_cfg = stages.teacher_config(config, files, teacher_src, section="study")
    t_cfg.train.eval_predictions = tuple(sorted(set(files) - {"train", "dev"}))
    teacher = stages.run_stage("teacher", "finetune", t_cfg, workdir, reuse, depends_on=data_key)
    progress.finish(teacher)
    done.append(teacher)
  else:
    teacher = {"run_id": stages.fingerprint(teacher_dir, data_key), "workdir": teacher_dir, "eval": None}
  if s.student_init == "pretrained":
    stages.prepare_student_init(config, workdir, teacher_src)
  depends = stages.fingerprint(teacher["run_id"], list(layers), init)

  def run(name: str, method: str, cfg) -> dict:
    progress.start(name)
    result = stages.run_stage(name, method, cfg, workdir, reuse, depends_on=depends)
    progress.finish(result)
    done.append(result)
    return run_facts(result, data)

  tuning: dict[str, list[dict]] = {}
  for (m, pname, tseed), (cfg, point) in plan.items():
    facts = run(f"tune/{m}/{pname}/seed_{tseed}", m, cfg)
    pts = tuning.setdefault(m, [])
    if not pts or pts[-1]["name"] != pname:
      pts.append({"point": point, "name": pname, "runs": {}})
    pts[-1]["runs"][tseed] = facts
  for pts in tuning.values():
    for p in pts:
      p["dev"] = float(np.mean([f["dev"] for f in p["runs"].values()]))
  # Selection by the mean dev accuracy over the tuning seeds only (ties: the earlier point).
  selected = {m: pts[max(range(len(pts)), key=lambda i: (pts[i]["dev"], -i))] for m, pts in tuning.items()}

  per_seed = {m: {} for m in methods}
  for m in methods:
    for seed in seeds:
      per_seed[m][seed] = run(f"runs/{m}/seed_{seed}", m, make(m, selected[m]["point"], seed, bool(s.cache_teacher)))
  longer = {}
  if long_factor > 1:
    for m in methods:
      cfg = make(m, selected[m]["point"], seeds[0], bool(s.cache_teacher), steps_factor=long_factor)
      longer[m] = run(f"long/{m}/seed_{seeds[0]}", m, cfg)
  online = {}
  for m in s.time_online:
    online[m] = run(f"online/{m}", m, make(m, selected[m]["point"], seeds[0], cached=False))

  any_run = next(iter(per_seed[methods[0]].values()))
  clusters = _clusters(data, any_run)
  teacher_facts = run_facts(teacher, data) if s.teacher_finetune else None
  study = summary.summarise(
    config, grid, tuning, selected, per_seed, longer, online, teacher, teacher_facts, data, clusters, workdir
  )
  study["wall_seconds"] = time.perf_counter() - t_start  # this invocation (finished runs reused)
  # What the study costs from scratch: every run's own wall time (a reused run's as recorded
  # when it was trained; the cache build is inside the first cached run's).
  study["runs_seconds"] = float(sum(float(r.get("stage_seconds", 0.0)) for r in done))
  study["runs_total"], study["runs_trained"] = total, progress.trained
  report.write_outputs(study, workdir, tuning, per_seed, longer, clusters, plots=bool(config.train.plots))
  logging.info("study finished in %.0f s; results in %s", study["wall_seconds"], os.path.join(workdir, "study.md"))
  return study
