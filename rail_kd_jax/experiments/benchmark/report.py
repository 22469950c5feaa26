"""The reports: the targets, benchmark.md and benchmark.png, with the device and versions."""

from __future__ import annotations

import os
import platform

import jax
import numpy as np

from rail_kd_jax.experiments.benchmark import depth as depth_lib
from rail_kd_jax.experiments.benchmark.cases import ALL_METHODS


def device_description() -> str:
  """The devices JAX runs on and the host, in one line."""
  d = jax.devices()[0]
  return (
    f"{jax.device_count()} x {d.device_kind} ({jax.default_backend()}, platform {d.platform}); "
    f"host {platform.node()} with {os.cpu_count()} CPU cores"
  )


def _find(rows, **kw):
  """The first row whose fields equal `kw`, or None."""
  for r in rows:
    if all(r.get(k) == v for k, v in kw.items()):
      return r
  return None


def targets(rows: list[dict]) -> list[dict]:
  """The performance targets, each with its measured value and whether it holds.

  Per shape: rail_l and rail_c steps within 1.05 x kd's and below alp_kd's and ckd's;
  JAX at least 1.3 x faster than each peer; the cached teacher at least 1.5 x faster
  than the online one. Compile time from the shallowest to the deepest teacher grows
  at most 1.5 x; a memory check's peak is at most 16 GiB.

  Step-time ratios also carry `noise`: the two rows' relative IQRs added, the ratio's
  own spread; a ratio closer than that to its limit is marked `within_noise`.
  """
  out = []
  steps = [r for r in rows if r.get("kind") == "step"]
  for shape in dict.fromkeys(r["shape"] for r in steps):

    def row(m, impl="jax", cache=False, precision="float32"):
      return _find(steps, shape=shape, method=m, impl=impl, teacher_cache=cache, precision=precision) or {}

    def ratio(target, a, b, limit, ok):
      """a / b of two rows' median step times (None when either is missing)."""
      if not (a.get("step_ms_median") and b.get("step_ms_median")):
        return
      value = a["step_ms_median"] / b["step_ms_median"]
      noise = sum((r.get("step_ms_iqr") or 0.0) / r["step_ms_median"] for r in (a, b)) * value
      out.append(
        dict(
          shape=shape,
          target=target,
          value=value,
          limit=limit,
          ok=ok(value),
          noise=noise,
          within_noise=abs(value - limit) <= noise,
        )
      )

    kd = row("kd")
    for name in ("rail_l", "rail_c"):
      ratio(f"{name} step <= 1.05 x kd", row(name), kd, 1.05, lambda v: v <= 1.05)
    for other in ("alp_kd", "ckd", "ckd_pooled"):
      for name in ("rail_l", "rail_c"):
        ratio(f"{name} step < {other} step", row(name), row(other), 1.0, lambda v: v < 1.0)
    for m in ALL_METHODS:
      if m in ("none", "kd"):
        ratio(f"{m}: PyTorch eager / JAX float32 step >= 1.0", row(m, "pytorch"), row(m), 1.0, lambda v: v >= 1.0)
      ratio(f"{m}: PyTorch / JAX step >= 1.3", row(m, "pytorch"), row(m), 1.3, lambda v: v >= 1.3)
      ratio(f"{m}: TextBrewer / JAX step >= 1.3", row(m, "textbrewer"), row(m), 1.3, lambda v: v >= 1.3)
      ratio(f"{m}: online / cached teacher step >= 1.5", row(m), row(m, cache=True), 1.5, lambda v: v >= 1.5)
  comp = [r for r in rows if r.get("kind") == "compile"]
  for scan in (True, False):
    compile_s = {r["teacher_layers"]: r["compile_s"] for r in comp if r["scan_layers"] == scan}
    if compile_s:
      fewest, most = min(compile_s), max(compile_s)
      value = compile_s[most] / compile_s[fewest]
      out.append(
        dict(
          shape="compile",
          target=f"compile {most} / {fewest} teacher layers, scan={scan} <= 1.5",
          value=value,
          limit=1.5,
          ok=value <= 1.5,
        )
      )
  for r in rows:
    if r.get("kind") == "memory" and r.get("peak_bytes"):
      gb = r["peak_bytes"] / 2**30
      out.append(
        dict(
          shape=r["shape"],
          target=f"{r['method']} {r['dtype']} b{r['batch_size']} T{r['length']} peak memory <= 16 GiB",
          value=gb,
          limit=16.0,
          ok=gb <= 16.0,
        )
      )
  return out


def _fmt(x, spec=".1f", none="-"):
  return none if x is None else format(x, spec)


def write_markdown(path: str, rows: list[dict], meta: dict) -> None:
  """benchmark.md: the run's setting, then one table per section present in `rows`, then the targets."""
  lines = [
    "# Training-time benchmark",
    "",
    f"- device: {meta['device']}",
    f"- peak float32 matmul (2048^3, best of start and end): JAX {meta['peak_gflops_jax']:.0f} GFLOP/s, "
    f"PyTorch {_fmt(meta.get('peak_gflops_pytorch'), '.0f')} GFLOP/s; FLOP utilisation is against the "
    f"larger, {meta['peak_gflops']:.0f} GFLOP/s",
    f"- load average (1 min) at start / end: {meta['load_start']:.2f} / {meta['load_end']:.2f}",
    f"- versions: {meta['versions']}",
    f"- timing: {meta['options']['warmup']} warm-up step(s), then {meta['options']['windows']} windows of "
    f"{meta['options']['steps_per_window']} steps; median and IQR of the per-step time of the windows",
    f"- wall time of the whole benchmark: {meta['wall_s']:.0f} s",
    "",
  ]
  steps = [r for r in rows if r.get("kind") == "step"]
  ratio = lambda num, den: f"{num / den:.2f}x" if (num and den) else "-"
  for shape in dict.fromkeys(r["shape"] for r in steps):
    srows = [r for r in steps if r["shape"] == shape]
    r0 = srows[0]
    lines += [
      f"## {meta['shape_labels'].get(shape, shape)}",
      "",
      "| method | precision | JAX step ms (IQR) | ex/s | compile s | GFLOP/step | FLOP util. | peak MB | "
      "+ teacher cache ms | cache speed-up | PyTorch eager ms | PyTorch / JAX | torch.compile ms (compile s) | "
      "compiled / JAX | TextBrewer ms | TextBrewer / JAX | loss after N steps: JAX, PyTorch |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in dict.fromkeys(r["method"] for r in srows):
      for prec in dict.fromkeys(r.get("precision") for r in srows if r["method"] == m):
        f = lambda **kw: _find(srows, method=m, precision=prec, **kw) or {}
        j, c = f(impl="jax", teacher_cache=False), f(impl="jax", teacher_cache=True)
        t, tc, tb = f(impl="pytorch"), f(impl="pytorch_compile"), f(impl="textbrewer")
        jm, cm = j.get("step_ms_median"), c.get("step_ms_median")
        flops, util, peak = j.get("flops_per_step"), j.get("flop_utilization"), j.get("peak_bytes")
        compiled = "-"
        if tc.get("step_ms_median"):
          compiled = f"{_fmt(tc['step_ms_median'])} ({_fmt(tc.get('compile_s'))})"
        elif tc.get("unavailable"):
          compiled = "unavailable"
        losses = f"{_fmt(j.get('final_loss'), '.4f')} ({j.get('loss_steps', '-')}), " + (
          f"{_fmt(t.get('final_loss'), '.4f')} ({t.get('loss_steps', '-')})" if t else "-"
        )
        lines.append(
          "| "
          + " | ".join(
            [
              m,
              str(prec),
              f"{_fmt(jm)} ({_fmt(j.get('step_ms_iqr'))})",
              _fmt(j.get("examples_per_s")),
              _fmt(j.get("compile_s")),
              _fmt(flops / 1e9 if flops else None),
              f"{util * 100:.0f}%" if util else "-",
              _fmt(peak / 1e6 if peak else None, ".0f"),
              _fmt(cm),
              ratio(jm, cm),
              _fmt(t.get("step_ms_median")),
              ratio(t.get("step_ms_median"), jm),
              compiled,
              ratio(tc.get("step_ms_median"), jm),
              _fmt(tb.get("step_ms_median")),
              ratio(tb.get("step_ms_median"), jm),
              losses,
            ]
          )
          + " |"
        )
    notes = sorted({r["unavailable"] for r in srows if r.get("unavailable")})
    lines += [
      "",
      f"Batch {r0['batch_size']}, length {r0['length']}, scan_layers={r0.get('scan_layers')}, "
      f"remat={r0.get('remat')}; PyTorch threads: "
      f"{next((r.get('threads') for r in srows if r.get('threads')), '-')}, device "
      f"{next((r.get('device') for r in srows if r.get('device')), '-')}. Precision: the compute dtype of "
      "every row on that line (params and optimizer state float32 everywhere): JAX modules in float32 or "
      "bfloat16 (softmax and LayerNorm statistics float32); PyTorch eager float32, or its forward passes "
      "and loss under `torch.autocast(bfloat16)`; torch.compile (inductor) of teacher and student, its "
      "compile time the first step's wall time minus a step's; TextBrewer float32 only. Losses after N "
      "steps (N in brackets) come from different random inits per library: compare a library's two "
      "precisions, not the libraries. FLOP utilisation = XLA's FLOPs per step / step time / peak matmul "
      "FLOP/s (the PyTorch columns use XLA's count for the same work). Ratios > 1 mean JAX is faster."
      + (f" torch.compile unavailable: {notes[0]}" if notes else ""),
      "",
    ]
  for precision in dict.fromkeys(r.get("precision") for r in rows if r.get("kind") == "depth_step"):
    lines += depth_lib.markdown(rows, precision)
  epochs = [r for r in rows if r.get("kind") == "epoch"]
  if epochs:
    e0 = epochs[0]
    lines += [
      "## The real workload: one epoch of the demo's Rotten Tomatoes train split",
      "",
      "| method | implementation | precision | teacher | s per epoch | ex/s | warm-up s | timed steps | "
      "mean length | loss at the end | epoch / JAX online | epoch / JAX cached |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = {"jax": "JAX (bucketed)", "pytorch": "PyTorch (dynamic padding)", "textbrewer": "TextBrewer"}
    for m in dict.fromkeys(r["method"] for r in epochs):
      mrows = [r for r in epochs if r["method"] == m]
      on = _find(mrows, impl="jax", teacher_cache=False) or {}
      ca = _find(mrows, impl="jax", teacher_cache=True) or {}
      for r in mrows:
        timed = f"{r['measured_steps']} of {r['steps']}" + (" (extrapolated)" if r.get("extrapolated") else "")
        lines.append(
          f"| {m} | {names.get(r['impl'], r['impl'])} | {r['precision']} | "
          f"{'cache' if r['teacher_cache'] else 'online'} | {_fmt(r['epoch_s'])} | {_fmt(r['examples_per_s'])} | "
          f"{_fmt(r['warmup_s'])} | {timed} | {_fmt(r['mean_length'])} | {_fmt(r.get('final_loss'), '.4f')} | "
          f"{ratio(r['epoch_s'], on.get('epoch_s'))} | {ratio(r['epoch_s'], ca.get('epoch_s'))} |"
        )
      if ca.get("cache_build_s") is not None:
        lines += [
          "",
          f"{m}, teacher cache: built in {ca['cache_build_s']:.1f} s (a teacher forward pass over the "
          f"{ca['examples']} examples); epoch + build {_fmt(ca['epoch_s_with_build'])} s; amortised over the "
          f"{ca['amortised_over_runs']} cached runs of the default study {_fmt(ca['amortised_epoch_s'])} s per "
          f"epoch ({ratio(on.get('epoch_s'), ca['amortised_epoch_s'])} faster than online).",
          "",
        ]
    lines += [
      "",
      f"{e0['examples']} examples, batch {e0['batch_size']}, teacher {e0['teacher_layers']} layers -> "
      f"student {e0['student_layers']}; the real tokenizer (max length 48). JAX: `train.Trainer` "
      "(bucketed: each batch trimmed to its longest row rounded up to 16); the peers: the same examples in "
      "the same random order, each batch padded to its own longest row (dynamic padding, not sorted). "
      "Warm-up, not in the epoch: JAX one step per distinct bucket length (each compiles its program), "
      "each eager peer one step. The epoch's chunks are interleaved across the rows; a row over --row_budget_s stops "
      "early and its epoch is its time per step times the epoch's steps (extrapolated). Ratios > 1 mean "
      "JAX is faster.",
      "",
    ]
  prof = [r for r in rows if r.get("kind") == "step" and r.get("profile")]
  if prof:
    kinds = ["matmul", "elementwise/other", "copy/transpose", "collective"]
    passes = [
      "forward (no gradient: teacher)",
      "forward (differentiated)",
      "backward",
      "rest (loss, optimizer, all-reduce)",
    ]
    lines += [
      "## Profiles (op time per step, summed over threads)",
      "",
      "| shape | method | cache | wall ms | " + " | ".join(kinds) + " | teacher fwd | student fwd | "
      "backward | rest | ops |",
      "|" + "---|" * (4 + len(kinds) + 5),
    ]
    for r in prof:
      p = r["profile"]
      cells = [_fmt(p["by_kind"].get(k, 0.0)) for k in kinds] + [_fmt(p["by_pass"].get(k, 0.0)) for k in passes]
      lines.append(
        f"| {r['shape']} | {r['method']} | {r['teacher_cache']} | {_fmt(p['wall_ms'])} | "
        + " | ".join(cells)
        + f" | `{os.path.join(p['dir'], 'ops.md')}` |"
      )
    lines += [
      "",
      "From `--profile`: `jax.profiler` traces (TensorBoard / Perfetto) and per-op tables "
      "(`rail_kd_jax/experiments/benchmark/profiling.py`). Ops running at once on different threads both count.",
      "",
    ]
  gemm = [r for r in rows if r.get("kind") == "gemm"]
  if gemm:
    lines += [
      "## Single matmuls (float32, best of 10)",
      "",
      "| shape | op | A x B | JAX ms | JAX GFLOP/s | PyTorch ms | PyTorch GFLOP/s | PyTorch / JAX |",
      "|---|---|---|---|---|---|---|---|",
    ]
    for r in gemm:
      dims = "x".join(map(str, r["a"])) + " @ " + "x".join(map(str, r["b"]))
      lines.append(
        f"| {r['shape']} | {r['op']} | {dims} | {_fmt(r['jax_ms'], '.2f')} | {_fmt(r['jax_gflops'], '.0f')} | "
        f"{_fmt(r['pytorch_ms'], '.2f')} | {_fmt(r['pytorch_gflops'], '.0f')} | "
        f"{_fmt(r['pytorch_ms'] / r['jax_ms'] if r['pytorch_ms'] else None, '.2f')}x |"
      )
    lines += [
      "",
      "One op each, outside the train step: how fast each library's matmul is at the "
      "model's own sizes (ratios > 1 mean JAX is faster).",
      "",
    ]
  comp = [r for r in rows if r.get("kind") == "compile"]
  if comp:
    lines += [
      "## Compile time against teacher depth",
      "",
      "| teacher layers | compile s, unrolled | compile s, scan_layers |",
      "|---|---|---|",
    ]
    for num_teacher_layers in sorted({r["teacher_layers"] for r in comp}):
      u = _find(comp, teacher_layers=num_teacher_layers, scan_layers=False) or {}
      s = _find(comp, teacher_layers=num_teacher_layers, scan_layers=True) or {}
      lines.append(f"| {num_teacher_layers} | {_fmt(u.get('compile_s'))} | {_fmt(s.get('compile_s'))} |")
    lines += [
      "",
      f"Train step of `{comp[0]['method']}` (student {comp[0]['student_layers']} layers, "
      f"batch {comp[0]['batch_size']}, length {comp[0]['length']}), lowered from abstract inputs.",
      "",
    ]
  mem = [r for r in rows if r.get("kind") == "memory"]
  if mem:
    lines += [
      "## Memory (compile only, XLA memory analysis)",
      "",
      "| shape | method | dtype | scan | remat | batch x length | peak GiB | arguments GiB | temporaries GiB |",
      "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in mem:
      m = r.get("memory") or {}
      gib = lambda x: _fmt(x / 2**30 if x is not None else None, ".2f")
      lines.append(
        f"| {r['shape']} | {r['method']} | {r['dtype']} | {r['scan_layers']} | {r['remat']} | "
        f"{r['batch_size']} x {r['length']} | {gib(r['peak_bytes'])} | "
        f"{gib(m.get('argument_size_in_bytes'))} | {gib(m.get('temp_size_in_bytes'))} |"
      )
    lines.append("")
  tg = meta.get("targets") or []
  if tg:
    lines += ["## Targets", "", "| shape | target | measured | holds |", "|---|---|---|---|"]
    for t in tg:
      spread = f" ± {t['noise']:.2f}" if t.get("noise") is not None else ""
      holds = ("yes" if t["ok"] else "NO") + (" (within noise)" if t.get("within_noise") else "")
      lines.append(f"| {t['shape']} | {t['target']} | {t['value']:.2f}{spread} | {holds} |")
    lines += [
      "",
      "± on a step-time ratio: the two rows' relative IQRs added (times the ratio); "
      "'within noise' marks a ratio closer than that to its limit, which another run may flip.",
      "",
    ]
  with open(path, "w") as f:
    f.write("\n".join(lines))


def write_chart(path: str, rows: list[dict]) -> None:
  """benchmark.png: step time per method and implementation for each shape; compile time against depth."""
  import matplotlib  # the Agg backend (no display) is chosen before pyplot is imported

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  steps = [r for r in rows if r.get("kind") == "step" and r.get("step_ms_median") and r.get("precision") == "float32"]
  shapes = list(dict.fromkeys(r["shape"] for r in steps))
  comp = [r for r in rows if r.get("kind") == "compile"]
  ncols = len(shapes) + (1 if comp else 0)
  fig, axes = plt.subplots(1, max(ncols, 1), figsize=(6.5 * max(ncols, 1), 4.2), squeeze=False)
  series = (
    ("jax", False, "JAX"),
    ("jax", True, "JAX + teacher cache"),
    ("pytorch", False, "PyTorch"),
    ("pytorch_compile", False, "torch.compile"),
    ("textbrewer", False, "TextBrewer"),
  )
  for ax, shape in zip(axes[0], shapes):
    srows = [r for r in steps if r["shape"] == shape]
    methods = list(dict.fromkeys(r["method"] for r in srows))
    x = np.arange(len(methods))
    width = 0.16
    for i, (impl, cache, label) in enumerate(series):
      vals = [(_find(srows, method=m, impl=impl, teacher_cache=cache) or {}).get("step_ms_median") for m in methods]
      errs = [(_find(srows, method=m, impl=impl, teacher_cache=cache) or {}).get("step_ms_iqr") for m in methods]
      if not any(vals):
        continue
      ax.bar(x + (i - 2) * width, [v or 0 for v in vals], width, yerr=[e or 0 for e in errs], label=label)
    ax.set_xticks(x, methods)
    ax.set_ylabel("ms per float32 train step (median, IQR)")
    ax.set_title(shape)
    top = max((r["step_ms_median"] or 0) + (r.get("step_ms_iqr") or 0) for r in srows)
    ax.set_ylim(0, 1.3 * top)  # room for the legend above the bars
    ax.legend(fontsize=8, ncol=2, loc="upper left")
  if comp:
    ax = axes[0][-1]
    for scan, label in ((False, "unrolled"), (True, "scan_layers")):
      pts = sorted((r["teacher_layers"], r["compile_s"]) for r in comp if r["scan_layers"] == scan)
      if pts:
        ax.plot(*zip(*pts), marker="o", label=label)
    ax.set_xlabel("teacher layers")
    ax.set_xticks(sorted({r["teacher_layers"] for r in comp}))
    ax.set_ylim(bottom=0)
    ax.set_ylabel("compile s")
    ax.set_title("compile time vs depth")
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def versions() -> str:
  """The versions of jax and of flax, torch, transformers and textbrewer where installed."""
  parts = [f"jax {jax.__version__}"]
  for mod in ("flax", "torch", "transformers", "textbrewer"):
    try:
      parts.append(f"{mod} {__import__(mod).__version__}")
    except Exception:  # not installed
      pass
  return ", ".join(parts)
