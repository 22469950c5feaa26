"""The command line, `python -m rail_kd_jax.benchmark`: its flags and `main`."""

from __future__ import annotations

import os

from absl import flags

from rail_kd_jax.experiments import benchmark
from rail_kd_jax.experiments.benchmark.cases import ALL_METHODS
from rail_kd_jax.experiments.benchmark.depth import METHODS as DEPTH_METHODS
from rail_kd_jax.experiments.benchmark.runner import run
from rail_kd_jax.experiments.benchmark.sections import DEFAULT_METHODS, PEERS, PRECISIONS, Options
from rail_kd_jax.experiments.benchmark.shapes import SHAPES, with_batch
from rail_kd_jax.experiments.benchmark.workload import METHODS as WORKLOAD_METHODS
from rail_kd_jax.experiments.benchmark.workload import WORKLOADS

ATTENTIONS = ("auto", "matmul", "dot_product")


def _list(value: str, flag: str, valid, allow_all: bool = False) -> list[str]:
  """The comma-separated `value` of `--flag`, each checked against `valid` ('all' = every one)."""
  items = [x.strip() for x in value.split(",") if x.strip()]
  if allow_all and items == ["all"]:
    return list(valid)
  bad = [x for x in items if x not in valid]
  if bad:
    raise SystemExit(f"--{flag}: unknown value {bad[0]!r}; valid: {', '.join(valid)}")
  return items


__doc__ = benchmark.__doc__  # absl's --help prints the main module's docstring


def main(argv):
  del argv
  f = flags.FLAGS
  names = _list(f.shapes, "shapes", tuple(SHAPES))
  methods = _list(f.methods, "methods", ALL_METHODS, allow_all=True)
  peers = _list(f.peers, "peers", PEERS)
  precisions = _list(f.precisions, "precisions", PRECISIONS)
  if not precisions:
    raise SystemExit(f"--precisions: give at least one of {', '.join(PRECISIONS)}")
  workloads = _list(f.workload, "workload", WORKLOADS + ("depth",))
  if f.attention not in ATTENTIONS:
    raise SystemExit(f"--attention: unknown value {f.attention!r}; valid: {', '.join(ATTENTIONS)}")
  opts = Options(
    methods=methods if "fixed" in workloads else [],
    peers=peers,
    cache_methods=_list(f.cache_methods, "cache_methods", ALL_METHODS, allow_all=True),
    warmup=f.warmup,
    windows=f.windows,
    steps_per_window=f.steps_per_window,
    precisions=precisions,
    compile_precisions=_list(f.compile_precisions, "compile_precisions", PRECISIONS),
    torch_device=f.torch_device,
    attention=f.attention,
    scan_layers=f.scan_layers,
    remat=f.remat,
    parallel=f.parallel,
    num_devices=f.num_devices,
    gemm=f.gemm,
    profile_dir=f.profile,
    row_budget_s=f.row_budget_s,
  )
  workload = None
  if "demo" in workloads:
    workload = dict(
      workdir=f.workload_dir or os.path.join(f.out, "workload"),
      examples=f.workload_examples,
      methods=tuple(_list(f.workload_methods, "workload_methods", WORKLOAD_METHODS)),
      peers=tuple(p for p in peers if p in ("pytorch", "textbrewer")),
      precisions=tuple(precisions),
      chunks=f.workload_chunks,
      budget_s=f.row_budget_s,
      teacher_path=f.workload_teacher,
    )
  shapes = [with_batch(SHAPES[n], f.batch_size, f.length) for n in names] if "fixed" in workloads else []
  study = with_batch(SHAPES[f.compile_study], f.batch_size, f.length) if f.compile_study else None
  memory = []
  if f.memory_check:
    memory.append((SHAPES["roberta-large-6"], dict(method="rail_l", dtype="bfloat16")))
  depth = None
  if "depth" in workloads:
    depth = dict(
      depths=tuple(int(x) for x in _list(f.depths, "depths", [str(i) for i in range(1, 129)])),
      width=f.depth_width,
      heads=f.depth_heads,
      ff=4 * f.depth_width,
      batch=f.depth_batch,
      length=f.depth_length,
      methods=tuple(_list(f.depth_methods, "depth_methods", DEPTH_METHODS, allow_all=True)),
    )
  run(f.out, shapes, opts, study=study, memory=memory, workload=workload, depth=depth)


def define_flags():
  flags.DEFINE_string("out", None, "Output folder for benchmark.md, benchmark.json, benchmark.png.")
  flags.DEFINE_string(
    "workload",
    ",".join(WORKLOADS),
    "Sections: 'fixed' (every method on --shapes, random tokens of a fixed length), 'demo' "
    "(one epoch of the demo's Rotten Tomatoes train split, real tokenizer and lengths, end to end) and/or "
    "'depth' (every method, online and cached, with the PyTorch peer, for teachers of --depths layers; "
    "the intermediate term's own cost; depth.png). The default is 'fixed,demo'.",
  )
  flags.DEFINE_string("shapes", "minilm6-3", f"Comma-separated shapes: {', '.join(SHAPES)}.")
  flags.DEFINE_string(
    "methods",
    ",".join(DEFAULT_METHODS),
    f"Comma-separated methods of the fixed section, or 'all' ({', '.join(ALL_METHODS)}; "
    "ckd_pooled: ckd with ckd_granularity='pooled').",
  )
  flags.DEFINE_string(
    "peers",
    ",".join(PEERS),
    "Comma-separated peers ('' for none): pytorch (eager float32 and bfloat16 autocast), pytorch_compile "
    "(torch.compile), textbrewer (kd, pkd; float32).",
  )
  flags.DEFINE_string(
    "precisions",
    ",".join(PRECISIONS),
    "Compute precisions of every implementation's rows (params and optimizer state stay float32): JAX "
    "modules' dtype; PyTorch eager float32 or torch.autocast(bfloat16).",
  )
  flags.DEFINE_string("compile_precisions", "float32", "Precisions of the pytorch_compile rows (each compiles anew).")
  flags.DEFINE_string("torch_device", "auto", "PyTorch peers' device: auto (cuda when torch sees one), cpu, cuda.")
  flags.DEFINE_string("attention", "auto", f"Encoders' attention implementation: {', '.join(ATTENTIONS)}.")
  flags.DEFINE_string("cache_methods", "kd,rail_l", "Methods also timed with the teacher cache.")
  flags.DEFINE_integer("batch_size", 0, "Override the shapes' batch size (0 = theirs).")
  flags.DEFINE_integer("length", 0, "Override the shapes' length (0 = theirs).")
  flags.DEFINE_integer("warmup", 1, "Untimed JAX steps after compilation (the peers' builders run one first step).")
  flags.DEFINE_integer("windows", 5, "Timed windows (median and IQR are over these).")
  flags.DEFINE_integer("steps_per_window", 1, "Steps per timed window (1: every window is one step, blocked on).")
  flags.DEFINE_float(
    "row_budget_s",
    20.0,
    "Seconds of timing per row (0 = no limit): a fixed-section row takes no more windows after this "
    "(at least 2), a workload row no more chunks (its epoch time is then extrapolated from its steps).",
  )
  flags.DEFINE_integer(
    "workload_examples", 512, "demo workload: the first N examples of the train split (0 = all 8,530)."
  )
  flags.DEFINE_string(
    "workload_methods", "kd", f"demo workload: methods, from {', '.join(WORKLOAD_METHODS)} (the default run: kd)."
  )
  flags.DEFINE_integer("workload_chunks", 8, "demo workload: the epoch's interleaved chunks.")
  flags.DEFINE_string("workload_dir", "", "demo workload: data folder (default <out>/workload; reused).")
  flags.DEFINE_string("workload_teacher", "", "demo workload: teacher HF folder ('' = the installed MiniLM-L6).")
  flags.DEFINE_string("depths", "6,12,24", "depth section: the teachers' layer counts (students: half, at most 6).")
  flags.DEFINE_integer("depth_width", 384, "depth section: hidden width of teacher and student (FF 4x).")
  flags.DEFINE_integer("depth_heads", 12, "depth section: attention heads.")
  flags.DEFINE_integer("depth_batch", 16, "depth section: batch size.")
  flags.DEFINE_integer("depth_length", 128, "depth section: sequence length.")
  flags.DEFINE_string(
    "depth_methods", "all", f"depth section: methods, or 'all' ({', '.join(DEPTH_METHODS)}); kd is always timed."
  )
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
  flags.DEFINE_bool("gemm", False, "Also time the shapes' single matmuls with JAX and PyTorch (the library's share).")
  flags.DEFINE_integer("num_devices", 0, "Devices to use (0 = all).")
  flags.DEFINE_string(
    "compile_study", "", "Shape whose teacher depth is varied (6, 12, 24) for compile times, '' to skip."
  )
  flags.DEFINE_bool("memory_check", False, "Compile-only memory of RoBERTa-large -> 6 layers, bf16, b32, T128.")
  flags.mark_flag_as_required("out")
