"""PNG plots of a run and of the demo (matplotlib, Agg backend: no display needed).

`write_run_plots(workdir)` reads `metrics.jsonl` (and `mapping_counts.json` when the
method samples a layer mapping) and writes, in the workdir:

  loss_terms.png     every training loss term (loss, ce, kd, int) over steps, and a
                     second panel with the collapse diagnostics (dir_var_student,
                     dir_var_teacher, own_other) when the method logs them
  eval_metrics.png   every eval split's task metrics over steps
  layer_pairing.png  heat map: how often teacher layer t was paired with student layer j

`write_demo_chart(rows, path)` draws the demo's comparison (accuracy and training
time per model). Plots never stop a run: a failure is logged and skipped.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np
from absl import logging

from rail_kd_jax.distill import diagnostics
from rail_kd_jax.outputs import writers

LOSS_TERMS = ("loss", "ce", "kd", "int")
DIAGNOSTICS = diagnostics.NAMES
RANKS = diagnostics.RANK_NAMES
LOSS_FILE = "loss_terms.png"
EVAL_FILE = "eval_metrics.png"
PAIRING_FILE = "layer_pairing.png"
# Eval values that are not task metrics.
_NOT_METRICS = ("step", "split", "loss", "epoch")


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg", force=True)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  return plt


def _number(v) -> float | None:
  if isinstance(v, bool) or not isinstance(v, (int, float)):
    return None
  return float(v)


def _series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
  pts = [(r["step"], _number(r.get(key))) for r in records]
  pts = [(s, v) for s, v in pts if v is not None and np.isfinite(v)]
  if not pts:
    return np.zeros(0), np.zeros(0)
  steps, values = zip(*pts)
  return np.asarray(steps), np.asarray(values)


def plot_loss_terms(records: list[dict], path: str, title: str = "") -> str | None:
  """Training loss terms over steps (one line each); None when there are no train records."""
  train = [r for r in records if r.get("split") == "train"]
  terms = [t for t in LOSS_TERMS if any(_number(r.get(t)) is not None for r in train)]
  if not terms:
    return None
  diags = [t for t in DIAGNOSTICS if any(_number(r.get(t)) is not None for r in train)]
  plt = _pyplot()
  fig, axes = plt.subplots(1, 2 if diags else 1, figsize=(12.5 if diags else 7, 4.2), squeeze=False)
  ax = axes[0][0]
  for term in terms:
    steps, values = _series(train, term)
    ax.plot(
      steps, values, label=term, linewidth=2.2 if term == "loss" else 1.4, color="black" if term == "loss" else None
    )
  ax.set_xlabel("step")
  ax.set_ylabel("term value (unweighted); loss = weighted sum")
  ax.set_title(title or "training loss terms")
  ax.grid(alpha=0.3)
  ax.legend()
  if diags:
    ax = axes[0][1]
    for term in diags:
      steps, values = _series(train, term)
      ax.plot(steps, values, label=term, linewidth=1.6)
    ax.set_ylim(0, max(1.05, max(float(np.max(_series(train, t)[1], initial=0)) for t in diags) * 1.05))
    ax.set_xlabel("step")
    ax.set_ylabel("dir_var (0 = one direction), own_other (1 = no info)")
    ax.set_title("collapse diagnostics of the intermediate term")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    ranks = [t for t in RANKS if any(_number(r.get(t)) is not None for r in train)]
    if ranks:
      twin = ax.twinx()
      for term in ranks:
        steps, values = _series(train, term)
        twin.plot(steps, values, label=term, linestyle="--", linewidth=1.2)
      twin.set_ylim(bottom=0)
      twin.set_ylabel("rank (1 = one axis)")
      twin.legend(loc="upper right")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def plot_eval_metrics(records: list[dict], path: str, title: str = "") -> str | None:
  """Each eval split's task metrics over steps (one panel per metric); None without evals."""
  evals = [r for r in records if r.get("split") not in ("train", "summary")]
  splits = sorted({r["split"] for r in evals})
  # Per-class figures ('recall/<class>') stay in metrics.jsonl; the majority-class accuracy is
  # drawn as a dashed line on the accuracy panel.
  metrics = sorted(
    {
      k
      for r in evals
      for k, v in r.items()
      if k not in _NOT_METRICS and "/" not in k and k != "majority_accuracy" and _number(v) is not None
    }
  )
  if not metrics:
    return None
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), squeeze=False)
  for ax, metric in zip(axes[0], metrics):
    for split in splits:
      steps, values = _series([r for r in evals if r["split"] == split], metric)
      if len(steps):
        ax.plot(steps, values, marker="o", label=split)
        ax.annotate(f"{values[-1]:.3f}", (steps[-1], values[-1]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        base_steps, base = _series([r for r in evals if r["split"] == split], "majority_accuracy")
        if metric == "accuracy" and len(base_steps):
          ax.axhline(base[-1], ls="--", lw=1, color=ax.lines[-1].get_color(), label=f"{split} majority class")
    ax.set_xlabel("step")
    ax.set_title(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle(title or "evaluation")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def load_pairing_counts(workdir: str) -> np.ndarray | None:
  """int [M, N+1] from workdir/mapping_counts.json (row j-1 = student layer j, column t = teacher
  layer t, column 0 = embeddings, never sampled), or None."""
  path = os.path.join(workdir, "mapping_counts.json")
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return np.asarray(json.load(f)["counts"], dtype=np.int64)


def plot_layer_pairing(counts: np.ndarray, path: str, title: str = "") -> str:
  """Heat map of `counts` [M, N+1] (teacher layers 1..N on x, student layers 1..M on y)."""
  counts = np.asarray(counts)
  grid = counts[:, 1:]  # the embedding column is never paired
  m, n = grid.shape
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(max(4.5, 0.55 * n + 2.5), max(2.6, 0.5 * m + 1.6)))
  im = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=0)
  ax.set_xticks(range(n), [str(t) for t in range(1, n + 1)])
  ax.set_yticks(range(m), [str(j) for j in range(1, m + 1)])
  ax.set_xlabel("teacher layer")
  ax.set_ylabel("student layer")
  peak = grid.max() if grid.size else 0
  if m * n <= 400:
    for j in range(m):
      for t in range(n):
        ax.text(
          t,
          j,
          str(int(grid[j, t])),
          ha="center",
          va="center",
          fontsize=7,
          color="black" if grid[j, t] > 0.6 * peak else "white",
        )
  used = int((grid.sum(0) > 0).sum())
  ax.set_title(
    title or f"layer pairings over {int(grid.sum(1).max()) if m else 0} steps ({used}/{n} teacher layers used)"
  )
  fig.colorbar(im, ax=ax, label="steps")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def write_run_plots(workdir: str) -> list[str]:
  """Writes the run's PNGs into `workdir`; returns their paths (only those written)."""
  paths = []
  records = writers.read_metrics(workdir)
  name = os.path.basename(os.path.normpath(workdir))
  jobs = [
    (plot_loss_terms, records, LOSS_FILE, f"{name}: training loss terms"),
    (plot_eval_metrics, records, EVAL_FILE, f"{name}: evaluation"),
  ]
  try:
    counts = load_pairing_counts(workdir)
  except (OSError, ValueError, KeyError) as e:
    logging.warning("plots: unreadable mapping_counts.json in %s: %s", workdir, e)
    counts = None
  if counts is not None:
    jobs.append((plot_layer_pairing, counts, PAIRING_FILE, ""))
  for fn, data, filename, title in jobs:
    try:
      out = fn(data, os.path.join(workdir, filename), title)
    except Exception as e:  # pylint: disable=broad-except  # a plot must never fail a run
      logging.warning("plots: %s failed: %s", filename, e)
      continue
    if out:
      paths.append(out)
  logging.info("plots: %s", ", ".join(paths) or "nothing to plot")
  return paths


def write_demo_chart(rows: Sequence[dict], path: str) -> str | None:
  """Two bar charts side by side: test accuracy and training time of each demo model."""
  if not rows:
    return None
  try:
    plt = _pyplot()
    labels = [r.get("label", r["name"]).replace(", ", "\n") for r in rows]
    acc = [100 * float(r["accuracy"]) for r in rows]
    secs = [float(r["train_seconds"]) for r in rows]
    colors = ["#555555"] + ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"][: len(rows) - 1]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    bars = ax1.bar(range(len(rows)), acc, color=colors)
    ax1.bar_label(bars, [f"{a:.1f}" for a in acc], fontsize=9)
    lo = max(0.0, min(acc) - 10)
    ax1.set_ylim(lo, min(100.0, max(acc) + 5))
    ax1.set_ylabel("test accuracy (%)")
    ax1.set_title("accuracy")
    bars = ax2.bar(range(len(rows)), secs, color=colors)
    ax2.bar_label(bars, [f"{s:.0f} s" for s in secs], fontsize=9)
    ax2.set_ylabel("training time (s)")
    ax2.set_title("training time")
    for ax in (ax1, ax2):
      ax.set_xticks(range(len(rows)), labels, fontsize=8)
      ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("plots: demo chart failed: %s", e)
    return None
  return path


def write_study_chart(study: dict, path: str) -> str | None:
  """The study (study.py): each seed as a point and the mean with its 95% t interval, for
  test and out-of-domain accuracy; training seconds per run on the last panel (cached runs
  as points, the online run of each method as a cross)."""
  rows = study.get("methods") or {}
  if not rows:
    return None
  try:
    plt = _pyplot()
    methods = list(rows)
    splits = [s for s in ("test", "ood") if any(s in r for r in rows.values())]
    fig, axes = plt.subplots(1, len(splits) + 1, figsize=(4.6 * (len(splits) + 1), 4.4))
    x = np.arange(len(methods))
    for ax, split in zip(axes, splits):
      for i, m in enumerate(methods):
        r = rows[m].get(split)
        if not r:
          continue
        vals = 100 * np.asarray(r["values"])
        jitter = np.linspace(-0.15, 0.15, len(vals)) if len(vals) > 1 else np.zeros(1)
        ax.scatter(i + jitter, vals, s=14, color="#4c72b0", alpha=0.6, zorder=2)
        iv = r["interval"]
        ax.errorbar(
          i,
          100 * iv["mean"],
          yerr=[[100 * (iv["mean"] - iv["low"])], [100 * (iv["high"] - iv["mean"])]],
          fmt="o",
          color="black",
          capsize=4,
          zorder=3,
        )
      ax.set_title(f"{'out-of-domain' if split == 'ood' else split} accuracy: seeds and mean ± 95% CI")
      ax.set_ylabel("accuracy (%)")
    ax = axes[-1]
    for i, m in enumerate(methods):
      secs = [r["train_seconds"] for r in study["runs"] if r["method"] == m]
      ax.scatter(
        np.full(len(secs), i),
        secs,
        s=14,
        color="#55a868",
        alpha=0.7,
        zorder=2,
        label="seeds (teacher cached)" if i == 0 else None,
      )
      on = (study.get("online") or {}).get(m)
      if on:
        ax.scatter(
          [i],
          [on["train_seconds"]],
          marker="x",
          s=40,
          color="#c44e52",
          zorder=3,
          label="tune seed, teacher online" if not any(mm in study["online"] for mm in methods[:i]) else None,
        )
    ax.set_title("training time per run")
    ax.set_ylabel("train seconds")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    for ax in axes:
      ax.set_xticks(x, methods, fontsize=8, rotation=20)
      ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("plots: study chart failed: %s", e)
    return None
  return path
