r"""Training-time benchmark: every distillation method, the teacher cache, and PyTorch peers.

  python -m rail_kd_jax.benchmark --out=/tmp/bench     # default: kd on MiniLM-6 -> 3 + the demo workload
  python -m rail_kd_jax.benchmark --out=/tmp/bench --methods=all --workload_methods=kd,rail_l \
      --gemm --compile_study=minilm6-3 --memory_check --row_budget_s=0   # everything, in full

Two sections (--workload). `fixed`: for each shape (a teacher/student pair with
random weights, a batch size and a length) every method of --methods with the real
train step (`step.make_train_step` under `parallel.DataParallel`, AdamW from
`optim.make_optimizer`) in float32 and bfloat16 compute: compile time (lower +
compile) separately, then the step time over interleaved timed windows, each ending
in `jax.block_until_ready`; FLOPs from XLA's cost analysis, peak memory from its
memory analysis. In the same windows the same work is trained as a user would
otherwise do it: PyTorch eager float32, PyTorch under torch.autocast(bfloat16),
torch.compile (`peers.torch_peer`), and TextBrewer (`peers.textbrewer_peer`, kd and
pkd); the teacher cache is timed against the online teacher. `demo`: one epoch of
the demo's Rotten Tomatoes train split end to end (`workload.py`). Optional:
single matmuls, compile time against depth, a compile-only memory check.

Outputs under --out: benchmark.md (tables), benchmark.json (one object per row)
and benchmark.png (a chart). See docs/BENCHMARK.md for measured figures.
"""
