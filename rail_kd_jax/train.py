"""The training loop: data in, step, log, evaluate, checkpoint, export.

`train_and_evaluate(config, workdir)` runs `config.mode`:
- `finetune`: train `config.model` with cross-entropy (method `none`), e.g. a teacher;
- `distill`: train `config.student` from the frozen `config.teacher` with
  `config.distill.method`;
- `demo`: the embedded end-to-end demo (see `demo.py`).
The step itself lives in `step.py`; the `Trainer` here only moves data and
writes outputs, so tests can drive it step by step.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Iterator

import jax
import numpy as np
from absl import logging

from rail_kd_jax import builders, metrics as metrics_lib, parallel as parallel_lib
from rail_kd_jax import evaluate as evaluate_lib
from rail_kd_jax.data import loader
from rail_kd_jax.distill import layer_sampling
from rail_kd_jax.step import current_mapping, make_eval_step, make_train_step
from rail_kd_jax.train_state import TrainState, param_count
from rail_kd_jax.validation import ConfigError, validate_config


def _prepare_workdir(workdir: str) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise ConfigError(f"--workdir={workdir!r} cannot be created: {e.strerror}") from None
  if not os.access(workdir, os.W_OK):
    raise ConfigError(f"--workdir={workdir!r} is not writable")


class Trainer:
  """Owns the built run, the replicated state and the compiled steps."""

  def __init__(self, config, workdir: str):
    _prepare_workdir(workdir)
    self.config = config
    self.workdir = workdir
    validate_config(config)
    self.par = parallel_lib.DataParallel(config.parallel, config.num_devices)
    validate_config(config, num_devices=self.par.num_devices)
    self.is_main = jax.process_index() == 0
    if self.is_main:
      with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    logging.info("devices: %d x %s (%s), %d process(es); parallel=%s", self.par.num_devices,
                 jax.devices()[0].device_kind, jax.default_backend(), jax.process_count(), config.parallel)
    # Data, models and method; raises ConfigError before anything compiles.
    self.run = run = builders.build_run(config, workdir, self.par.num_devices)
    logging.info("student: %s params; teacher: %s", f"{param_count(run.student_params):,}",
                 "none" if run.teacher_params is None else
                 f"{param_count(run.teacher_params):,} params (frozen)")
    self.spec = run.step_spec
    state = TrainState.create({"student": run.student_params, "heads": run.head_params}, self.spec.tx)
    self.state = self.par.replicate(state)
    self.teacher_params = (self.par.replicate(run.teacher_params) if run.teacher_params is not None else None)
    self.train_step = self.par.compile_train(make_train_step(self.spec))
    self.eval_step = self.par.compile_eval(make_eval_step(self.spec))
    self.writer = metrics_lib.MetricsWriter(workdir, enabled=self.is_main)
    self.step = 0

  # ---- data ------------------------------------------------------------------
  def train_batches(self, epoch: int, start_step: int = 0) -> Iterator[dict]:
    d = self.config.data
    return loader.batches(self.run.arrays["train"], self.config.train.batch_size, seed=self.config.seed,
                          epoch=epoch, shuffle=True, drop_remainder=True, host_id=jax.process_index(),
                          num_hosts=jax.process_count(), bucket=bool(d.bucket),
                          bucket_multiple=int(d.bucket_multiple), buckets=tuple(d.buckets) or None,
                          start_step=start_step)

  def eval_batches(self, split: str) -> Iterator[dict]:
    d = self.config.data
    bs = self.config.train.eval_batch_size or self.config.train.batch_size
    return loader.batches(self.run.arrays[split], bs, seed=0, epoch=0, shuffle=False, drop_remainder=False,
                          host_id=jax.process_index(), num_hosts=jax.process_count(), bucket=bool(d.bucket),
                          bucket_multiple=int(d.bucket_multiple), buckets=tuple(d.buckets) or None)

  # ---- steps -----------------------------------------------------------------
  def train_on(self, batch: dict) -> Any:
    """One optimizer step on a host batch; returns the (device) metrics."""
    self.state, metrics = self.train_step(self.state, self.teacher_params, self.par.shard_batch(batch))
    self.step += 1
    return metrics

  def predict(self, split: str) -> np.ndarray:
    """Student outputs [N, C] on a split, in file order (all hosts)."""
    outs = []
    for batch in self.eval_batches(split):
      out = self.eval_step(self.state.params, self.par.shard_batch(batch))
      logits, mask = self.par.gather(out["logits"]), self.par.gather(out["mask"])
      outs.append(logits[mask > 0])
    return np.concatenate(outs)[:len(self.run.arrays[split]["labels"])]

  def evaluate(self, split: str) -> dict:
    """Task metrics and mean task loss of the student on one labelled split."""
    loss_sum = count = 0.0
    outs = []
    for batch in self.eval_batches(split):
      out = self.eval_step(self.state.params, self.par.shard_batch(batch))
      logits, mask = self.par.gather(out["logits"]), self.par.gather(out["mask"])
      outs.append(logits[mask > 0])
      loss_sum += float(self.par.scalar(out["loss_sum"]))
      count += float(self.par.scalar(out["count"]))
    arrays = self.run.arrays[split]
    logits = np.concatenate(outs)[:len(arrays["labels"])]
    result = evaluate_lib.compute_metrics(self.run.spec, logits, np.asarray(arrays["labels"]))
    result["loss"] = loss_sum / max(count, 1.0)
    return result

  def evaluate_all(self) -> dict:
    results = {}
    for split in self.run.eval_splits:
      res = self.evaluate(split)
      self.writer.write(self.step, split, res)
      results[split] = res
      logging.info("eval %s @ %d: %s", split, self.step,
                   ", ".join(f"{k}={v:.4f}" for k, v in res.items() if isinstance(v, float)))
    return results

  def host_params(self) -> Any:
    return self.par.unreplicate(self.state.params)

  # ---- the loop --------------------------------------------------------------
  def fit(self) -> dict:
    """Trains to `run.total_steps`, evaluating every `eval_every` and at the end; exports."""
    cfg, run = self.config, self.run
    total = run.total_steps
    eval_every = cfg.train.eval_every or run.steps_per_epoch
    progress = metrics_lib.Progress(total, start_step=self.step)
    t_start = time.perf_counter()
    epoch, start_in_epoch = divmod(self.step, run.steps_per_epoch)
    while self.step < total:
      for batch in self.train_batches(epoch, start_step=start_in_epoch):
        metrics = self.train_on(batch)
        step = self.step
        if step % cfg.train.log_every == 0 or step == total:
          values = self.par.unreplicate(metrics)
          values["epoch"] = epoch
          record = self.writer.write(step, "train", values)
          progress.update(step, record.get("loss"))
        if step % eval_every == 0 and step < total:
          self.evaluate_all()
        if step >= total:
          break
      epoch, start_in_epoch = epoch + 1, 0
    jax.block_until_ready(self.state)
    train_seconds = time.perf_counter() - t_start
    final = self.evaluate_all()
    self.writer.write(self.step, "summary", {"train_seconds": train_seconds, "steps": self.step})
    self.writer.close()
    if cfg.train.export and self.is_main:
      out_dir = os.path.join(self.workdir, "export", run.export_name)
      builders.export(run, self.host_params()["student"], out_dir)
      logging.info("exported %s to %s", run.export_name, out_dir)
    self.finish()
    final["train_seconds"] = train_seconds
    return final

  def finish(self) -> None:
    """After training: test-split predictions (GLUE submission files), the layer-pairing
    counts replayed from (seed, counter), and the plots."""
    run = self.run
    for split in run.test_splits:
      preds = self.predict(split)
      if self.is_main:
        path = evaluate_lib.write_submission(run.spec, preds, os.path.join(self.workdir, "predictions"), split,
                                             index=run.arrays[split].get("idx"))
        logging.info("predictions for %s written to %s", split, path)
    if not self.is_main:
      return
    if self.spec.method.uses_mapping:
      counts = pairing_counts_for(self.spec, self.step)
      with open(os.path.join(self.workdir, "mapping_counts.json"), "w") as f:
        json.dump({"counts": counts.tolist(), "steps": self.step, "num_teacher_layers": self.spec.num_teacher_layers,
                   "num_student_layers": self.spec.num_student_layers,
                   "resample_every": self.spec.dcfg.resample_every}, f)
    if self.config.train.plots:
      from rail_kd_jax import plots
      plots.write_run_plots(self.workdir)


def pairing_counts_for(spec, num_steps: int) -> np.ndarray:
  """int [M, N+1]: how many steps student layer j (row j-1) was paired with teacher layer t.

  Replays the mapping of every step 0..num_steps-1 from (seed, counter) alone.
  """
  steps = np.arange(num_steps, dtype=np.int32)
  mappings = np.asarray(jax.jit(jax.vmap(lambda s: current_mapping(spec, s)))(steps))
  return layer_sampling.pairing_counts(mappings, spec.num_teacher_layers)


def train_and_evaluate(config, workdir: str) -> dict:
  """Runs `config.mode` in `workdir`; returns the final eval metrics per split."""
  if config.mode == "demo":
    from rail_kd_jax import demo
    return demo.run_demo(config, workdir)
  return Trainer(config, workdir).fit()
