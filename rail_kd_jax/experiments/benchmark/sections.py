"""The sections, each a list of benchmark.json rows: step times, matmuls, compile times, memory."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from rail_kd_jax.core.defaults import base_config
from rail_kd_jax.experiments.benchmark import profiling
from rail_kd_jax.experiments.benchmark.analysis import cost_flops, memory_fields, peak_bytes
from rail_kd_jax.experiments.benchmark.cases import (
  ALL_METHODS,
  build_spec,
  cached_teacher_arrays,
  compile_case,
  distill_config,
  init_state,
  jax_runner,
  unrolled_flops,
)
from rail_kd_jax.experiments.benchmark.shapes import Shape, make_batch
from rail_kd_jax.experiments.benchmark.timing import Timing, best_seconds, cpu_torch, time_interleaved
from rail_kd_jax.training import teacher_cache

# The implementations besides "jax": PyTorch eager (float32, and bfloat16 autocast),
# PyTorch with torch.compile, TextBrewer (kd, pkd; float32).
PEERS = ("pytorch", "pytorch_compile", "textbrewer")
PRECISIONS = ("float32", "bfloat16")  # compute dtypes; params and optimizer state stay float32
PRECISION_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# The default method of the fixed-shape section (every peer and precision of it fits a
# 10-minute default run on a slow 2-core CPU); `--methods=all` for every one.
DEFAULT_METHODS = ("kd",)


ROW_KEYS = (
  "method",
  "impl",
  "precision",
  "teacher_cache",
  "shape",
  "workload",
  "compile_s",
  "step_ms_median",
  "step_ms_iqr",
  "examples_per_s",
  "flops_per_step",
  "flop_utilization",
  "peak_bytes",
)


def _row(**kw) -> dict:
  """One benchmark.json object (the documented keys first, extras after)."""
  row = {k: kw.pop(k, None) for k in ROW_KEYS}
  row.update(kw)
  return row


def _step_row(
  *,
  method,
  impl,
  precision,
  shape: Shape,
  timing: Timing | None,
  compile_s=None,
  flops=None,
  peak=None,
  peak_flops=None,
  teacher_cache=False,
  **extra,
) -> dict:
  """One step-time row: an implementation of a method on a shape, with its timing, FLOPs and memory."""
  ms = timing.step_ms_median if timing else None
  return _row(
    method=method,
    impl=impl,
    precision=precision,
    teacher_cache=teacher_cache,
    shape=shape.name,
    workload="fixed",
    compile_s=compile_s,
    step_ms_median=ms,
    step_ms_iqr=timing.step_ms_iqr if timing else None,
    examples_per_s=(shape.batch_size * 1e3 / ms) if ms else None,
    flops_per_step=flops,
    flop_utilization=(flops / (ms * 1e-3) / peak_flops) if (flops and ms and peak_flops) else None,
    peak_bytes=peak,
    kind="step",
    batch_size=shape.batch_size,
    length=shape.length,
    teacher_layers=shape.teacher.num_hidden_layers,
    student_layers=shape.student.num_hidden_layers,
    windows_ms=timing.windows_ms if timing else None,
    **extra,
  )


@dataclasses.dataclass
class Options:
  """What `bench_shape` runs and how it times it (the command line's flags)."""

  methods: Sequence[str] = DEFAULT_METHODS
  peers: Sequence[str] = PEERS
  cache_methods: Sequence[str] = ("kd", "rail_l")
  warmup: int = 1
  windows: int = 5
  steps_per_window: int = 1
  precisions: Sequence[str] = PRECISIONS
  compile_precisions: Sequence[str] = ("float32",)
  torch_device: str = "auto"
  attention: str = "auto"
  scan_layers: bool = False
  remat: bool = False
  parallel: str = "shard_map"
  num_devices: int = 0
  gemm: bool = True
  profile_dir: str = ""
  row_budget_s: float = 0.0  # > 0: a row stops taking windows after this many seconds (at least 2)


class _LossTracker:
  """Wraps a runner's `step` to keep its last output and count its steps (the loss after N steps)."""

  def __init__(self, step):
    self._step, self.last, self.steps = step, None, 0

  def __call__(self):
    self.last = self._step()
    self.steps += 1
    return self.last

  def loss(self) -> float | None:
    return None if self.last is None else float(self.last)


def _jax_case(shape, method, opts, batch, dtype, cached):
  """(runner, compiled, info) of the JAX train step of `method` in `dtype`, online or with the cache."""
  kw = dict(dtype=dtype, scan_layers=opts.scan_layers, remat=opts.remat, attention=opts.attention)
  spec = build_spec(shape, method, **kw)
  state, teacher_params = init_state(spec, shape, jax.random.PRNGKey(0))
  if cached:
    cbatch = dict(batch)
    cbatch.update(cached_teacher_arrays(spec, teacher_params, batch))
    spec = build_spec(shape, method, cached_teacher=True, **kw)
    state, _ = init_state(spec, shape, jax.random.PRNGKey(0))
    batch, teacher_params = cbatch, None
  case = compile_case(
    spec,
    shape,
    batch,
    parallel=opts.parallel,
    num_devices=opts.num_devices,
    state=state,
    teacher_params=teacher_params,
  )
  flops = (
    unrolled_flops(shape, method, batch, dtype=dtype, cached_teacher=cached, parallel=opts.parallel)
    if opts.scan_layers
    else cost_flops(case.compiled)
  )
  info = dict(
    compile_s=case.compile_s,
    flops=flops,
    peak=peak_bytes(case.compiled),
    dtype=jnp.dtype(dtype).name,
    scan_layers=opts.scan_layers,
    remat=opts.remat,
    attention=opts.attention,
  )
  return jax_runner(case), case.compiled, info


def cacheable(method: str) -> bool:
  """Whether the teacher cache can serve `method` (a name of ALL_METHODS)."""
  return teacher_cache.serves(distill_config(method))


def peer_runs(opts: Options) -> list[tuple[str, str]]:
  """(impl, precision) of every peer row the options ask for, in timing order."""
  out = []
  for impl in opts.peers:
    if impl == "pytorch":
      out += [(impl, p) for p in opts.precisions]
    elif impl == "pytorch_compile":
      out += [(impl, p) for p in opts.precisions if p in opts.compile_precisions]
    elif impl == "textbrewer":
      out += [(impl, "float32")] if "float32" in opts.precisions else []
  return out


def make_peer(impl: str, precision: str, shape: Shape, method: str, batch: dict, device: str):
  """The peer object of `impl` for `method` (None when that peer has no such method), and its first step's seconds."""
  peer_cls, supported = _peer(impl)
  if method not in supported:
    return None, None
  dcfg = distill_config(method)
  kw = {}
  if impl in ("pytorch", "pytorch_compile"):
    kw = dict(precision=precision, compile=impl == "pytorch_compile", device=device)
  peer = peer_cls(shape, dcfg.method, dcfg, base_config().optim, batch, **kw)
  t0 = time.perf_counter()
  peer.step()  # eager: allocations; compile: traces and compiles (the compile time reported)
  return peer, time.perf_counter() - t0


def bench_shape(shape: Shape, opts: Options, peak_flops: float) -> list[dict]:
  """Every method with JAX (online and cached teacher, every precision) and the peers on one shape.

  For each method, every implementation is compiled/built and warmed up first, then
  their timed windows are interleaved (JAX float32, JAX bfloat16, JAX + cache, PyTorch
  eager, PyTorch autocast, PyTorch compiled, TextBrewer, JAX float32, ...), so a change
  of machine load between windows hits all of them alike. Every row reports the loss
  after its steps (`final_loss`, `loss_steps`).
  """
  rows = []
  batch = make_batch(shape)
  device = torch_device(opts.torch_device) if opts.peers else None
  compile_note = None
  if "pytorch_compile" in opts.peers:
    from rail_kd_jax.experiments.benchmark.peers import torch_peer

    compile_note = torch_peer.compile_unavailable()
    if compile_note:
      logging.warning("pytorch_compile rows skipped: %s", compile_note)
  for method in opts.methods:
    runners, info, compiled = {}, {}, {}
    for precision in opts.precisions:
      dtype = PRECISION_DTYPES[precision]
      for cached in (False, True):
        if cached and not (method in opts.cache_methods and cacheable(method)):
          continue
        key = ("jax", cached, precision)
        runners[key], compiled[key], info[key] = _jax_case(shape, method, opts, batch, dtype, cached)
    for impl, precision in peer_runs(opts):
      key = (impl, False, precision)
      if impl == "pytorch_compile" and compile_note:
        rows.append(
          _step_row(method=method, impl=impl, precision=precision, shape=shape, timing=None, unavailable=compile_note)
        )
        continue
      peer, first_s = make_peer(impl, precision, shape, method, batch, device)
      if peer is None:
        continue
      from rail_kd_jax.experiments.benchmark.peers import torch_peer

      runners[key] = (peer.step, torch_peer.synchronizer(device))
      # FLOPs of the same work as counted by XLA for the JAX step.
      jax_info = info.get(("jax", False, precision)) or info.get(("jax", False, opts.precisions[0])) or {}
      info[key] = dict(
        flops=jax_info.get("flops"),
        dtype=precision,
        scan_layers=False,
        remat=False,
        threads=_torch_threads(),
        device=device,
        first_step_s=first_s,
        compile_s=first_s if impl == "pytorch_compile" else None,
      )
    trackers = {k: _LossTracker(step) for k, (step, _) in runners.items()}
    timed = {k: (trackers[k], block) for k, (_, block) in runners.items()}
    timings = time_interleaved(
      timed,
      warmup=opts.warmup,
      windows=opts.windows,
      steps_per_window=opts.steps_per_window,
      skip_warmup=[k for k in runners if k[0] != "jax"],  # their builder ran a first step
      budget_s=opts.row_budget_s,
      slow=[k for k in runners if opts.row_budget_s > 0 and (info[k].get("first_step_s") or 0) > opts.row_budget_s],
    )
    if opts.profile_dir:
      for key, program in compiled.items():
        name = f"{shape.name}-{method}-{key[2]}" + ("-cache" if key[1] else "")
        summary = profiling.profile_step(
          *runners[key], program, os.path.join(opts.profile_dir, name), title=f"{name}: JAX train step"
        )
        info[key]["profile"] = dict(
          dir=os.path.join(opts.profile_dir, name),
          by_kind=summary["by_kind"],
          by_pass=summary["by_pass"],
          wall_ms=summary["wall_ms_per_step"],
        )
        logging.info("profile %s: %s", name, {k: round(v) for k, v in summary["by_kind"].items()})
    for (impl, cached, precision), timing in timings.items():
      kw = dict(info[(impl, cached, precision)])
      tracker = trackers[(impl, cached, precision)]
      if impl == "pytorch_compile" and kw.get("compile_s") is not None:
        # The first step's time minus a normal step's: what compiling cost.
        kw["compile_s"] = max(0.0, kw["compile_s"] - timing.step_ms_median / 1e3)
      rows.append(
        _step_row(
          method=method,
          impl=impl,
          precision=precision,
          shape=shape,
          timing=timing,
          compile_s=kw.pop("compile_s", None),
          flops=kw.pop("flops"),
          peak=kw.pop("peak", None),
          peak_flops=peak_flops,
          teacher_cache=cached,
          final_loss=tracker.loss(),
          loss_steps=tracker.steps + (1 if impl != "jax" else 0),
          **kw,
        )
      )
      _log_row(rows[-1])
    del runners, timed, trackers, compiled
  return rows


def torch_device(name: str = "auto") -> str | None:
  """The peers' torch device ('cpu'/'cuda') for `--torch_device=name`, None without torch."""
  try:
    from rail_kd_jax.experiments.benchmark.peers import torch_peer
  except ImportError:
    return None
  return torch_peer.resolve_device(name)


def _peer(impl: str):
  """(peer class, the methods it runs) of one of PEERS."""
  # torch is optional: imported only when a peer row runs
  if impl in ("pytorch", "pytorch_compile"):
    from rail_kd_jax.experiments.benchmark.peers import torch_peer

    return torch_peer.TorchPeer, ALL_METHODS
  if impl == "textbrewer":
    from rail_kd_jax.experiments.benchmark.peers import textbrewer_peer

    return textbrewer_peer.TextBrewerPeer, textbrewer_peer.METHODS
  raise ValueError(f"--peers: unknown peer {impl!r}; valid: {', '.join(PEERS)}")


def _torch_threads() -> int | None:
  """PyTorch's intra-op thread count (None without torch)."""
  try:
    import torch  # torch is optional: imported only when a peer row runs

    return int(torch.get_num_threads())
  except ImportError:
    return None


def _log_row(row: dict) -> None:
  ms = row.get("step_ms_median")
  logging.info(
    "%-7s %-15s %-8s cache=%-5s %-16s step %s ms (IQR %s), compile %s s, loss %s",
    row["method"],
    row["impl"],
    row["precision"],
    row["teacher_cache"],
    row["shape"],
    f"{ms:.1f}" if ms else "-",
    f"{row['step_ms_iqr']:.1f}" if row.get("step_ms_iqr") is not None else "-",
    f"{row['compile_s']:.1f}" if row.get("compile_s") is not None else "-",
    f"{row['final_loss']:.4f}" if row.get("final_loss") is not None else "-",
  )


def gemm_study(shape: Shape, repeats: int = 10) -> list[dict]:
  """float32 matmuls of the shape's layers, JAX (XLA) vs PyTorch, one op each.

  The dense layers ([B*T, H] x [H, H], [B*T, H] x [H, I], [B*T, I] x [H, I]^T) and the
  attention scores ([B*heads, T, D] x [D, T]): where the train step is slower than the
  PyTorch peer, this shows how much of it is the matmul library itself.
  """
  s = shape.student
  bt, h, i = shape.batch_size * shape.length, s.hidden_size, s.intermediate_size
  cases = [
    ("dense H->H", (bt, h), (h, h)),
    ("dense H->I", (bt, h), (h, i)),
    ("dense I->H", (bt, i), (i, h)),
    (
      "attention scores",
      (shape.batch_size * s.num_attention_heads, shape.length, s.head_dim),
      (shape.batch_size * s.num_attention_heads, s.head_dim, shape.length),
    ),
  ]
  torch = cpu_torch()
  rows, rng = [], np.random.default_rng(0)
  f = jax.jit(jnp.matmul)
  for name, sa, sb in cases:
    a, b = rng.standard_normal(sa, np.float32), rng.standard_normal(sb, np.float32)
    flops = 2.0 * np.prod(sa) * sb[-1]
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    tj = best_seconds(lambda: jax.block_until_ready(f(ja, jb)), repeats)
    tt = None
    if torch is not None:
      ta, tb = torch.from_numpy(a), torch.from_numpy(b)
      tt = best_seconds(lambda: torch.matmul(ta, tb), repeats)
    rows.append(
      _row(
        kind="gemm",
        precision="float32",
        workload="fixed",
        shape=shape.name,
        op=name,
        a=list(sa),
        b=list(sb),
        flops=flops,
        jax_ms=tj * 1e3,
        pytorch_ms=tt * 1e3 if tt else None,
        jax_gflops=flops / tj / 1e9,
        pytorch_gflops=flops / tt / 1e9 if tt else None,
      )
    )
    logging.info(
      "gemm %-16s %s x %s: JAX %.2f ms, PyTorch %s ms", name, sa, sb, tj * 1e3, f"{tt * 1e3:.2f}" if tt else "-"
    )
  return rows


def compile_study(
  base: Shape, layer_counts: Sequence[int] = (6, 12, 24), method: str = "rail_l", parallel: str = "shard_map"
) -> list[dict]:
  """Compile time (lower + compile, abstract inputs) of the train step vs teacher depth, with and without scan."""
  rows = []
  batch = make_batch(base)
  for scan in (False, True):
    for num_teacher_layers in layer_counts:
      shape = dataclasses.replace(
        base,
        name=f"{base.name}:teacher{num_teacher_layers}",
        teacher=dataclasses.replace(base.teacher, num_hidden_layers=num_teacher_layers),
      )
      spec = build_spec(shape, method, scan_layers=scan)
      case = compile_case(spec, shape, batch, parallel=parallel, abstract=True)
      rows.append(
        _row(
          method=method,
          impl="jax",
          teacher_cache=False,
          shape=shape.name,
          compile_s=case.compile_s,
          # (a scanned step's cost analysis counts the loop body once: no FLOPs for it)
          flops_per_step=None if scan else cost_flops(case.compiled),
          peak_bytes=peak_bytes(case.compiled),
          kind="compile",
          precision="float32",
          workload="fixed",
          scan_layers=scan,
          teacher_layers=num_teacher_layers,
          student_layers=shape.student.num_hidden_layers,
          dtype="float32",
          batch_size=shape.batch_size,
          length=shape.length,
        )
      )
      logging.info("compile %s scan=%s teacher=%d layers: %.1f s", method, scan, num_teacher_layers, case.compile_s)
      del case
  return rows


def memory_check(
  shape: Shape,
  method: str = "rail_l",
  dtype: str = "bfloat16",
  scan_layers: bool = False,
  remat: bool = False,
  parallel: str = "shard_map",
) -> dict:
  """Compile-only (abstract inputs) peak memory of one train step from XLA's memory analysis."""
  spec = build_spec(
    shape, method, dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32, scan_layers=scan_layers, remat=remat
  )
  case = compile_case(spec, shape, make_batch(shape), parallel=parallel, num_devices=1, abstract=True)
  row = _row(
    method=method,
    impl="jax",
    teacher_cache=False,
    shape=shape.name,
    compile_s=case.compile_s,
    flops_per_step=cost_flops(case.compiled),
    peak_bytes=peak_bytes(case.compiled),
    kind="memory",
    precision=dtype,
    workload="fixed",
    dtype=dtype,
    scan_layers=scan_layers,
    remat=remat,
    batch_size=shape.batch_size,
    length=shape.length,
    teacher_layers=shape.teacher.num_hidden_layers,
    student_layers=shape.student.num_hidden_layers,
    memory=memory_fields(case.compiled),
  )
  logging.info("memory %s %s: %.2f GB", shape.name, dtype, (row["peak_bytes"] or 0) / 1e9)
  return row
