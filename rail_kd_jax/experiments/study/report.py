"""The study's answer: summaries, claims with per-example statistics and Holm, the outputs.

study.md / .json / .csv / .png / _predictions.npz.

A claim is "RAIL-KD variant r beats baseline b on split x" for r in `study.claims_for`, b in
`study.claim_baselines` and x in test / ood. Its statistic is `stats.clustered_bootstrap`
over the reported seeds and the split's examples together (examples resampled in clusters
where the task has them: movies for Rotten Tomatoes), with the paired t over seeds beside it.
The bootstrap p-values of all claims of a study form one family, Holm-corrected
(`stats.holm`). Verdict at level 0.05 after correction: "holds" (r better), "does not hold"
(b better), "not separated".
"""

from __future__ import annotations

import csv
import json
import os
import platform

import flax
import jax
import numpy as np

from rail_kd_jax.core import files
from rail_kd_jax.distill import diagnostics
from rail_kd_jax.experiments import stages
from rail_kd_jax.outputs import plots as plots_lib
from rail_kd_jax.outputs import stats

SPLITS = ("dev", "test", "ood")
REFERENCES = ("kd", "rail_l")  # the paired (seed-level) differences are taken against these
ROW_NAMES = dict(stages.ROW_NAMES, none="no KD (CE only)")
ALPHA = 0.05


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


def _scores(per_seed: dict, m: str, seeds: list[int], split: str) -> np.ndarray | None:
  """float [S, E]: 1 where the run of (m, seed) got example e of `split` right."""
  rows = []
  for x in seeds:
    f = per_seed[m][x]
    if split not in f.get("predictions", {}):
      return None
    rows.append((f["predictions"][split] == f["labels"][split]).astype(np.float64))
  return np.stack(rows)


def claims(config, per_seed: dict, clusters: dict) -> list[dict]:
  """Every claim of the family (module doc) with its bootstrap, paired t, Holm p and verdict."""
  s = config.study
  seeds = [int(x) for x in s.seeds]
  out = []
  for r in s.claims_for:
    for b in s.claim_baselines:
      if b not in per_seed or r not in per_seed or b == r:
        continue
      for split in ("test", "ood"):
        a, z = _scores(per_seed, r, seeds, split), _scores(per_seed, b, seeds, split)
        if a is None or z is None:
          continue
        boot = stats.clustered_bootstrap(
          a, z, clusters.get(split), resamples=int(s.bootstrap_resamples), seed=int(s.bootstrap_seed)
        )
        t = stats.paired_difference(a.mean(axis=1), z.mean(axis=1), method="t")
        out.append(
          {
            "claim": f"{r} beats {b} ({split})",
            "rail": r,
            "baseline": b,
            "split": split,
            "bootstrap": {k: v for k, v in boot.items() if k != "per_seed"},
            "t": {k: t[k] for k in ("mean", "low", "high", "p_value", "wins", "losses", "n")},
          }
        )
  adjusted = stats.holm([c["bootstrap"]["p_value"] for c in out]) if out else []
  for c, p in zip(out, adjusted):
    c["p_holm"] = p
    if p < ALPHA:
      c["verdict"] = "holds" if c["bootstrap"]["mean"] > 0 else "does not hold"
    else:
      c["verdict"] = "not separated"
  return out


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
  diffs = {}
  for ref in REFERENCES:
    if ref not in rows:
      continue
    for m in methods:
      if m == ref:
        continue
      for field in ("test", "ood", "train_seconds"):
        a = [per_seed[m][x].get(field) for x in seeds]
        b = [per_seed[ref][x].get(field) for x in seeds]
        if all(v is not None for v in a + b):
          diffs[f"{m}-{ref}/{field}"] = stats.paired_difference(a, b, method=s.interval)
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
    "claims": claims(config, per_seed, clusters),
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


# ---------------------------------------------------------------------------- Markdown
def _pct(x) -> str:
  return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.2f}"


def _ms(summary: dict | None) -> str:
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


def _p(p) -> str:
  if p is None:
    return "-"
  return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def _claim_cell(c: dict | None) -> str:
  if not c:
    return "-"
  b = c["bootstrap"]
  return (
    f"{100 * b['mean']:+.2f} [{100 * b['low']:+.2f}, {100 * b['high']:+.2f}], p_Holm {_p(c['p_holm'])}: {c['verdict']}"
  )


def headline(study: dict, ref: str = "rail_l") -> str:
  """Per method: test and OOD accuracy (mean ± std over seeds) and `ref` minus the method with
  its two-level bootstrap interval, Holm-corrected p and verdict."""
  rows = study["methods"]
  has_ood = any("ood" in r for r in rows.values())
  by = {(c["baseline"], c["split"]): c for c in study["claims"] if c["rail"] == ref}
  head = [
    "method",
    "test %",
    "OOD %" if has_ood else None,
    f"{ref} − method, test",
    f"{ref} − method, OOD" if has_ood else None,
  ]
  head = [h for h in head if h]
  out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for m, r in rows.items():
    cells = [r["label"], _ms(r.get("test"))]
    if has_ood:
      cells.append(_ms(r.get("ood")))
    for split in ("test", "ood") if has_ood else ("test",):
      cells.append("—" if m == ref else _claim_cell(by.get((m, split))))
    out.append("| " + " | ".join(cells) + " |")
  return "\n".join(out)


def _verdicts(study: dict) -> list[str]:
  cl = study["claims"]
  if not cl:
    return []
  b0 = cl[0]["bootstrap"]
  out = [
    "",
    f"## Verdict: {len(cl)} claims, Holm-corrected at {ALPHA}",
    "",
    f"RAIL-KD minus the baseline, points of accuracy: the mean over the {b0['n_seeds']} reported seeds; the 95% "
    f"interval and p from a two-level bootstrap ({b0['resamples']:,} resamplings of the seeds and of the test "
    "examples together, in clusters where the task has them); the paired t over seeds beside it.",
    "",
    "| claim | difference [95% bootstrap] | p | p Holm | paired t over seeds [95%] (wins) | verdict |",
    "|---|---|---|---|---|---|",
  ]
  for c in cl:
    b, t = c["bootstrap"], c["t"]
    clusters = f", {b['n_clusters']} clusters" if b["n_clusters"] != b["n_examples"] else ""
    out.append(
      f"| {c['claim']} ({b['n_examples']} examples{clusters}) | {100 * b['mean']:+.2f} [{100 * b['low']:+.2f}, "
      f"{100 * b['high']:+.2f}] | {_p(b['p_value'])} | {_p(c['p_holm'])} | {100 * t['mean']:+.2f} "
      f"[{100 * t['low']:+.2f}, {100 * t['high']:+.2f}] ({t['wins']}/{t['n']}) | **{c['verdict']}** |"
    )
  return out


def _accuracy_tables(study: dict) -> list[str]:
  rows, methods = study["methods"], list(study["methods"])
  seeds = study["config"]["seeds"]
  has_ood = any("ood" in r for r in rows.values())
  out = ["", f"## Accuracy (%), mean ± std over the reported seeds {seeds}", ""]
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
    vals = [" / ".join(_pct(r[sp]["values"][i]) if sp in r else "-" for sp in SPLITS) for i in range(len(seeds))]
    out.append(f"| {r['label']} | " + " | ".join(vals) + " |")
  return out


def _difference_tables(study: dict) -> list[str]:
  rows, diffs = study["methods"], study["differences"]
  conf = "paired t" if study["interval"] == "t" else "paired percentile bootstrap over seeds"
  out = []
  for ref in REFERENCES:
    if ref not in rows:
      continue
    out += [
      "",
      f"## Paired difference to {ROW_NAMES.get(ref, ref)} (method − {ref}) over seeds: mean [95% interval] "
      f"(wins/seeds), {conf}",
      "",
      "| method | test (points) | OOD (points) | train seconds |",
      "|---|---|---|---|",
    ]
    for m in rows:
      if m != ref:
        out.append(
          f"| {rows[m]['label']} | {_diff(diffs.get(f'{m}-{ref}/test'))} | {_diff(diffs.get(f'{m}-{ref}/ood'))} | "
          f"{_seconds(diffs.get(f'{m}-{ref}/train_seconds'))} |"
        )
  return out


def _grid_table(study: dict) -> list[str]:
  tune = study["config"]["tune_seeds"]
  out = [
    "",
    f"## Tuning grid (tuning seeds {tune}, never reported; selection by mean dev accuracy only)",
    "",
    "| method | point | dev | test | OOD | train s | selected |",
    "|---|---|---|---|---|---|---|",
  ]
  for m, pts in study["grid"].items():
    for p in pts:
      out.append(
        f"| {m} | {p['name']} `{json.dumps(p['point'])}` | {_pct(p['dev'])} | {_pct(p['test'])} | "
        f"{_pct(p['ood'])} | {p['train_seconds']:.1f} | {'**yes**' if p['selected'] else ''} |"
      )
  return out


def _longer_table(study: dict) -> list[str]:
  lg = study.get("longer") or {}
  if not lg:
    return []
  rows = lg["methods"]
  any_row = next(iter(rows.values()))
  out = [
    "",
    f"## Longer training: the selected point at {any_row['steps']} steps against {any_row['base_steps']} "
    f"(seed {lg['seed']})",
    "",
    "| method | dev | test | OOD | dev long | test long | OOD long |",
    "|---|---|---|---|---|---|---|",
  ]
  for m, r in rows.items():
    out.append(
      f"| {m} | {_pct(r['base_dev'])} | {_pct(r['base_test'])} | {_pct(r['base_ood'])} | {_pct(r['dev'])} | "
      f"{_pct(r['test'])} | {_pct(r['ood'])} |"
    )
  for split in ("test", "ood"):
    if f"kendall_tau_{split}" in lg:
      out += [
        "",
        f"Order by {split}: {' > '.join(lg[f'order_base_{split}'])} at {any_row['base_steps']} steps; "
        f"{' > '.join(lg[f'order_long_{split}'])} at {any_row['steps']} (Kendall tau {lg[f'kendall_tau_{split}']:+.2f}).",
      ]
  return out


def _diagnostics(study: dict) -> list[str]:
  rows = study["methods"]
  diag_rows = [m for m in rows if rows[m]["diagnostics"]]
  out = []
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
  maps = [m for m in rows if "teacher_layer_use" in rows[m]]
  if maps:
    out += [
      "",
      "## RAIL-KD mapping counts (steps each teacher layer was paired with a student layer, summed over seeds)",
      "",
    ]
    for m in maps:
      out.append(f"- {m}: " + ", ".join(f"layer {i + 1}: {int(v)}" for i, v in enumerate(rows[m]["teacher_layer_use"])))
  return out


def _time(study: dict) -> list[str]:
  cache, online = study["cache"], study["online"]
  out = ["", "## Time", ""]
  if cache["builds"]:
    out.append(
      f"Teacher cache: built {len(cache['builds'])} time(s), {cache['seconds']:.1f} s "
      f"({cache['builds'][0].get('examples')} train examples); every cached run read it."
    )
  if online:
    out += ["", "| method | train s online | step ms online | test online |", "|---|---|---|---|"]
    for m, o in online.items():
      out.append(f"| {m} | {o['train_seconds']:.1f} | {o['step_ms'] or float('nan'):.1f} | {_pct(o.get('test'))} |")
  mi = study["machine"]
  out += [
    "",
    f"Machine: {mi['cpu']} ({mi['cores']} cores), backend {mi['backend']}, jax {mi['jax']}, flax "
    f"{mi['flax']}; load average at the end {mi['load_average_at_end']}. Wall time of this invocation "
    f"{study.get('wall_seconds', float('nan')) / 60:.1f} min ({study.get('runs_trained', '?')} of "
    f"{study.get('runs_total', '?')} runs trained, the rest reused); the runs' own wall times sum to "
    f"{study.get('runs_seconds', float('nan')) / 60:.1f} min (the study from scratch, cache build included).",
    "",
  ]
  if study.get("predictions_sha256"):
    out[-1:] = [f"Per-example predictions: study_predictions.npz, sha256 {study['predictions_sha256']}.", ""]
  return out


def to_markdown(study: dict) -> str:
  d, t = study["data"], study["teacher"]
  out = ["# Study: RAIL-KD against KD, PKD, ALP-KD and CKD", ""]
  out.append(
    f"Task: {d.get('task', '')}. "
    + (f"Out-of-domain: {d['ood']['name']}." if "ood" in d else "No out-of-domain split.")
  )
  if t.get("test") is not None:
    out.append(
      f"Teacher ({t.get('layers')} layers): dev {_pct(t.get('dev'))}%, test {_pct(t.get('test'))}%"
      + (f", OOD {_pct(t.get('ood'))}%" if t.get("ood") is not None else "")
      + "."
    )
  out += _verdicts(study)
  for ref in [r for r in study["config"]["claims_for"] if r in study["methods"]]:
    out += ["", f"## Headline: {ref} minus each method (two-level bootstrap, Holm)", "", headline(study, ref)]
  out += _accuracy_tables(study)
  out += _difference_tables(study)
  out += _grid_table(study)
  out += _longer_table(study)
  out += _diagnostics(study)
  out += _time(study)
  return "\n".join(out)


# ---------------------------------------------------------------------------- files
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
        for seed, dev in p["dev_by_seed"].items():
          w.writerow(
            ["tune", m, p["name"], seed, dev, p["test"], p["ood"], p["train_seconds"], ""]
            + [""] * len(diagnostics.ALL_NAMES)
          )
    for m, r in (study.get("longer") or {}).get("methods", {}).items():
      w.writerow(
        ["long", m, "", study["longer"]["seed"], r["dev"], r["test"], r["ood"], r["train_seconds"], ""]
        + [""] * len(diagnostics.ALL_NAMES)
      )


def write_predictions(path: str, tuning: dict, per_seed: dict, longer: dict, clusters: dict) -> str:
  """study_predictions.npz: every run's predicted class per test / ood example (int16), the
  labels and the clusters; returns its sha256."""
  arrays = {}

  def add(name: str, facts: dict):
    for split, pred in facts.get("predictions", {}).items():
      arrays[f"{name}/{split}"] = np.asarray(pred, np.int16)
      arrays.setdefault(f"labels/{split}", np.asarray(facts["labels"][split], np.int16))

  for m, pts in tuning.items():
    for p in pts:
      for t, f in p["runs"].items():
        add(f"tune/{m}/{p['name']}/seed_{t}", f)
  for m, runs in per_seed.items():
    for x, f in runs.items():
      add(f"runs/{m}/seed_{x}", f)
  for m, f in longer.items():
    add(f"long/{m}", f)
  for split, ids in clusters.items():
    if ids is not None:
      arrays[f"clusters/{split}"] = np.asarray(ids, np.int32)
  tmp = path + ".tmp.npz"
  np.savez_compressed(tmp, **arrays)
  os.replace(tmp, path)
  return files.sha256(path)


def write_outputs(
  study: dict, workdir: str, tuning: dict, per_seed: dict, longer: dict, clusters: dict, plots: bool = True
):
  study["predictions_sha256"] = write_predictions(
    os.path.join(workdir, "study_predictions.npz"), tuning, per_seed, longer, clusters
  )
  md = to_markdown(study)
  with open(os.path.join(workdir, "study.md"), "w") as f:
    f.write(md)
  files.write_json(os.path.join(workdir, "study.json"), study)
  write_csv(study, os.path.join(workdir, "study.csv"))
  if plots:
    plots_lib.write_study_chart(study, os.path.join(workdir, "study.png"))
  print(md, flush=True)
