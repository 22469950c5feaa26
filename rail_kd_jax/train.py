"""The training loop: data in, step, log, evaluate, checkpoint, export.

`train_and_evaluate(config, workdir)` runs `config.mode`:
- `finetune`: train `config.model` with cross-entropy (method `none`), e.g. a teacher;
- `distill`: train `config.student` from the frozen `config.teacher` with
  `config.distill.method`.
The step itself lives in `step.py`; this file only moves data and writes outputs.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import numpy as np
from absl import logging

from rail_kd_jax import builders, metrics as metrics_lib, parallel as parallel_lib
from rail_kd_jax import evaluate as evaluate_lib
from rail_kd_jax.data import loader
from rail_kd_jax.step import StepSpec, make_eval_step, make_train_step
from rail_kd_jax.train_state import TrainState, param_count
from rail_kd_jax.validation import ConfigError, validate_config


def _write_config(config, workdir: str) -> None:
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def _prepare_workdir(workdir: str) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise ConfigError(f"--workdir={workdir!r} cannot be created: {e.strerror}") from None
  if not os.access(workdir, os.W_OK):
    raise ConfigError(f"--workdir={workdir!r} is not writable")


def evaluate(run: "builders.Run", par: parallel_lib.DataParallel, eval_step, state_params, split: str) -> dict:
  """Task metrics and mean loss of the student on one eval split (all hosts)."""
  arrays = run.arrays[split]
  eval_bs = run.config.train.eval_batch_size or run.config.train.batch_size
  logits_all, loss_sum, count = [], 0.0, 0.0
  for batch in loader.batches(arrays, eval_bs, seed=0, epoch=0, shuffle=False, drop_remainder=False,
                              host_id=jax.process_index(), num_hosts=jax.process_count()):
    out = eval_step(state_params, par.shard_batch(batch))
    logits, mask = par.gather(out["logits"]), par.gather(out["mask"])
    logits_all.append(logits[mask > 0])
    loss_sum += float(par.scalar(out["loss_sum"]))
    count += float(par.scalar(out["count"]))
  logits = np.concatenate(logits_all)[:len(arrays["labels"])]
  labels = np.asarray(arrays["labels"])
  preds = logits[:, 0] if run.spec.is_regression else np.argmax(logits, axis=-1)
  result = evaluate_lib.compute_metrics(run.spec, preds, labels)
  result["loss"] = loss_sum / max(count, 1.0)
  return result


def train_and_evaluate(config, workdir: str) -> dict:
  """Runs `config.mode` in `workdir`; returns the final eval metrics per split."""
  _prepare_workdir(workdir)
  par = parallel_lib.DataParallel(config.parallel, config.num_devices)
  validate_config(config, num_devices=par.num_devices)
  is_main = jax.process_index() == 0
  if is_main:
    _write_config(config, workdir)
  logging.info("devices: %d x %s (%s), %d process(es); parallel=%s", par.num_devices,
               jax.devices()[0].device_kind, jax.default_backend(), jax.process_count(), config.parallel)

  run = builders.build_run(config, workdir, par.num_devices)  # data, models, method: may raise ConfigError
  logging.info("student: %s params; teacher: %s", f"{param_count(run.student_params):,}",
               "none" if run.teacher_params is None else f"{param_count(run.teacher_params):,} params (frozen)")

  spec = run.step_spec
  tx = spec.tx
  state = TrainState.create({"student": run.student_params, "heads": run.head_params}, tx)
  state = par.replicate(state)
  teacher_params = par.replicate(run.teacher_params) if run.teacher_params is not None else None
  train_step = par.compile_train(make_train_step(spec))
  eval_step = par.compile_eval(make_eval_step(spec))

  writer = metrics_lib.MetricsWriter(workdir, enabled=is_main)
  total_steps = run.total_steps
  progress = metrics_lib.Progress(total_steps)
  eval_every = config.train.eval_every or run.steps_per_epoch
  global_bs = config.train.batch_size
  step = 0
  final_eval: dict = {}
  t_start = time.perf_counter()

  def run_eval(step_now: int) -> dict:
    results = {}
    for split in run.eval_splits:
      res = evaluate(run, par, eval_step, state.params, split)
      writer.write(step_now, split, res)
      results[split] = res
      logging.info("eval %s @ %d: %s", split, step_now,
                   ", ".join(f"{k}={v:.4f}" for k, v in res.items() if isinstance(v, float)))
    return results

  epoch = 0
  while step < total_steps:
    for batch in loader.batches(run.arrays["train"], global_bs, seed=config.seed, epoch=epoch, shuffle=True,
                                drop_remainder=True, host_id=jax.process_index(),
                                num_hosts=jax.process_count()):
      state, metrics = train_step(state, teacher_params, par.shard_batch(batch))
      step += 1
      if step % config.train.log_every == 0 or step == total_steps:
        values = par.unreplicate(metrics)
        values["epoch"] = epoch
        record = writer.write(step, "train", values)
        progress.update(step, record.get("loss"))
      if step % eval_every == 0 and step < total_steps:
        run_eval(step)
      if step >= total_steps:
        break
    epoch += 1
  jax.block_until_ready(state)
  train_seconds = time.perf_counter() - t_start
  final_eval = run_eval(step)
  writer.write(step, "summary", {"train_seconds": train_seconds, "steps": step})
  writer.close()

  if config.train.export and is_main:
    params = par.unreplicate(state.params)
    out_dir = os.path.join(workdir, "export", run.export_name)
    builders.export(run, params["student"], out_dir)
    logging.info("exported %s to %s", run.export_name, out_dir)
  return final_eval
