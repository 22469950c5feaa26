"""The depth section (`--workload=depth`): every method's train step as the teacher deepens.

The paper's time claim (RAIL-KD trains faster than PKD, ALP-KD and CKD) is about deep teachers.
For teachers of `depths` layers (default 6, 12, 24) of one width, with a student of 3 layers
under a 6-layer teacher and 6 under the deeper ones (half the teacher's layers, at most 6),
every method is timed with JAX online, JAX with the teacher cache (where the cache serves the
method) and the PyTorch eager peer, their windows interleaved (`sections.bench_shape`).

The intermediate term's own cost: a method's step minus the `kd` step of the same
implementation, depth and cache setting. The `kd` step is the same program without the
intermediate term (the same CE and KD terms; the term, its pooled states, its heads and their
optimizer update absent from the program, not multiplied by zero), timed in the same process
(its windows interleave with its own implementations, not with the method's, so a term of a few
percent is within the machine's drift);
in ms, as a share of the method's step, and in XLA's FLOPs per step.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from rail_kd_jax.distill import methods as methods_lib
from rail_kd_jax.experiments.benchmark import cases, sections
from rail_kd_jax.experiments.benchmark.shapes import Shape, _bert

DEPTHS = (6, 12, 24)
# Every method, CKD in both forms (token-level, the authors'; pooled, cacheable).
METHODS = ("none", "kd", "pkd", "alp_kd", "ckd", "ckd_pooled", "rail_l", "rail_c", "rail_paper")
BASE = "kd"  # the step without an intermediate term
# The methods with an intermediate term: those that pair student with teacher layers (their rows say).
INTERMEDIATE = tuple(m for m in METHODS if methods_lib.get_method(cases.distill_config(m).method).pairs_layers)


def student_layers(teacher_layers: int) -> int:
  """3 under a 6-layer teacher, 6 under deeper ones: half the teacher's layers, at most 6, at least 1."""
  return max(1, min(6, teacher_layers // 2))


def depth_shape(teacher_layers: int, width: int, heads: int, ff: int, batch: int, length: int, vocab: int) -> Shape:
  """A BERT-type teacher of `teacher_layers` and its student (`student_layers`), one width, random weights."""
  kw = dict(vocab_size=vocab, max_position_embeddings=max(512, length))
  return Shape(
    f"depth-{teacher_layers}",
    _bert(teacher_layers, width, heads, ff, **kw),
    _bert(student_layers(teacher_layers), width, heads, ff, **kw),
    batch,
    length,
  )


def term_rows(rows: Sequence[dict]) -> list[dict]:
  """One 'depth_term' row per (method with a term, depth, implementation, cache setting): its step
  minus the `kd` step timed beside it, in ms, as a share of the step, and in FLOPs."""
  out = []
  steps = [r for r in rows if r.get("kind") == "depth_step" and r.get("step_ms_median")]
  key = lambda r: (r["teacher_layers"], r["impl"], r["teacher_cache"], r["precision"])
  base = {key(r): r for r in steps if r["method"] == BASE}
  for r in steps:
    b = base.get(key(r))
    if r["method"] not in INTERMEDIATE or b is None:
      continue
    ms = r["step_ms_median"] - b["step_ms_median"]
    flops = r["flops_per_step"] - b["flops_per_step"] if (r.get("flops_per_step") and b.get("flops_per_step")) else None
    out.append(
      dict(
        kind="depth_term",
        method=r["method"],
        impl=r["impl"],
        teacher_cache=r["teacher_cache"],
        precision=r["precision"],
        teacher_layers=r["teacher_layers"],
        student_layers=r["student_layers"],
        term_ms=ms,
        term_share=ms / r["step_ms_median"],
        term_flops=flops,
        term_flops_share=(flops / r["flops_per_step"]) if flops is not None else None,
        # The noise the difference carries: the two rows' IQRs added.
        term_ms_noise=(r.get("step_ms_iqr") or 0.0) + (b.get("step_ms_iqr") or 0.0),
      )
    )
  return out


def bench_depth(
  opts: sections.Options,
  peak_flops: float,
  *,
  depths: Sequence[int] = DEPTHS,
  width: int = 384,
  heads: int = 12,
  ff: int = 1536,
  batch: int = 16,
  length: int = 128,
  vocab: int = 30522,
  methods: Sequence[str] = METHODS,
) -> list[dict]:
  """The depth section's rows: 'depth_step' rows (one per method, depth, implementation and cache
  setting; the peers from `opts.peers`, float32 unless `opts.precisions` says otherwise) and the
  'depth_term' rows of `term_rows`."""
  if BASE not in methods:
    methods = (BASE,) + tuple(methods)
  opts = dataclasses.replace(
    opts,
    methods=list(methods),
    cache_methods=[m for m in methods if sections.cacheable(m)],
    peers=[p for p in opts.peers if p == "pytorch"],
    gemm=False,
  )
  rows = []
  for n in depths:
    shape = depth_shape(int(n), width, heads, ff, batch, length, vocab)
    for r in sections.bench_shape(shape, opts, peak_flops):
      rows.append(dict(r, kind="depth_step", workload="depth", width=width))
  return rows + term_rows(rows)


# ---------------------------------------------------------------------------- report
def _f(x, spec=".0f"):
  return "-" if x is None else format(x, spec)


def markdown(rows: Sequence[dict], precision: str = "float32") -> list[str]:
  """The depth tables: per depth, each method's ms per step (JAX online, JAX cached, PyTorch) and
  its intermediate term's ms and share, and XLA's GFLOP per step and the term's share of them."""
  steps = [r for r in rows if r.get("kind") == "depth_step" and r.get("precision") == precision]
  terms = [r for r in rows if r.get("kind") == "depth_term" and r.get("precision") == precision]
  if not steps:
    return []
  r0 = steps[0]
  find = lambda pool, **kw: next((r for r in pool if all(r.get(k) == v for k, v in kw.items())), None)
  out = [
    f"## Training time as the teacher deepens ({precision})",
    "",
    f"Teachers of {', '.join(str(d) for d in sorted({r['teacher_layers'] for r in steps}))} layers, "
    f"width {r0.get('width')}, batch {r0['batch_size']} x length {r0['length']}, random weights; students of "
    "half the teacher's layers (at most 6). ms per train step: median of the interleaved windows. "
    "Term: the step minus the kd step of the same implementation and setting (the same program without "
    "the intermediate term), with its share of the step; '~' marks a term within the two rows' IQR.",
    "",
  ]
  for n in sorted({r["teacher_layers"] for r in steps}):
    m0 = find(steps, teacher_layers=n)
    out += [
      f"### Teacher {n} layers, student {m0['student_layers']}",
      "",
      "| method | JAX online ms | term (share) | JAX cached ms | term (share) | PyTorch ms | term (share) | "
      "GFLOP/step (JAX online) | term GFLOP (share) |",
      "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in dict.fromkeys(r["method"] for r in steps if r["teacher_layers"] == n):
      cells = [m]
      for impl, cached in (("jax", False), ("jax", True), ("pytorch", False)):
        s = find(steps, teacher_layers=n, method=m, impl=impl, teacher_cache=cached)
        t = find(terms, teacher_layers=n, method=m, impl=impl, teacher_cache=cached)
        cells.append(_f(s and s["step_ms_median"]))
        if t:
          noisy = "~" if abs(t["term_ms"]) <= t["term_ms_noise"] else ""
          cells.append(f"{noisy}{t['term_ms']:+.0f} ({100 * t['term_share']:+.0f}%)")
        else:
          cells.append("-")
      s = find(steps, teacher_layers=n, method=m, impl="jax", teacher_cache=False)
      t = find(terms, teacher_layers=n, method=m, impl="jax", teacher_cache=False)
      cells.append(_f(s and s.get("flops_per_step") and s["flops_per_step"] / 1e9, ".1f"))
      cells.append(
        f"{t['term_flops'] / 1e9:+.2f} ({100 * t['term_flops_share']:+.1f}%)"
        if t and t.get("term_flops") is not None
        else "-"
      )
      out.append("| " + " | ".join(cells) + " |")
    out.append("")
  return out


def write_chart(path: str, rows: Sequence[dict], precision: str = "float32") -> str | None:
  """depth.png: ms per step against teacher depth, one line per method; panels: online (JAX solid,
  PyTorch dashed) and with the teacher cache (JAX)."""
  steps = [
    r for r in rows if r.get("kind") == "depth_step" and r.get("precision") == precision and r.get("step_ms_median")
  ]
  if not steps:
    return None
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  methods = list(dict.fromkeys(r["method"] for r in steps))
  colors = dict(zip(methods, plt.cm.tab10(np.linspace(0, 1, 10))))
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
  panels = ((axes[0], False, "online (teacher in every step)"), (axes[1], True, "teacher cache (JAX)"))
  for ax, cached, title in panels:
    for m in methods:
      for impl, style in (("jax", "-"), ("pytorch", "--")):
        if cached and impl != "jax":
          continue
        pts = sorted(
          (r["teacher_layers"], r["step_ms_median"])
          for r in steps
          if r["method"] == m and r["impl"] == impl and r["teacher_cache"] == cached
        )
        if pts:
          label = m if impl == "jax" else None
          ax.plot(*zip(*pts), style, marker="o", color=colors[m], label=label)
    ax.set_title(title + ("; PyTorch dashed" if not cached else ""))
    ax.set_xlabel("teacher layers")
    ax.set_xticks(sorted({r["teacher_layers"] for r in steps}))
    ax.grid(alpha=0.3)
  axes[0].set_ylabel(f"ms per {precision} train step (median)")
  axes[0].set_ylim(bottom=0)
  axes[1].legend(fontsize=8, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
