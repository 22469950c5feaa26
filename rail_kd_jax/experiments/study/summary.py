"""The study's JSON object: each method's summary over seeds, the grid, the claims, the longer runs, time.

`summarise` gathers the runs' facts (`run.run_facts`) into what study.json holds and study.md,
study.csv and study.png show (`report`): per method the selected point and mean, sample std
and t interval over the reported seeds, the seed-level differences and the claims
(`claims`), the tuning grid, the longer runs, the teacher cache and the machine.
"""

from __future__ import annotations

import json
import os
import platform

import flax
import jax
import numpy as np

from rail_kd_jax.experiments import stages
from rail_kd_jax.experiments.study import claims as claims_lib
from rail_kd_jax.outputs import stats

SPLITS = ("dev", "test", "ood")
ROW_NAMES = dict(stages.ROW_NAMES, none="no KD (CE only)")


def _public(point: dict) -> dict:
  return {k: v for k, v in point.items() if not k.startswith("_")}


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


def _row(m: str, sel: dict, runs: list[dict], seeds: list[int], online: dict) -> dict:
  row = {
    "method": m,
    "label": ROW_NAMES.get(m, m),
    "selected": sel["name"],
    "selected_point": _public(sel["point"]),
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
    total = np.sum(counts, axis=0)  # [slots, N+1] summed over seeds
    row["mapping_counts"] = total.tolist()
    row["teacher_layer_use"] = total.sum(axis=0)[1:].tolist()
  if m in online:
    row["online"] = {k: online[m].get(k) for k in ("train_seconds", "step_ms", "dev", "test", "ood")}
  return row


def _longer(per_seed: dict, longer: dict, seed: int) -> dict:
  """The longer runs beside the same seed's reported run, and whether the order by test holds."""
  if not longer:
    return {}
  rows = {}
  for m, f in longer.items():
    base = per_seed[m][seed]
    rows[m] = {
      "steps": f["steps"],
      "base_steps": base["steps"],
      **{f"{split}": f.get(split) for split in SPLITS},
      **{f"base_{split}": base.get(split) for split in SPLITS},
      "train_seconds": f["train_seconds"],
    }
  out = {"seed": seed, "methods": rows}
  for split in ("test", "ood"):
    ms = [m for m in rows if rows[m].get(split) is not None and rows[m].get(f"base_{split}") is not None]
    if len(ms) >= 3:
      from scipy import stats as scipy_stats  # pylint: disable=g-import-not-at-top

      tau = scipy_stats.kendalltau([rows[m][f"base_{split}"] for m in ms], [rows[m][split] for m in ms])
      out[f"kendall_tau_{split}"] = float(tau.statistic)
      out[f"order_base_{split}"] = sorted(ms, key=lambda m: -rows[m][f"base_{split}"])
      out[f"order_long_{split}"] = sorted(ms, key=lambda m: -rows[m][split])
  return out


def summarise(
  config, grid, tuning, selected, per_seed, longer, online, teacher, teacher_facts, data, clusters, workdir
) -> dict:
  """The study's JSON object (module doc)."""
  s = config.study
  seeds = [int(x) for x in s.seeds]
  methods = list(grid)
  rows = {m: _row(m, selected[m], [per_seed[m][x] for x in seeds], seeds, online) for m in methods}
  diffs = claims_lib.differences(config, per_seed, methods)
  caches = _cache_meta(workdir)
  cache = {"builds": caches, "seconds": sum(float(c.get("seconds", 0.0)) for c in caches)}
  if online and s.cache_teacher:
    saved = {m: online[m]["train_seconds"] - per_seed[m][seeds[0]]["train_seconds"] for m in online}
    cache["online_minus_cached_seconds"] = saved
  teacher_row = {k: teacher.get(k) for k in ("eval", "train_seconds", "steps", "layers", "params")}
  if teacher_facts:
    teacher_row.update({split: teacher_facts.get(split) for split in SPLITS})
  runs = [
    dict(_strip(per_seed[m][x]), method=m, seed=x, point=selected[m]["name"], kind="run")
    for m in methods
    for x in seeds
  ]
  return {
    "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items()},
    "data": data.info,
    "ood_classes": list(data.ood_classes),
    "clusters": {k: (None if v is None else int(len(np.unique(v)))) for k, v in clusters.items()},
    "teacher": teacher_row,
    "grid": {
      m: [
        {
          "name": p["name"],
          "point": _public(p["point"]),
          "dev": p["dev"],
          "dev_by_seed": {str(t): f["dev"] for t, f in p["runs"].items()},
          "test": float(np.mean([f.get("test", np.nan) for f in p["runs"].values()])),
          "ood": float(np.mean([f.get("ood", np.nan) for f in p["runs"].values()])),
          "train_seconds": float(np.mean([f["train_seconds"] for f in p["runs"].values()])),
          "selected": p["name"] == selected[m]["name"],
        }
        for p in tuning[m]
      ]
      for m in methods
    },
    "methods": rows,
    "differences": diffs,
    "interval": s.interval,
    "claims": claims_lib.claims(config, per_seed, clusters),
    "longer": _longer(per_seed, longer, seeds[0]),
    "runs": runs,
    "online": {m: _strip(f) for m, f in online.items()},
    "cache": cache,
    "machine": machine_info(),
  }


def _strip(facts: dict) -> dict:
  """A run's facts without its per-example arrays (those go to study_predictions.npz)."""
  return {k: v for k, v in facts.items() if k not in ("predictions", "labels")}


def machine_info() -> dict:
  """The CPU, cores, JAX backend and devices, versions and load average, for study.md's time section."""
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
