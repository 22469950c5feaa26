"""The real workload end to end: one epoch of the demo's Rotten Tomatoes train split.

`--workload=demo` trains the demo's pair (the installed MiniLM-L6 checkpoint as the
teacher, 6 x 384; a 3-layer student of its layers 1, 3, 5) on the real tokenized
snippets (max length 48, median 26 tokens), batch 32, for kd and rail_l, with:

- JAX, `train.Trainer` itself: bucketed batches (each trimmed to its longest row
  rounded up to a multiple of 16) fed to the compiled step one by one, as `fit` does;
  online (the teacher runs inside the step) and with the teacher cache (its build, a
  teacher forward pass over the whole split, timed on its own and also amortised over
  the default study's cached runs);
- the PyTorch peer (`peers/torch_peer.py`), float32 and bfloat16 autocast, and
  TextBrewer (kd), on the same tokenized examples in the same random order, each batch
  padded to its own longest row (dynamic padding, `DataCollatorWithPadding`'s rule;
  not sorted by length).

Compilation is kept out of the epoch: before the timed epoch JAX runs one step per
distinct bucket length of the epoch (one compiled program each) and each eager peer one
step; that warm-up's wall time is reported as `warmup_s`. The
epoch is split into chunks whose turns are interleaved across the implementations
(JAX online chunk 1, JAX cached chunk 1, PyTorch chunk 1, ..., JAX online chunk 2, ...),
so a change of machine load hits them alike.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
import time

import jax
import numpy as np
import pandas as pd
from absl import logging

from rail_kd_jax.core import defaults
from rail_kd_jax.data import loader
from rail_kd_jax.experiments import stages, study
from rail_kd_jax.experiments.benchmark.shapes import Shape
from rail_kd_jax.training import teacher_cache
from rail_kd_jax.training.train import Trainer

WORKLOADS = ("fixed", "demo")
METHODS = ("kd", "rail_l")


def study_cached_runs() -> int:
  """How many student runs of the default study read the teacher cache (the build is shared by them)."""
  config = defaults.stage_settings("study")
  config.study = defaults.study_config()
  n = 0
  for method, points in study.grid_for(config).items():
    dcfg = defaults.distill_config()
    dcfg.method = method
    if not teacher_cache.serves(dcfg):
      continue
    long_runs = 1 if int(config.study.long_factor) > 1 else 0
    n += len(points) * len(config.study.tune_seeds) + len(config.study.seeds) + long_runs
  return n


def _subset(path: str, out: str, n: int) -> str:
  """The first `n` rows of a CSV split as a new file (all rows when n <= 0)."""
  if n <= 0:
    return path
  pd.read_csv(path, keep_default_na=False, dtype=str).head(n).to_csv(out, index=False)
  return out


def _config(files: dict, teacher_src: str, method: str, *, cache: bool, batch_size: int, cache_dir: str = ""):
  """The demo's student stage for `method`, one epoch, no checkpoints or evaluation."""
  base = defaults.stage_settings("demo")
  base.demo = defaults.demo_config()
  layers = tuple(int(x) for x in base.demo.student_layers)
  c = stages.student_config(base, files, teacher_src, {"init": "teacher_layers", "teacher_layers": layers}, method)
  c.train.batch_size = batch_size
  c.train.num_epochs = 1.0
  c.train.num_steps = 0
  c.train.plots = False
  c.distill.cache_teacher = cache
  c.data.cache_dir = cache_dir
  return c


class _JaxEpoch:
  """One epoch of `Trainer.train_on` over the trainer's own (bucketed, shuffled) batches."""

  def __init__(self, config, workdir: str):
    t0 = time.perf_counter()
    self.trainer = Trainer.create(config, workdir)
    self.setup_s = time.perf_counter() - t0
    self.batches = list(self.trainer.train_batches(epoch=0))
    self.last = None

  def lengths(self) -> list[int]:
    return [b["input_ids"].shape[1] for b in self.batches]

  def warm(self) -> None:
    """One step per distinct batch length: each compiles its program."""
    seen = set()
    for b in self.batches:
      if b["input_ids"].shape[1] not in seen:
        seen.add(b["input_ids"].shape[1])
        self.last = self.trainer.train_on(b)
    jax.block_until_ready(self.last)

  def run(self, lo: int, hi: int) -> None:
    for b in self.batches[lo:hi]:
      self.last = self.trainer.train_on(b)
    jax.block_until_ready(self.last)

  def loss(self) -> float | None:
    return None if self.last is None else float(np.mean(np.asarray(self.last["loss"])))


class _PeerEpoch:
  """One epoch of a peer's `step(batch)` over dynamically padded batches."""

  def __init__(self, peer, batches: list[dict], sync):
    self.peer, self.batches, self.sync = peer, batches, sync
    self.setup_s = 0.0
    self.last = None

  def lengths(self) -> list[int]:
    return [b["input_ids"].shape[1] for b in self.batches]

  def warm(self) -> None:
    """One step: eager PyTorch compiles nothing per shape (its allocator warms up)."""
    self.last = self.peer.step(self.batches[0])
    self.sync(self.last)

  def run(self, lo: int, hi: int) -> None:
    for b in self.batches[lo:hi]:
      self.last = self.peer.step(b)
    self.sync(self.last)

  def loss(self) -> float | None:
    return None if self.last is None else float(self.last)


def _peer_batches(arrays: dict, batch_size: int, seed: int) -> list[dict]:
  """The epoch's batches in the trainer's order, each trimmed to its longest row (no rounding)."""
  return list(
    loader.batches(
      {k: arrays[k] for k in ("input_ids", "attention_mask", "token_type_ids", "labels") if k in arrays},
      batch_size,
      seed=seed,
      epoch=0,
      shuffle=True,
      drop_remainder=True,
      bucket=True,
      bucket_multiple=1,
    )
  )


def demo_workload(
  workdir: str,
  *,
  examples: int = 0,
  methods=METHODS,
  peers=("pytorch", "textbrewer"),
  precisions=("float32", "bfloat16"),
  torch_device: str = "cpu",
  batch_size: int = 32,
  chunks: int = 8,
  budget_s: float = 0.0,
  teacher_path: str = "",
) -> list[dict]:
  """benchmark.json rows (kind 'epoch', workload 'demo'): one epoch per implementation and method.

  `examples`: the first N examples of the train split (0: all of it); `workdir` holds the
  prepared data (reused) and, for the run, fresh trainer workdirs and one teacher cache
  shared by the methods (removed afterwards). `budget_s` > 0: an implementation whose
  timed chunks add up to that many seconds runs no further chunks; its epoch time is
  then its time per step times the epoch's steps (`extrapolated`, `measured_steps`).
  """
  os.makedirs(workdir, exist_ok=True)
  section = defaults.demo_config()
  data, files = stages.prepare_data(section, workdir)
  files = dict(files)
  files["train"] = _subset(files["train"], os.path.join(workdir, f"train_first{examples}.csv"), examples)
  files = {"train": files["train"], "dev": _subset(files["dev"], os.path.join(workdir, "dev_first64.csv"), 64)}
  teacher_src = teacher_path or stages.default_teacher_path()
  amortise = study_cached_runs()
  rows = []
  scratch = tempfile.mkdtemp(prefix="workload-", dir=workdir)
  try:
    for method in methods:
      rows += _one_method(
        method, files, teacher_src, scratch, peers, precisions, torch_device, batch_size, chunks, budget_s, amortise
      )
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  return rows


def _one_method(
  method, files, teacher_src, scratch, peers, precisions, torch_device, batch_size, chunks, budget_s, amortise
):
  runners, extra = {}, {}
  kw = dict(batch_size=batch_size, cache_dir=os.path.join(scratch, "cache"))
  online = _JaxEpoch(_config(files, teacher_src, method, cache=False, **kw), os.path.join(scratch, f"{method}-online"))
  runners[("jax", False, "float32")] = online
  cached = _JaxEpoch(_config(files, teacher_src, method, cache=True, **kw), os.path.join(scratch, f"{method}-cached"))
  runners[("jax", True, "float32")] = cached
  # The build's own time, recorded in the cache's meta.json (also when a method reuses it).
  metas = glob.glob(os.path.join(scratch, "cache", "teacher", "teacher-*", "meta.json"))
  build_s = None
  if metas:
    with open(metas[0]) as f:
      build_s = json.load(f)["seconds"]
  extra[("jax", True, "float32")] = dict(cache_build_s=build_s, amortised_over_runs=amortise)
  run = online.trainer.run
  shape = Shape(
    "rotten_tomatoes", run.teacher.config, run.student.config, batch_size, run.arrays["train"]["input_ids"].shape[1]
  )
  arrays = run.arrays["train"]
  pbatches = _peer_batches(arrays, batch_size, int(online.trainer.config.seed))
  dcfg = online.trainer.step_spec.dcfg
  opt_cfg = online.trainer.config.optim
  total = len(pbatches)
  for impl in peers:
    if impl == "pytorch":
      from rail_kd_jax.experiments.benchmark.peers import torch_peer  # torch is optional

      for precision in precisions:
        peer = torch_peer.TorchPeer(
          shape, method, dcfg, opt_cfg, pbatches[0], precision=precision, device=torch_device, total_steps=total
        )
        runners[(impl, False, precision)] = _PeerEpoch(peer, pbatches, torch_peer.synchronizer(torch_device))
    elif impl == "textbrewer" and "float32" in precisions:
      from rail_kd_jax.experiments.benchmark.peers import textbrewer_peer  # torch is optional

      if method in textbrewer_peer.METHODS:
        peer = textbrewer_peer.TextBrewerPeer(shape, method, dcfg, opt_cfg, pbatches[0], total_steps=total)
        runners[(impl, False, "float32")] = _PeerEpoch(peer, pbatches, lambda x: None)
  warm = {}
  for key, r in runners.items():
    t0 = time.perf_counter()
    r.warm()
    warm[key] = time.perf_counter() - t0
  n = len(online.batches)
  bounds = np.linspace(0, n, max(1, min(chunks, n)) + 1).astype(int)
  chunk_s = {k: [] for k in runners}
  done = {k: 0 for k in runners}  # steps timed
  for lo, hi in zip(bounds[:-1], bounds[1:]):
    for key, r in runners.items():
      if budget_s > 0 and chunk_s[key] and sum(chunk_s[key]) >= budget_s:
        continue
      t0 = time.perf_counter()
      r.run(int(lo), int(hi))
      chunk_s[key].append(time.perf_counter() - t0)
      done[key] += int(hi - lo)
  rows = []
  examples = n * batch_size
  for key, r in runners.items():
    impl, teacher_cache, precision = key
    measured = float(sum(chunk_s[key]))
    epoch_s = measured if done[key] == n else measured / max(1, done[key]) * n
    lengths = r.lengths()
    row = dict(
      method=method,
      impl=impl,
      precision=precision,
      teacher_cache=teacher_cache,
      shape="rotten_tomatoes",
      workload="demo",
      compile_s=warm[key] if impl == "jax" else None,
      step_ms_median=None,
      step_ms_iqr=None,
      examples_per_s=examples / epoch_s if epoch_s else None,
      flops_per_step=None,
      flop_utilization=None,
      peak_bytes=None,
      kind="epoch",
      examples=examples,
      steps=n,
      batch_size=batch_size,
      epoch_s=epoch_s,
      extrapolated=done[key] < n,
      measured_steps=done[key],
      measured_s=measured,
      step_ms_mean=measured / max(1, done[key]) * 1e3,
      warmup_s=warm[key],
      setup_s=r.setup_s,
      chunk_s=chunk_s[key],
      mean_length=float(np.mean(lengths)),
      distinct_lengths=len(set(lengths)),
      padding="bucket multiple of 16" if impl == "jax" else "dynamic (longest in batch), random order",
      final_loss=r.loss(),
      teacher_layers=shape.teacher.num_hidden_layers,
      student_layers=shape.student.num_hidden_layers,
      device=torch_device if impl != "jax" else jax.default_backend(),
    )
    row.update(extra.get(key, {}))
    if row.get("cache_build_s") is not None:
      # What one study run pays: its epoch plus its share of the one cache build.
      row["amortised_epoch_s"] = epoch_s + row["cache_build_s"] / max(1, amortise)
      row["epoch_s_with_build"] = epoch_s + row["cache_build_s"]
    rows.append(row)
    logging.info(
      "workload demo %-7s %-10s %-8s cache=%-5s epoch %.1f s (%d ex, %.1f ex/s), warm-up %.1f s, loss %s",
      method,
      impl,
      precision,
      teacher_cache,
      epoch_s,
      examples,
      row["examples_per_s"] or 0.0,
      warm[key],
      row["final_loss"],
    )
  return rows
