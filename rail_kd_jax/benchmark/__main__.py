"""The command line, `python -m rail_kd_jax.benchmark`: its flags and `main`."""

from __future__ import annotations

from absl import app, flags

from rail_kd_jax import benchmark
from rail_kd_jax.benchmark.cases import ALL_METHODS
from rail_kd_jax.benchmark.runner import run
from rail_kd_jax.benchmark.sections import PEERS, Options
from rail_kd_jax.benchmark.shapes import SHAPES, with_batch

__doc__ = benchmark.__doc__  # absl's --help prints the main module's docstring


def main(argv):
  del argv
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
  bad = [p for p in peers if p not in PEERS]
  if bad:
    raise SystemExit(f"--peers: unknown peer {bad[0]!r}; valid: {', '.join(PEERS)}")
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
  flags.DEFINE_string("out", None, "Output folder for benchmark.md, benchmark.json, benchmark.png.")
  flags.DEFINE_string("shapes", "minilm6-3", f"Comma-separated shapes: {', '.join(SHAPES)}.")
  flags.DEFINE_string(
    "methods", ",".join(ALL_METHODS), "Comma-separated methods (ckd_pooled: ckd with ckd_granularity='pooled')."
  )
  flags.DEFINE_string("peers", ",".join(PEERS), "Comma-separated peers ('' for none).")
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
  _define_flags()
  app.run(main)
