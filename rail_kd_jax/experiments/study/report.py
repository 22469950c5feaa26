"""The study's outputs: study.md / .json / .csv / .png / _predictions.npz from the study's JSON object.

`to_markdown` writes every table of study.md from what `summary.summarise` returns (the
verdicts of the claims first, `claims`), `write_csv` one row per run, `write_predictions`
every run's per-example predictions, and `write_outputs` all of them into the workdir.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np

from rail_kd_jax.core import files
from rail_kd_jax.distill import diagnostics
from rail_kd_jax.experiments.study.claims import ALPHA, REFERENCES
from rail_kd_jax.experiments.study.summary import ROW_NAMES, SPLITS
from rail_kd_jax.outputs import plots as plots_lib
from rail_kd_jax.outputs import stats


# ---------------------------------------------------------------------------- Markdown
def _pct(x) -> str:
  return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.2f}"


def _ms(summary: dict | None) -> str:
  if not summary:
    return "-"
  return stats.format_mean_std(summary["mean"], summary["std"], scale=100)


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
    cells.append(stats.format_mean_std(r["train_seconds"]["mean"], r["train_seconds"]["std"], digits=1))
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
