r"""Methods x seeds sweeps and their results table (mean +/- std over seeds).

  # run (or, with --dry_run, print) one run per (method, seed), each in ROOT/<method>/seed_<s>
  python -m rail_kd_jax.sweep run --root=runs/sst2 \
      --config='configs/glue.py:sst2,{method},bert' --methods=kd,rail_l,rail_c --seeds=0,1,2,3,4 \
      -- --config.teacher.path=runs/sst2/teacher --config.student.path=/models/distilbert-base-uncased \
         --config.data.data_dir=/data/glue/SST-2
  # collect every run under ROOT into ROOT/results.md and ROOT/results.csv
  python -m rail_kd_jax.sweep collect --root=runs/sst2 [--select=final|best]

`{method}` in --config is replaced by each method; without it the method is passed
as --config.distill.method=<m>. Arguments after `--` go to every run. A run whose
metrics.jsonl already has its `summary` record is skipped (so a sweep can be
restarted); an unfinished one resumes from its checkpoint. `--launcher='srun -N1'`
prefixes each command (or use --dry_run and feed the lines to a scheduler).

`collect` reads each run's `config.json` and `metrics.jsonl` (any folder under ROOT
holding both), groups runs by their folder's path relative to ROOT without the last
component (ROOT/<method>/seed_<s> -> '<method>'), and reports for every eval split and
metric the mean and sample std (`stats.mean_std`) over the group's seeds of either the last
eval (`final`) or the eval at the step with the best main metric on the first eval
split (`best`, i.e. model selection on dev). Train seconds come from the `summary`
record. Metrics in [0, 1] (accuracy, f1, ...) are shown in percent.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import subprocess
import sys
from typing import Iterable, Sequence

from rail_kd_jax.distill.methods import METHODS
from rail_kd_jax.outputs import stats, task_metrics, writers

PERCENT_METRICS = ("accuracy", "f1", "macro_f1", "matthews_corr", "pearson", "spearmanr", "combined_score")
_NOT_METRICS = ("step", "split", "epoch")
PLACEHOLDER = "{method}"


# ---------------------------------------------------------------------------- run
def run_dir(root: str, method: str, seed: int) -> str:
  return os.path.join(root, method, f"seed_{seed}")


def build_commands(
  config: str,
  methods: Sequence[str],
  seeds: Sequence[int],
  root: str,
  extra: Sequence[str] = (),
  python: str = sys.executable,
  launcher: str = "",
) -> list[tuple[str, list[str]]]:
  """[(workdir, argv)] for every (method, seed), methods outer, seeds inner."""
  methods = list(methods) or ["run"]
  out = []
  for method in methods:
    for seed in seeds:
      wd = run_dir(root, method, seed)
      cfg = config.replace(PLACEHOLDER, method)
      argv = shlex.split(launcher) + [
        python,
        "-m",
        "rail_kd_jax.main",
        f"--config={cfg}",
        f"--workdir={wd}",
        f"--config.seed={seed}",
      ]
      if PLACEHOLDER not in config and method != "run":
        argv.append(f"--config.distill.method={method}")
      argv.extend(extra)
      out.append((wd, argv))
  return out


def is_finished(workdir: str) -> bool:
  return any(r.get("split") == "summary" for r in writers.read_metrics(workdir))


def run_sweep(commands: list[tuple[str, list[str]]], dry_run: bool = False, keep_going: bool = False) -> int:
  """Runs the commands one after the other; returns the number of failed runs."""
  failed = 0
  for i, (wd, argv) in enumerate(commands):
    line = shlex.join(argv)
    if dry_run:
      print(line)
      continue
    if is_finished(wd):
      print(f"[{i + 1}/{len(commands)}] done already: {wd}", flush=True)
      continue
    print(f"[{i + 1}/{len(commands)}] {line}", flush=True)
    rc = subprocess.call(argv)
    if rc:
      failed += 1
      print(f"[{i + 1}/{len(commands)}] FAILED (exit {rc}): {wd}", file=sys.stderr, flush=True)
      if not keep_going:
        break
  return failed


# ---------------------------------------------------------------------------- collect
def find_runs(root: str) -> list[str]:
  """Every folder under root (root included) holding config.json and metrics.jsonl, sorted."""
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if d not in ("checkpoints", "export", "tb", "predictions"))
    if "metrics.jsonl" in filenames and "config.json" in filenames:
      found.append(dirpath)
  return sorted(found)


def _is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def run_summary(workdir: str, select: str = "final") -> dict:
  """One run: {'seed', 'method', 'mode', 'task', 'finished', 'train_seconds', 'step', 'values':
  {'split/metric': v}} from its config.json and metrics.jsonl."""
  with open(os.path.join(workdir, "config.json")) as f:
    config = json.load(f)
  records = writers.read_metrics(workdir)
  mode = config.get("mode", "")
  method = config.get("distill", {}).get("method", "") if mode == "distill" else mode
  evals = [r for r in records if r.get("split") not in ("train", "summary")]
  splits = list(dict.fromkeys(r["split"] for r in evals))
  summary = [r for r in records if r.get("split") == "summary"]
  out = {
    "workdir": workdir,
    "seed": config.get("seed"),
    "method": method,
    "mode": mode,
    "task": config.get("data", {}).get("task", ""),
    "finished": bool(summary),
    "train_seconds": summary[-1].get("train_seconds") if summary else None,
    "step": None,
    "values": {},
  }
  if not splits:
    return out
  steps = sorted({r["step"] for r in evals})
  pick = steps[-1]
  if select == "best":
    first = [r for r in evals if r["split"] == splits[0]]
    metric = config.get("data", {}).get("main_metric") or next(
      (m for m in PERCENT_METRICS + ("mse",) if any(m in r for r in first)), None
    )
    scored = [r for r in first if _is_number(r.get(metric))]
    if scored:
      sign = -1 if task_metrics.lower_is_better(metric) else 1
      pick = max(scored, key=lambda r: (sign * r[metric], -r["step"]))["step"]
  elif select != "final":
    raise ValueError(f"--select={select!r} is not valid; choose final or best")
  out["step"] = pick
  for split in splits:
    at = [r for r in evals if r["split"] == split and r["step"] == pick]
    if not at:
      continue
    for k, v in at[-1].items():
      if k not in _NOT_METRICS and _is_number(v):
        out["values"][f"{split}/{k}"] = float(v)
  return out


def _group_name(root: str, workdir: str) -> str:
  rel = os.path.relpath(workdir, root)
  parent = os.path.dirname(rel)
  return parent if parent not in ("", ".") else rel


def collect(root: str, select: str = "final", include_loss: bool = False) -> tuple[list[str], list[dict]]:
  """Groups the runs under root; returns (metric columns, rows) where each row has 'group',
  'method', 'n', 'seeds', 'unfinished', 'train_seconds' (mean, std) and column -> (mean, std)."""
  groups: dict[str, list[dict]] = {}
  for wd in find_runs(root):
    groups.setdefault(_group_name(root, wd), []).append(run_summary(wd, select))
  columns: list[str] = []
  for runs in groups.values():
    for r in runs:
      for k in r["values"]:
        if k not in columns and (include_loss or not k.endswith("/loss")):
          columns.append(k)
  rows = []
  for name, runs in groups.items():
    row = {
      "group": name,
      "method": ",".join(sorted({r["method"] for r in runs})),
      "n": len(runs),
      "seeds": sorted(r["seed"] for r in runs if r["seed"] is not None),
      "unfinished": sum(not r["finished"] for r in runs),
      "train_seconds": stats.mean_std([r["train_seconds"] for r in runs if _is_number(r["train_seconds"])]),
    }
    for col in columns:
      vals = [r["values"][col] for r in runs if col in r["values"]]
      row[col] = stats.mean_std(vals) if vals else None
    rows.append(row)
  return columns, rows


def _scale(col: str) -> float:
  return 100.0 if col.rsplit("/", 1)[-1] in PERCENT_METRICS else 1.0


def _fmt(ms, scale: float = 1.0, digits: int = 2) -> str:
  if ms is None or not math.isfinite(ms[0]):
    return "-"
  return stats.format_mean_std(*ms, scale=scale, digits=digits)


def to_markdown(columns: Sequence[str], rows: Iterable[dict], select: str = "final") -> str:
  head = ["group", "method", "seeds"] + list(columns) + ["train s"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    seeds = f"{r['n']}" + (f" ({r['unfinished']} unfinished)" if r["unfinished"] else "")
    cells = [r["group"], r["method"], seeds] + [_fmt(r[c], _scale(c)) for c in columns]
    cells.append(_fmt(r["train_seconds"], 1.0, 0))
    lines.append("| " + " | ".join(cells) + " |")
  note = (
    "mean ± std over seeds (sample std); "
    + ("last eval" if select == "final" else "eval at the best step of the first eval split")
    + "; metrics in [0, 1] shown in %."
  )
  return "\n".join(lines + ["", note])


def write_csv(columns: Sequence[str], rows: Iterable[dict], path: str) -> None:
  """One row per group: group, method, n, seeds, then <column>_mean, <column>_std (raw scale)."""
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(
      ["group", "method", "n", "seeds", "unfinished", "train_seconds_mean", "train_seconds_std"]
      + [f"{c}_{s}" for c in columns for s in ("mean", "std")]
    )
    for r in rows:
      cells = [r["group"], r["method"], r["n"], " ".join(map(str, r["seeds"])), r["unfinished"], *r["train_seconds"]]
      for c in columns:
        cells.extend(r[c] if r[c] is not None else ("", ""))
      w.writerow(cells)


# ---------------------------------------------------------------------------- CLI
def _int_list(s: str) -> list[int]:
  try:
    return [int(x) for x in s.split(",") if x.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f"{s!r} is not a comma-separated list of integers") from None


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
    prog="python -m rail_kd_jax.sweep",
    description=__doc__.split("\n\n")[0],
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  sub = p.add_subparsers(dest="command", required=True)
  r = sub.add_parser("run", help="run every (method, seed); arguments after -- go to every run")
  r.add_argument("--config", required=True, help="config file[:arg]; '{method}' is replaced by each method")
  r.add_argument("--methods", default="", help="comma-separated distill methods (empty: one group 'run')")
  r.add_argument("--seeds", type=_int_list, default=[0], help="comma-separated seeds (default 0)")
  r.add_argument("--root", required=True, help="runs go to ROOT/<method>/seed_<s>")
  r.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
  r.add_argument("--keep_going", action="store_true", help="go on after a failed run")
  r.add_argument("--launcher", default="", help="prefix of every command, e.g. 'srun -N1'")
  r.add_argument("--collect", action="store_true", help="collect the table when done")
  r.add_argument("--select", default="final", choices=("final", "best"))
  c = sub.add_parser("collect", help="write ROOT/results.md and ROOT/results.csv")
  c.add_argument("--root", required=True)
  c.add_argument("--out", default="", help="output prefix (default ROOT/results)")
  c.add_argument("--select", default="final", choices=("final", "best"))
  c.add_argument("--include_loss", action="store_true", help="also report the eval loss")
  return p


def collect_and_write(root: str, out: str = "", select: str = "final", include_loss: bool = False) -> str:
  columns, rows = collect(root, select, include_loss)
  if not rows:
    raise SystemExit(f"error: no runs (folders with config.json and metrics.jsonl) under {root!r}")
  md = to_markdown(columns, rows, select)
  out = out or os.path.join(root, "results")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out + ".md", "w") as f:
    f.write(md + "\n")
  write_csv(columns, rows, out + ".csv")
  print(md)
  print(f"\nwritten: {out}.md, {out}.csv")
  return md


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  extra = []
  if "--" in argv:
    i = argv.index("--")
    argv, extra = argv[:i], argv[i + 1 :]
  args = _parser().parse_args(argv)
  if args.command == "collect":
    collect_and_write(args.root, args.out, args.select, args.include_loss)
    return 0
  methods = [m.strip() for m in args.methods.split(",") if m.strip()]

  bad = [m for m in methods if m not in METHODS]
  if bad:
    raise SystemExit(f"error: --methods has {bad}; valid: {', '.join(METHODS)}")
  if PLACEHOLDER in args.config and not methods:
    raise SystemExit(f"error: --config has {PLACEHOLDER} but --methods is empty")
  commands = build_commands(args.config, methods, args.seeds, args.root, extra, launcher=args.launcher)
  failed = run_sweep(commands, dry_run=args.dry_run, keep_going=args.keep_going)
  if args.collect and not args.dry_run:
    collect_and_write(args.root, select=args.select)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
