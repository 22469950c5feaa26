r"""Training-time benchmark: every distillation method, the teacher cache, and PyTorch peers.

  python -m rail_kd_jax.benchmark --out=/tmp/bench            # default: MiniLM-6 -> 3, b32, T128
  python -m rail_kd_jax.benchmark --out=/tmp/bench --shapes=tiny --peers= --compile_study=

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
