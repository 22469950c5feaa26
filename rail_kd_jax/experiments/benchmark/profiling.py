"""Where a compiled step spends its time: a `jax.profiler` trace and an op summary.

`profile_step(step, block, compiled, out_dir)` runs a few steps of an already compiled
program under `jax.profiler.trace(out_dir)` (open it in TensorBoard's profile plugin or
Perfetto) and summarises the trace with `jax.profiler.ProfileData`: every event whose name
is an instruction of the compiled module is attributed to that instruction, with its
shape and the `op_name` metadata JAX wrote (the Flax module path, and `jvp(...)` for the
forward pass, `transpose(jvp(...))` for the backward pass). The summary groups time by

- kind: `matmul` (dots and library fusions that contain one), `copy/transpose`,
  `collective`, `elementwise/other`;
- pass: `forward (differentiated)` (the student, under `jvp`), `backward`,
  `forward (no gradient: teacher)` (module code outside `jvp`: the frozen teacher), `rest`
  (loss terms outside modules, the optimizer, the gradient all-reduce);

and writes `ops.md` (tables) and `ops.json` next to the trace. Times are per step and
per thread: ops that run concurrently on different threads both count, so the totals
can exceed the wall time.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import re
import time
from typing import Any, Callable

import jax

_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+) = (\S+) ([\w\-]+)\((.*)$", re.M)
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_CALLS = re.compile(r"calls=%?([\w.\-]+)")


def instruction_metadata(hlo_text: str) -> dict[str, dict]:
  """Instruction name -> {shape, opcode, op_name, matmul} from a compiled module's text."""
  out = {}
  for m in _INSTR.finditer(hlo_text):
    name, shape, opcode, rest = m.groups()
    op = _OP_NAME.search(rest)
    calls = _CALLS.search(rest)
    out[name] = dict(
      shape=shape, opcode=opcode, op_name=op.group(1) if op else "", calls=calls.group(1) if calls else ""
    )
  # A fusion is a matmul when its fused computation holds a dot / convolution.
  bodies = {}
  for comp in re.finditer(r"^%?([\w.\-]+) .*?\{\n(.*?)^\}", hlo_text, re.M | re.S):
    bodies[comp.group(1)] = comp.group(2)
  for info in out.values():
    body = bodies.get(info.pop("calls"), "")
    info["matmul"] = info["opcode"] in ("dot", "convolution") or bool(re.search(r" (dot|convolution)\(", body))
  return out


def _kind(name: str, info: dict) -> str:
  if info["matmul"]:
    return "matmul"
  if info["opcode"] in ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all"):
    return "collective"
  if info["opcode"] in ("copy", "transpose") or name.startswith(("copy", "transpose")):
    return "copy/transpose"
  return "elementwise/other"


_MODULE = re.compile(r"/[A-Z]\w*/")  # a Flax module scope (CamelCase class name) in the op_name


def _pass(op_name: str) -> str:
  if "transpose(jvp(" in op_name:
    return "backward"
  if "jvp(" in op_name:
    return "forward (differentiated)"
  if _MODULE.search(op_name):
    return "forward (no gradient: teacher)"
  return "rest (loss, optimizer, all-reduce)"


def summarize(trace_dir: str, hlo_text: str, steps: int, top: int = 30) -> dict:
  """Per-step time by op, by kind and by pass, from the newest trace under trace_dir."""
  files = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True), key=os.path.getmtime)
  if not files:
    raise FileNotFoundError(f"no *.xplane.pb under {trace_dir}")
  meta = instruction_metadata(hlo_text)
  per_op = collections.Counter()
  calls = collections.Counter()
  for plane in jax.profiler.ProfileData.from_file(files[-1]).planes:
    for line in plane.lines:
      for ev in line.events:
        if ev.name in meta:
          per_op[ev.name] += ev.duration_ns
          calls[ev.name] += 1
  ms = lambda ns: ns / steps / 1e6
  by_kind, by_pass = collections.Counter(), collections.Counter()
  for name, ns in per_op.items():
    by_kind[_kind(name, meta[name])] += ns
    by_pass[_pass(meta[name]["op_name"])] += ns
  ops = [
    dict(
      op=name,
      ms_per_step=ms(ns),
      calls_per_step=calls[name] / steps,
      kind=_kind(name, meta[name]),
      shape=meta[name]["shape"],
      op_name=meta[name]["op_name"],
    )
    for name, ns in per_op.most_common(top)
  ]
  return dict(
    steps=steps,
    total_ms_per_step=ms(sum(per_op.values())),
    by_kind={k: ms(v) for k, v in by_kind.most_common()},
    by_pass={k: ms(v) for k, v in by_pass.most_common()},
    top_ops=ops,
    trace=files[-1],
  )


def write_summary(path_md: str, summary: dict, title: str, wall_ms: float | None = None) -> None:
  total = summary["total_ms_per_step"] or 1.0
  lines = [
    f"# {title}",
    "",
    f"Trace: `{summary['trace']}` ({summary['steps']} steps). Op time summed over threads: "
    f"{summary['total_ms_per_step']:.1f} ms/step" + (f"; wall time {wall_ms:.1f} ms/step." if wall_ms else "."),
    "",
  ]
  for key, label in (("by_kind", "kind"), ("by_pass", "pass")):
    lines += [f"| {label} | ms/step | share |", "|---|---|---|"]
    lines += [f"| {k} | {v:.1f} | {100 * v / total:.0f}% |" for k, v in summary[key].items()]
    lines.append("")
  lines += ["| op | kind | shape | ms/step | calls/step | op_name |", "|---|---|---|---|---|---|"]
  for o in summary["top_ops"]:
    lines.append(
      f"| {o['op']} | {o['kind']} | `{o['shape']}` | {o['ms_per_step']:.2f} | "
      f"{o['calls_per_step']:.0f} | {o['op_name'][-90:]} |"
    )
  with open(path_md, "w") as f:
    f.write("\n".join(lines) + "\n")


def profile_step(
  step: Callable[[], Any],
  block: Callable[[Any], Any],
  compiled: Any,
  out_dir: str,
  steps: int = 2,
  title: str = "step profile",
) -> dict:
  """Traces `steps` calls of `step` into out_dir; writes ops.md / ops.json; returns the summary."""
  os.makedirs(out_dir, exist_ok=True)
  block(step())  # anything pending finishes outside the trace
  with jax.profiler.trace(out_dir):
    t0 = time.perf_counter()
    out = None
    for _ in range(steps):
      out = step()
    block(out)
    wall_ms = (time.perf_counter() - t0) * 1e3 / steps
  summary = summarize(out_dir, compiled.as_text(), steps)
  summary["wall_ms_per_step"] = wall_ms
  with open(os.path.join(out_dir, "ops.json"), "w") as f:
    json.dump(summary, f, indent=1)
  write_summary(os.path.join(out_dir, "ops.md"), summary, title, wall_ms)
  return summary
