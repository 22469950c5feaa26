"""`run`: every section of the benchmark, then benchmark.md, benchmark.json and benchmark.png."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Sequence

from absl import logging

from rail_kd_jax.experiments.benchmark import depth as depth_lib
from rail_kd_jax.experiments.benchmark.report import device_description, targets, versions, write_chart, write_markdown
from rail_kd_jax.experiments.benchmark.sections import (
  Options,
  bench_shape,
  compile_study,
  gemm_study,
  memory_check,
  torch_device,
)
from rail_kd_jax.experiments.benchmark.shapes import Shape
from rail_kd_jax.experiments.benchmark.timing import measure_peak_flops, measure_torch_peak_flops
from rail_kd_jax.experiments.benchmark.workload import demo_workload


def run(
  out_dir: str,
  shapes: Sequence[Shape],
  opts: Options,
  *,
  study: Shape | None = None,
  memory: Sequence[tuple[Shape, dict]] = (),
  workload: dict | None = None,
  depth: dict | None = None,
) -> list[dict]:
  """Runs every section and writes benchmark.md, benchmark.json and benchmark.png under `out_dir`.

  `workload`: keyword arguments of `workload.demo_workload` (the end-to-end section), or None.
  `depth`: keyword arguments of `depth.bench_depth` (the depth section; depth.png), or None.
  """
  os.makedirs(out_dir, exist_ok=True)
  t0 = time.perf_counter()
  load_start = os.getloadavg()[0]
  device = device_description()
  print(f"benchmark device: {device}", flush=True)
  logging.info("benchmark device: %s", device)
  peak_jax, peak_torch = measure_peak_flops(), measure_torch_peak_flops()
  # Utilisation is against the faster library's matmul: the machine's peak, not XLA's.
  peak = max(peak_jax, peak_torch or 0.0)
  logging.info(
    "peak float32 matmul: JAX %.0f GFLOP/s, PyTorch %s GFLOP/s",
    peak_jax / 1e9,
    f"{peak_torch / 1e9:.0f}" if peak_torch else "-",
  )
  rows = []
  for shape in shapes:
    rows += bench_shape(shape, opts, peak)
    if opts.gemm:
      rows += gemm_study(shape)
  if study is not None:
    rows += compile_study(study, parallel="shard_map")
  for shape, kw in memory:
    rows.append(memory_check(shape, **kw))
  if workload is not None:
    kw = dict(workload)
    if kw.get("peers"):
      kw.setdefault("torch_device", torch_device(opts.torch_device))
    rows += demo_workload(**kw)
  if depth is not None:
    rows += depth_lib.bench_depth(opts, peak, **depth)
  # The peak is measured again at the end and the larger kept: on a shared machine a
  # single measurement under load would inflate every utilisation figure.
  peak_jax = max(peak_jax, measure_peak_flops())
  peak_torch = max(peak_torch or 0.0, measure_torch_peak_flops() or 0.0) or None
  best = max(peak_jax, peak_torch or 0.0)
  if best > peak:
    for r in rows:
      if r.get("flop_utilization"):
        r["flop_utilization"] *= peak / best
    peak = best
  meta = {
    "device": device,
    "peak_gflops": peak / 1e9,
    "peak_gflops_jax": peak_jax / 1e9,
    "peak_gflops_pytorch": peak_torch / 1e9 if peak_torch else None,
    "load_start": load_start,
    "load_end": os.getloadavg()[0],
    "versions": versions(),
    "options": dataclasses.asdict(opts),
    "wall_s": time.perf_counter() - t0,
    "shape_labels": {s.name: s.label for s in list(shapes) + ([study] if study else []) + [m[0] for m in memory]},
  }
  meta["targets"] = targets(rows)
  with open(os.path.join(out_dir, "benchmark.json"), "w") as f:
    json.dump(rows, f, indent=1)
  with open(os.path.join(out_dir, "benchmark_meta.json"), "w") as f:
    json.dump(meta, f, indent=1)
  write_markdown(os.path.join(out_dir, "benchmark.md"), rows, meta)
  write_chart(os.path.join(out_dir, "benchmark.png"), rows)
  if depth is not None:
    depth_lib.write_chart(os.path.join(out_dir, "depth.png"), rows)
  print(open(os.path.join(out_dir, "benchmark.md")).read(), flush=True)
  return rows
