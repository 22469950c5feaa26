r"""Training-time benchmark: every distillation method, the teacher cache, and PyTorch peers.

  python -m rail_kd_jax.benchmark --out=/tmp/bench            # default: MiniLM-6 -> 3, b32, T128
  python -m rail_kd_jax.benchmark --out=/tmp/bench --shapes=tiny --peers= --compile_study=False

For each shape (a teacher/student pair with random weights, a batch size and a
length) it times every method of `distill.methods.METHODS` with the real train
step (`step.make_train_step` under `parallel.DataParallel`, AdamW from
`optim.make_optimizer`): compile time (lower + compile) separately, then
steady-state step time over repeated timed windows after warm-up, each window
ending in `jax.block_until_ready`. FLOPs per step come from XLA's cost analysis
of the compiled step, peak memory from its memory analysis, and the FLOP
utilisation is relative to a large float32 matmul timed on the same machine.

In the same run the same work is trained with PyTorch as a user would otherwise
do it (`peers.torch_peer`: transformers models + the same loss formulas + AdamW)
and with TextBrewer (`peers.textbrewer_peer`: kd and pkd, which its
intermediate-layer matches express), and the teacher cache is timed against
the online teacher. Optional sections: compile time against depth with and
without `scan_layers`, and a compile-only memory check of RoBERTa-large -> 6
layers in bfloat16.

Outputs under --out: benchmark.md (tables), benchmark.json (one object per row)
and benchmark.png (a chart). See docs/BENCHMARK.md for measured figures.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rail_kd_jax import models, optim, profiling
from rail_kd_jax import parallel as parallel_lib
from rail_kd_jax.defaults import base_config
from rail_kd_jax.distill import methods as methods_lib
from rail_kd_jax.step import AXIS, StepSpec, make_train_step, teacher_outputs
from rail_kd_jax.train_state import TrainState

METHODS = tuple(methods_lib.METHODS)  # none, kd, pkd, alp_kd, ckd, rail_l, rail_c
# Benchmark-only variants: name -> (method, distill overrides). The plain `ckd` row is CKD
# on every token's hidden states (ckd_granularity='token', the authors' form and the
# default); ckd_pooled distils pooled vectors like RAIL-KD (and can use the teacher cache).
VARIANTS = {"ckd_pooled": ("ckd", {"ckd_granularity": "pooled"})}
ALL_METHODS = METHODS + tuple(VARIANTS)
IMPLS = ("jax", "pytorch", "textbrewer")
NUM_LABELS = 2


# ----------------------------------------------------------------------------
# Shapes.


@dataclasses.dataclass(frozen=True)
class Shape:
  """A teacher/student pair (random weights) with its batch size and length."""

  name: str
  teacher: models.EncoderConfig
  student: models.EncoderConfig
  batch_size: int
  length: int

  @property
  def label(self) -> str:
    t, s = self.teacher, self.student
    return (
      f"{self.name}: {t.model_type} {t.num_hidden_layers}x{t.hidden_size} -> "
      f"{s.num_hidden_layers}x{s.hidden_size}, b{self.batch_size}, T{self.length}"
    )


def _bert(layers: int, hidden: int, heads: int, ff: int, **kw) -> models.EncoderConfig:
  kw.setdefault("vocab_size", 30522)
  return models.EncoderConfig(
    model_type=kw.pop("model_type", "bert"),
    hidden_size=hidden,
    num_hidden_layers=layers,
    num_attention_heads=heads,
    intermediate_size=ff,
    num_labels=NUM_LABELS,
    **kw,
  )


def _roberta(layers: int, hidden: int, heads: int, ff: int) -> models.EncoderConfig:
  return _bert(
    layers,
    hidden,
    heads,
    ff,
    model_type="roberta",
    vocab_size=50265,
    pad_token_id=1,
    max_position_embeddings=514,
    layer_norm_eps=1e-5,
    type_vocab_size=1,
  )


SHAPES = {
  # Test-sized: 4 -> 2 layers, 32 wide.
  "tiny": Shape(
    "tiny",
    _bert(4, 32, 4, 64, vocab_size=128, max_position_embeddings=64),
    _bert(2, 32, 4, 64, vocab_size=128, max_position_embeddings=64),
    16,
    32,
  ),
  # MiniLM-L6 (all-MiniLM-L6-v2 shape) -> 3 layers (SPEC §6).
  "minilm6-3": Shape("minilm6-3", _bert(6, 384, 12, 1536), _bert(3, 384, 12, 1536), 32, 128),
  # BERT-base -> 6 layers of the same width (SPEC §1).
  "bert-base-6": Shape("bert-base-6", _bert(12, 768, 12, 3072), _bert(6, 768, 12, 3072), 32, 128),
  # RoBERTa-large -> DistilRoBERTa shape (6 x 768), the paper's main pair.
  "roberta-large-6": Shape("roberta-large-6", _roberta(24, 1024, 16, 4096), _roberta(6, 768, 12, 3072), 32, 128),
}


def with_batch(shape: Shape, batch_size: int = 0, length: int = 0) -> Shape:
  return dataclasses.replace(shape, batch_size=batch_size or shape.batch_size, length=length or shape.length)


def make_batch(shape: Shape, seed: int = 0) -> dict[str, np.ndarray]:
  """Random token ids with real lengths in [T/2, T] (right padding), labels and example mask."""
  rng = np.random.default_rng(seed)
  b, t = shape.batch_size, shape.length
  cfg = shape.teacher
  lo = 5 if cfg.model_type == "roberta" else 1  # above the special/pad ids
  ids = rng.integers(lo, min(cfg.vocab_size, shape.student.vocab_size), size=(b, t)).astype(np.int32)
  lengths = rng.integers(max(2, t // 2), t + 1, size=b)
  mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.int32)
  ids = np.where(mask > 0, ids, cfg.pad_token_id).astype(np.int32)
  return {
    "input_ids": ids,
    "attention_mask": mask,
    "token_type_ids": np.zeros((b, t), np.int32),
    "labels": rng.integers(0, NUM_LABELS, size=b).astype(np.int32),
    "example_mask": np.ones(b, np.float32),
  }


# ----------------------------------------------------------------------------
# Timing helpers.


@dataclasses.dataclass
class Timing:
  step_ms_median: float
  step_ms_iqr: float
  windows_ms: list[float]


def time_windows(
  step: Callable[[], Any],
  *,
  warmup: int,
  windows: int,
  steps_per_window: int,
  block: Callable[[Any], Any] = jax.block_until_ready,
) -> Timing:
  """Runs `step` `warmup` times, then `windows` timed windows of `steps_per_window` steps.

  Each window ends by blocking on the last step's result, so asynchronous
  dispatch never hides work; the per-step time of a window is its wall time
  divided by `steps_per_window`. Returns the median and interquartile range.
  """
  out = None
  for _ in range(warmup):
    out = step()
  block(out)
  per_step = []
  for _ in range(windows):
    t0 = time.perf_counter()
    for _ in range(steps_per_window):
      out = step()
    block(out)
    per_step.append((time.perf_counter() - t0) * 1e3 / steps_per_window)
  q = np.percentile(per_step, [25, 75]) if len(per_step) > 1 else (per_step[0], per_step[0])
  return Timing(float(statistics.median(per_step)), float(q[1] - q[0]), per_step)


def _best_seconds(fn: Callable[[], Any], repeats: int) -> float:
  fn()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t0)
  return best


def measure_peak_flops(n: int = 2048, repeats: int = 8) -> float:
  """FLOP/s of a large float32 matmul with JAX on the default device (best of `repeats`)."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
  f = jax.jit(lambda x, y: x @ y)
  return 2.0 * n**3 / _best_seconds(lambda: jax.block_until_ready(f(a, b)), repeats)


def _cpu_torch():
  """The torch module when JAX runs on the CPU and torch is installed (the peers' setting), else None."""
  if jax.default_backend() != "cpu":
    return None
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return torch


def measure_torch_peak_flops(n: int = 2048, repeats: int = 8) -> float | None:
  """The same matmul with PyTorch on the CPU (None without torch or off CPU)."""
  torch = _cpu_torch()
  if torch is None:
    return None
  a, b = torch.randn(n, n), torch.randn(n, n)
  return 2.0 * n**3 / _best_seconds(lambda: torch.matmul(a, b), repeats)


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
  torch = _cpu_torch()
  rows, rng = [], np.random.default_rng(0)
  f = jax.jit(jnp.matmul)
  for name, sa, sb in cases:
    a, b = rng.standard_normal(sa, np.float32), rng.standard_normal(sb, np.float32)
    flops = 2.0 * np.prod(sa) * sb[-1]
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    tj = _best_seconds(lambda: jax.block_until_ready(f(ja, jb)), repeats)  # pylint: disable=cell-var-from-loop
    tt = None
    if torch is not None:
      ta, tb = torch.from_numpy(a), torch.from_numpy(b)
      tt = _best_seconds(lambda: torch.matmul(ta, tb), repeats)  # pylint: disable=cell-var-from-loop
    rows.append(
      _row(
        kind="gemm",
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


def cost_flops(compiled) -> float | None:
  """FLOPs of one call of a compiled program (XLA cost analysis), or None."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # noqa: BLE001 -- some backends have none
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  if not cost or "flops" not in cost:
    return None
  return float(cost["flops"])


def peak_bytes(compiled) -> int | None:
  """Peak device memory of a compiled program: arguments + outputs + temporaries - aliased."""
  m = _memory_fields(compiled)
  keys = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes", "alias_size_in_bytes")
  if not m or not all(k in m for k in keys):
    return None
  return m["argument_size_in_bytes"] + m["output_size_in_bytes"] + m["temp_size_in_bytes"] - m["alias_size_in_bytes"]


# ----------------------------------------------------------------------------
# The JAX side: the real train step.


def distill_config(method: str, **overrides):
  """config.distill for `method` (a name of METHODS or VARIANTS) with defaults + overrides."""
  dcfg = base_config().distill
  if method in VARIANTS:
    method, extra = VARIANTS[method]
    overrides = {**extra, **overrides}
  dcfg.method = method
  for k, v in overrides.items():
    dcfg[k] = v
  return dcfg


@dataclasses.dataclass
class JaxCase:
  """One method on one shape: the real StepSpec, placed state and a compiled step."""

  spec: StepSpec
  par: parallel_lib.DataParallel
  state: Any  # placed (replicated) TrainState, or shapes when abstract
  teacher_params: Any
  batch: dict  # placed
  compiled: Any
  compile_s: float


def build_spec(
  shape: Shape,
  method: str,
  *,
  dtype=jnp.float32,
  scan_layers: bool = False,
  remat: bool = False,
  cached_teacher: bool = False,
  dcfg=None,
):
  """The real StepSpec for `shape` and `method` (random-init modules); no params materialised."""
  dcfg = dcfg if dcfg is not None else distill_config(method)
  module_kw = dict(dtype=dtype, scan_layers=scan_layers, remat=remat)
  student = models.Encoder(shape.student, **module_kw)
  teacher = models.Encoder(shape.teacher, **module_kw)
  method_obj = methods_lib.get_method(dcfg.method)
  methods_lib.validate(
    dcfg,
    shape.student.num_hidden_layers,
    shape.teacher.num_hidden_layers,
    shape.student.hidden_size,
    shape.teacher.hidden_size,
  )
  tx, schedule = optim.make_optimizer(base_config().optim, total_steps=10_000)
  spec = StepSpec(
    student=student,
    teacher=teacher,
    method=method_obj,
    dcfg=dcfg,
    tx=tx,
    schedule=schedule,
    seed=0,
    num_student_layers=shape.student.num_hidden_layers,
    num_teacher_layers=shape.teacher.num_hidden_layers,
    steps_per_epoch=100,
    is_regression=False,
    cached_teacher=cached_teacher,
  )
  return spec


def init_state(spec: StepSpec, shape: Shape, rng: jax.Array, *, abstract: bool = False):
  """(TrainState, teacher params): materialised with HF-style init, or ShapeDtypeStructs."""
  k_s, k_t, k_h = jax.random.split(rng, 3)
  head = lambda k: spec.method.init_heads(
    k, spec.dcfg, shape.student.hidden_size, shape.teacher.hidden_size, spec.num_student_layers, spec.num_teacher_layers
  )
  if abstract:
    student_params = models.param_shapes(spec.student)
    teacher_params = None if spec.cached_teacher else models.param_shapes(spec.teacher)
    head_params = jax.eval_shape(head, k_h)
    state = jax.eval_shape(lambda p: TrainState.create(p, spec.tx), {"student": student_params, "heads": head_params})
    return state, teacher_params
  student_params = models.init_params(spec.student, k_s)
  teacher_params = None if spec.cached_teacher else models.init_params(spec.teacher, k_t)
  state = TrainState.create({"student": student_params, "heads": head(k_h)}, spec.tx)
  return state, teacher_params


def cached_teacher_arrays(spec: StepSpec, teacher_params: Any, batch: dict, dtype=jnp.bfloat16) -> dict:
  """The teacher-cache entries of one batch (what `teacher_cache` stores per example)."""
  out = jax.jit(lambda p, b: teacher_outputs(dataclasses.replace(spec, cached_teacher=False), p, b))(
    teacher_params, {k: jnp.asarray(v) for k, v in batch.items()}
  )
  return {
    "teacher_logits": np.asarray(out["logits"].astype(dtype)),
    "teacher_pooled": np.asarray(jnp.swapaxes(out["pooled"], 0, 1).astype(dtype)),
    "teacher_cls": np.asarray(jnp.swapaxes(out["cls"], 0, 1).astype(dtype)),
  }


def _abstract(par: parallel_lib.DataParallel, tree: Any, spec: P) -> Any:
  """ShapeDtypeStructs with the shardings `DataParallel(shard_map)` would give the values."""
  sharding = NamedSharding(par.mesh, spec)
  return jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(
      np.shape(x), np.asarray(x).dtype if isinstance(x, np.ndarray) else x.dtype, sharding=sharding
    ),
    tree,
  )


def compile_case(
  spec: StepSpec,
  shape: Shape,
  batch: dict,
  *,
  parallel: str = "shard_map",
  num_devices: int = 0,
  abstract: bool = False,
  teacher_params: Any = None,
  state: Any = None,
) -> JaxCase:
  """Places (or only describes, `abstract=True`) the inputs and compiles the train step.

  `compile_s` is the wall time of `lower(...).compile()` (tracing included).
  Abstract compilation needs parallel='shard_map' (it lowers with ShapeDtypeStructs).
  """
  par = parallel_lib.DataParallel(parallel, num_devices)
  if abstract and parallel != "shard_map":
    raise ValueError("abstract (compile-only) cases need parallel='shard_map'")
  if state is None:
    state, teacher_params = init_state(spec, shape, jax.random.PRNGKey(0), abstract=abstract)
  step_fn = par.compile_train(make_train_step(spec))
  if abstract:
    args = (_abstract(par, state, P()), _abstract(par, teacher_params, P()), _abstract(par, batch, P(AXIS)))
  else:
    args = (
      par.replicate(state),
      par.replicate(teacher_params) if teacher_params is not None else None,
      par.shard_batch(batch),
    )
  t0 = time.perf_counter()
  compiled = step_fn.lower(*args).compile()
  compile_s = time.perf_counter() - t0
  return JaxCase(
    spec=spec, par=par, state=args[0], teacher_params=args[1], batch=args[2], compiled=compiled, compile_s=compile_s
  )


def unrolled_flops(
  shape: Shape,
  method: str,
  batch: dict,
  *,
  dtype=jnp.float32,
  cached_teacher: bool = False,
  parallel: str = "shard_map",
) -> float | None:
  """FLOPs of the step with unrolled layers, from the lowered (unoptimised) HLO; no compile.

  XLA's cost analysis counts a while loop's body once, so a `scan_layers` step reports
  about one layer's FLOPs per stack; this gives the real count for those rows.
  """
  spec = build_spec(shape, method, dtype=dtype, cached_teacher=cached_teacher)
  par = parallel_lib.DataParallel(parallel, 0)
  state, teacher_params = init_state(spec, shape, jax.random.PRNGKey(0), abstract=True)
  args = (_abstract(par, state, P()), _abstract(par, teacher_params, P()), _abstract(par, batch, P(AXIS)))
  try:
    cost = par.compile_train(make_train_step(spec)).lower(*args).cost_analysis()
  except Exception:  # noqa: BLE001
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return float(cost["flops"]) if cost and "flops" in cost else None


# ----------------------------------------------------------------------------
# Rows.


def _row(**kw) -> dict:
  """One benchmark.json object (the documented keys first, extras after)."""
  row = {
    k: kw.pop(k, None)
    for k in (
      "method",
      "impl",
      "teacher_cache",
      "shape",
      "compile_s",
      "step_ms_median",
      "step_ms_iqr",
      "examples_per_s",
      "flops_per_step",
      "flop_utilization",
      "peak_bytes",
    )
  }
  row.update(kw)
  return row


def _step_row(
  *,
  method,
  impl,
  shape: Shape,
  timing: Timing | None,
  compile_s=None,
  flops=None,
  peak=None,
  peak_flops=None,
  teacher_cache=False,
  **extra,
) -> dict:
  ms = timing.step_ms_median if timing else None
  return _row(
    method=method,
    impl=impl,
    teacher_cache=teacher_cache,
    shape=shape.name,
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
  methods: Sequence[str] = ALL_METHODS
  peers: Sequence[str] = ("pytorch", "textbrewer")
  cache_methods: Sequence[str] = ("kd", "rail_l")
  warmup: int = 1
  windows: int = 5
  steps_per_window: int = 1
  dtype: str = "float32"
  scan_layers: bool = False
  remat: bool = False
  parallel: str = "shard_map"
  num_devices: int = 0
  gemm: bool = True
  profile_dir: str = ""


def bench_shape(shape: Shape, opts: Options, peak_flops: float) -> list[dict]:
  """Every method with JAX (online and cached teacher) and the peers on one shape.

  For each method, every implementation is compiled/built and warmed up first, then
  their timed windows are interleaved (JAX, JAX + cache, PyTorch, TextBrewer, JAX,
  ...), so a change of machine load between windows hits all of them alike.
  """
  rows = []
  batch = make_batch(shape)
  dtype = jnp.bfloat16 if opts.dtype == "bfloat16" else jnp.float32
  common = dict(dtype=opts.dtype, scan_layers=opts.scan_layers, remat=opts.remat)
  peers = list(opts.peers)
  if opts.dtype != "float32" and peers:
    logging.warning("peers run in float32 only; skipped for --dtype=%s", opts.dtype)
    peers = []
  for method in opts.methods:
    runners, info = {}, {}
    spec = build_spec(shape, method, dtype=dtype, scan_layers=opts.scan_layers, remat=opts.remat)
    state, teacher_params = init_state(spec, shape, jax.random.PRNGKey(0))
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
      unrolled_flops(shape, method, batch, dtype=dtype, parallel=opts.parallel)
      if opts.scan_layers
      else cost_flops(case.compiled)
    )
    runners[("jax", False)] = _jax_runner(case)
    compiled = {("jax", False): case.compiled}
    info[("jax", False)] = dict(compile_s=case.compile_s, flops=flops, peak=peak_bytes(case.compiled), **common)
    cacheable = spec.method.needs_teacher and not (spec.dcfg.method == "ckd" and spec.dcfg.ckd_granularity == "token")
    if method in opts.cache_methods and cacheable:
      cspec = build_spec(
        shape, method, dtype=dtype, scan_layers=opts.scan_layers, remat=opts.remat, cached_teacher=True
      )
      cbatch = dict(batch)
      cbatch.update(cached_teacher_arrays(spec, teacher_params, batch))
      cstate, _ = init_state(cspec, shape, jax.random.PRNGKey(0))
      ccase = compile_case(
        cspec, shape, cbatch, parallel=opts.parallel, num_devices=opts.num_devices, state=cstate, teacher_params=None
      )
      cflops = (
        unrolled_flops(shape, method, cbatch, dtype=dtype, cached_teacher=True, parallel=opts.parallel)
        if opts.scan_layers
        else cost_flops(ccase.compiled)
      )
      runners[("jax", True)] = _jax_runner(ccase)
      compiled[("jax", True)] = ccase.compiled
      info[("jax", True)] = dict(compile_s=ccase.compile_s, flops=cflops, peak=peak_bytes(ccase.compiled), **common)
    del state, teacher_params
    for impl in peers:
      peer_cls, supported = _peer(impl)
      if method in supported:
        dcfg = distill_config(method)
        peer = peer_cls(shape, dcfg.method, dcfg, base_config().optim, batch)
        runners[(impl, False)] = (peer.step, lambda x: None)
        # FLOPs of the same work as counted by XLA for the JAX step.
        info[(impl, False)] = dict(
          flops=flops, dtype="float32", scan_layers=False, remat=False, threads=_torch_threads()
        )
    timings = time_interleaved(
      runners, warmup=opts.warmup, windows=opts.windows, steps_per_window=opts.steps_per_window
    )
    if opts.profile_dir:
      for key, program in compiled.items():
        name = f"{shape.name}-{method}" + ("-cache" if key[1] else "")
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
    for (impl, cached), timing in timings.items():
      kw = dict(info[(impl, cached)])
      rows.append(
        _step_row(
          method=method,
          impl=impl,
          shape=shape,
          timing=timing,
          compile_s=kw.pop("compile_s", None),
          flops=kw.pop("flops"),
          peak=kw.pop("peak", None),
          peak_flops=peak_flops,
          teacher_cache=cached,
          **kw,
        )
      )
      _log_row(rows[-1])
    del runners, case
  return rows


def _jax_runner(case: JaxCase):
  holder = {"state": case.state}

  def step():
    holder["state"], metrics = case.compiled(holder["state"], case.teacher_params, case.batch)
    return metrics["loss"]

  return step, jax.block_until_ready


def time_interleaved(runners: dict, *, warmup: int, windows: int, steps_per_window: int) -> dict:
  """`time_windows` for several `(step, block)` runners, their windows interleaved."""
  for step, block in runners.values():
    out = None
    for _ in range(warmup):
      out = step()
    block(out)
  per_step = {k: [] for k in runners}
  for _ in range(windows):
    for key, (step, block) in runners.items():
      t0 = time.perf_counter()
      out = None
      for _ in range(steps_per_window):
        out = step()
      block(out)
      per_step[key].append((time.perf_counter() - t0) * 1e3 / steps_per_window)
  result = {}
  for key, values in per_step.items():
    q = np.percentile(values, [25, 75])
    result[key] = Timing(float(statistics.median(values)), float(q[1] - q[0]), values)
  return result


def _peer(impl: str):
  if impl == "pytorch":
    from rail_kd_jax.peers import torch_peer

    return torch_peer.TorchPeer, ALL_METHODS
  if impl == "textbrewer":
    from rail_kd_jax.peers import textbrewer_peer

    return textbrewer_peer.TextBrewerPeer, textbrewer_peer.METHODS
  raise ValueError(f"--peers: unknown peer {impl!r}; valid: pytorch, textbrewer")


def _torch_threads() -> int | None:
  try:
    import torch

    return int(torch.get_num_threads())
  except ImportError:
    return None


def _log_row(row: dict) -> None:
  ms = row.get("step_ms_median")
  logging.info(
    "%-7s %-10s cache=%-5s %-16s step %s ms (IQR %s), compile %s s",
    row["method"],
    row["impl"],
    row["teacher_cache"],
    row["shape"],
    f"{ms:.1f}" if ms else "-",
    f"{row['step_ms_iqr']:.1f}" if row.get("step_ms_iqr") is not None else "-",
    f"{row['compile_s']:.1f}" if row.get("compile_s") is not None else "-",
  )


def compile_study(
  base: Shape, layer_counts: Sequence[int] = (6, 12, 24), method: str = "rail_l", parallel: str = "shard_map"
) -> list[dict]:
  """Compile time (lower + compile, abstract inputs) of the train step vs teacher depth, with and without scan."""
  rows = []
  batch = make_batch(base)
  for scan in (False, True):
    for n in layer_counts:
      shape = dataclasses.replace(
        base, name=f"{base.name}:teacher{n}", teacher=dataclasses.replace(base.teacher, num_hidden_layers=n)
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
          scan_layers=scan,
          teacher_layers=n,
          student_layers=shape.student.num_hidden_layers,
          dtype="float32",
          batch_size=shape.batch_size,
          length=shape.length,
        )
      )
      logging.info("compile %s scan=%s teacher=%d layers: %.1f s", method, scan, n, case.compile_s)
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
    dtype=dtype,
    scan_layers=scan_layers,
    remat=remat,
    batch_size=shape.batch_size,
    length=shape.length,
    teacher_layers=shape.teacher.num_hidden_layers,
    student_layers=shape.student.num_hidden_layers,
    memory=_memory_fields(case.compiled),
  )
  logging.info("memory %s %s: %.2f GB", shape.name, dtype, (row["peak_bytes"] or 0) / 1e9)
  return row


def _memory_fields(compiled) -> dict | None:
  try:
    m = compiled.memory_analysis()
  except Exception:  # noqa: BLE001
    return None
  if m is None:
    return None
  return {
    k: int(getattr(m, k))
    for k in (
      "argument_size_in_bytes",
      "output_size_in_bytes",
      "temp_size_in_bytes",
      "alias_size_in_bytes",
      "generated_code_size_in_bytes",
    )
    if hasattr(m, k)
  }


# ----------------------------------------------------------------------------
# Reports.


def device_description() -> str:
  d = jax.devices()[0]
  return (
    f"{jax.device_count()} x {d.device_kind} ({jax.default_backend()}, platform {d.platform}); "
    f"host {platform.node()} with {os.cpu_count()} CPU cores"
  )


def _find(rows, **kw):
  for r in rows:
    if all(r.get(k) == v for k, v in kw.items()):
      return r
  return None


def targets(rows: list[dict]) -> list[dict]:
  """The issue's performance targets, each with its measured value and whether it holds.

  Step-time ratios also carry `noise`: the two rows' relative IQRs added, the ratio's
  own spread; a ratio closer than that to its limit is marked `within_noise`.
  """
  out = []
  steps = [r for r in rows if r.get("kind") == "step"]
  for shape in dict.fromkeys(r["shape"] for r in steps):

    def row(m, impl="jax", cache=False):
      return _find(steps, shape=shape, method=m, impl=impl, teacher_cache=cache) or {}

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
      ratio(f"{m}: PyTorch / JAX step >= 1.3", row(m, "pytorch"), row(m), 1.3, lambda v: v >= 1.3)
      ratio(f"{m}: TextBrewer / JAX step >= 1.3", row(m, "textbrewer"), row(m), 1.3, lambda v: v >= 1.3)
      ratio(f"{m}: online / cached teacher step >= 1.5", row(m), row(m, cache=True), 1.5, lambda v: v >= 1.5)
  comp = [r for r in rows if r.get("kind") == "compile"]
  for scan in (True, False):
    by_n = {r["teacher_layers"]: r["compile_s"] for r in comp if r["scan_layers"] == scan}
    if by_n:
      lo, hi = min(by_n), max(by_n)
      ratio = by_n[hi] / by_n[lo]
      out.append(
        dict(
          shape="compile",
          target=f"compile {hi} / {lo} teacher layers, scan={scan} <= 1.5",
          value=ratio,
          limit=1.5,
          ok=ratio <= 1.5,
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
  for shape in dict.fromkeys(r["shape"] for r in steps):
    srows = [r for r in steps if r["shape"] == shape]
    r0 = srows[0]
    lines += [
      f"## {meta['shape_labels'].get(shape, shape)}",
      "",
      "| method | JAX step ms (IQR) | ex/s | compile s | GFLOP/step | FLOP util. | peak MB | "
      "+ teacher cache ms | cache speed-up | PyTorch ms | PyTorch / JAX | TextBrewer ms | TextBrewer / JAX |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in dict.fromkeys(r["method"] for r in srows):
      j = _find(srows, method=m, impl="jax", teacher_cache=False) or {}
      c = _find(srows, method=m, impl="jax", teacher_cache=True) or {}
      t = _find(srows, method=m, impl="pytorch") or {}
      tb = _find(srows, method=m, impl="textbrewer") or {}
      jm, cm = j.get("step_ms_median"), c.get("step_ms_median")
      ratio = lambda num, den: f"{num / den:.2f}x" if (num and den) else "-"
      flops, util, peak = j.get("flops_per_step"), j.get("flop_utilization"), j.get("peak_bytes")
      lines.append(
        "| "
        + " | ".join(
          [
            m,
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
            _fmt(tb.get("step_ms_median")),
            ratio(tb.get("step_ms_median"), jm),
          ]
        )
        + " |"
      )
    lines += [
      "",
      f"Batch {r0['batch_size']}, length {r0['length']}, dtype {r0.get('dtype')}, "
      f"scan_layers={r0.get('scan_layers')}, remat={r0.get('remat')}; PyTorch threads: "
      f"{next((r.get('threads') for r in srows if r.get('threads')), '-')}. "
      "FLOP utilisation = XLA's FLOPs per step / step time / peak matmul FLOP/s (the PyTorch columns "
      "use XLA's count for the same work). Ratios > 1 mean JAX is faster.",
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
      "(`rail_kd_jax/profiling.py`). Ops running at once on different threads both count.",
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
    for n in sorted({r["teacher_layers"] for r in comp}):
      u = _find(comp, teacher_layers=n, scan_layers=False) or {}
      s = _find(comp, teacher_layers=n, scan_layers=True) or {}
      lines.append(f"| {n} | {_fmt(u.get('compile_s'))} | {_fmt(s.get('compile_s'))} |")
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
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  steps = [r for r in rows if r.get("kind") == "step" and r.get("step_ms_median")]
  shapes = list(dict.fromkeys(r["shape"] for r in steps))
  comp = [r for r in rows if r.get("kind") == "compile"]
  ncols = len(shapes) + (1 if comp else 0)
  fig, axes = plt.subplots(1, max(ncols, 1), figsize=(6.5 * max(ncols, 1), 4.2), squeeze=False)
  series = (
    ("jax", False, "JAX"),
    ("jax", True, "JAX + teacher cache"),
    ("pytorch", False, "PyTorch"),
    ("textbrewer", False, "TextBrewer"),
  )
  for ax, shape in zip(axes[0], shapes):
    srows = [r for r in steps if r["shape"] == shape]
    methods = list(dict.fromkeys(r["method"] for r in srows))
    x = np.arange(len(methods))
    width = 0.2
    for i, (impl, cache, label) in enumerate(series):
      vals = [(_find(srows, method=m, impl=impl, teacher_cache=cache) or {}).get("step_ms_median") for m in methods]
      errs = [(_find(srows, method=m, impl=impl, teacher_cache=cache) or {}).get("step_ms_iqr") for m in methods]
      if not any(vals):
        continue
      ax.bar(x + (i - 1.5) * width, [v or 0 for v in vals], width, yerr=[e or 0 for e in errs], label=label)
    ax.set_xticks(x, methods)
    ax.set_ylabel("ms per train step (median, IQR)")
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


def _versions() -> str:
  parts = [f"jax {jax.__version__}"]
  for mod in ("flax", "torch", "transformers", "textbrewer"):
    try:
      parts.append(f"{mod} {__import__(mod).__version__}")
    except Exception:  # noqa: BLE001
      pass
  return ", ".join(parts)


def run(
  out_dir: str,
  shapes: Sequence[Shape],
  opts: Options,
  *,
  study: Shape | None = None,
  memory: Sequence[tuple[Shape, dict]] = (),
) -> list[dict]:
  """Runs every section and writes benchmark.md, benchmark.json and benchmark.png under `out_dir`."""
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
    "versions": _versions(),
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
  print(open(os.path.join(out_dir, "benchmark.md")).read(), flush=True)
  return rows


# ----------------------------------------------------------------------------
# Command line.


def main(argv):
  del argv
  from absl import flags

  f = flags.FLAGS
  names = [s.strip() for s in f.shapes.split(",") if s.strip()]
  unknown = [n for n in names if n not in SHAPES]
  if unknown:
    raise SystemExit(f"--shapes: unknown shape {unknown[0]!r}; valid: {', '.join(SHAPES)}")
  methods = [m.strip() for m in f.methods.split(",") if m.strip()]
  bad = [m for m in methods if m not in ALL_METHODS]
  if bad:
    raise SystemExit(f"--methods: unknown method {bad[0]!r}; valid: {', '.join(ALL_METHODS)}")
  peers = [p.strip() for p in f.peers.split(",") if p.strip()]
  bad = [p for p in peers if p not in IMPLS[1:]]
  if bad:
    raise SystemExit(f"--peers: unknown peer {bad[0]!r}; valid: pytorch, textbrewer")
  opts = Options(
    methods=methods,
    peers=peers,
    cache_methods=[m.strip() for m in f.cache_methods.split(",") if m.strip()],
    warmup=f.warmup,
    windows=f.windows,
    steps_per_window=f.steps_per_window,
    dtype=f.dtype,
    scan_layers=f.scan_layers,
    remat=f.remat,
    parallel=f.parallel,
    num_devices=f.num_devices,
    gemm=f.gemm,
    profile_dir=f.profile,
  )
  shapes = [with_batch(SHAPES[n], f.batch_size, f.length) for n in names]
  study = with_batch(SHAPES[f.compile_study], f.batch_size, f.length) if f.compile_study else None
  memory = []
  if f.memory_check:
    memory.append((SHAPES["roberta-large-6"], dict(method="rail_l", dtype="bfloat16")))
  run(f.out, shapes, opts, study=study, memory=memory)


def _define_flags():
  from absl import flags

  flags.DEFINE_string("out", None, "Output folder for benchmark.md, benchmark.json, benchmark.png.")
  flags.DEFINE_string("shapes", "minilm6-3", f"Comma-separated shapes: {', '.join(SHAPES)}.")
  flags.DEFINE_string(
    "methods", ",".join(ALL_METHODS), "Comma-separated methods (ckd_pooled: ckd with ckd_granularity='pooled')."
  )
  flags.DEFINE_string("peers", "pytorch,textbrewer", "Comma-separated peers ('' for none).")
  flags.DEFINE_string("cache_methods", "kd,rail_l", "Methods also timed with the teacher cache.")
  flags.DEFINE_integer("batch_size", 0, "Override the shapes' batch size (0 = theirs).")
  flags.DEFINE_integer("length", 0, "Override the shapes' length (0 = theirs).")
  flags.DEFINE_integer("warmup", 1, "Untimed steps after compilation.")
  flags.DEFINE_integer("windows", 5, "Timed windows (median and IQR are over these).")
  flags.DEFINE_integer("steps_per_window", 1, "Steps per timed window (1: every window is one step, blocked on).")
  flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype of teacher and student.")
  flags.DEFINE_bool("scan_layers", False, "nn.scan over layers.")
  flags.DEFINE_bool("remat", False, "Rematerialise each layer in the backward pass.")
  flags.DEFINE_enum("parallel", "shard_map", ["pmap", "shard_map"], "Data-parallel wrapper.")
  flags.DEFINE_string(
    "profile",
    "",
    "If set, a jax.profiler trace of 2 steps of every JAX row under this "
    "folder, with ops.md / ops.json: time by op, by kind (matmul, copies, elementwise) and by "
    "pass (teacher forward, student forward, backward, rest).",
  )
  flags.DEFINE_bool("gemm", True, "Also time the shapes' single matmuls with JAX and PyTorch (the library's share).")
  flags.DEFINE_integer("num_devices", 0, "Devices to use (0 = all).")
  flags.DEFINE_string(
    "compile_study", "minilm6-3", "Shape whose teacher depth is varied (6, 12, 24) for compile times, '' to skip."
  )
  flags.DEFINE_bool("memory_check", True, "Compile-only memory of RoBERTa-large -> 6 layers, bf16, b32, T128.")
  flags.mark_flag_as_required("out")


if __name__ == "__main__":
  from absl import app

  _define_flags()
  app.run(main)
