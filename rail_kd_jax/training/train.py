"""The training loop: data in, step, log, evaluate, checkpoint, export.

`train_and_evaluate(config, workdir)` runs a training mode under the workdir's lock:
- `finetune`: train `config.model` with cross-entropy (method `none`), e.g. a teacher;
- `distill`: train `config.student` from the frozen `config.teacher` with
  `config.distill.method`.
It refuses the other modes: `main.run` dispatches `demo` and `study`
(experiments/demo.py, experiments/study/), which build their runs on this loop.

`Trainer(builders.setup(config, workdir))` (or `Trainer.create(config, workdir)`) takes a
built run: the config checked, presets applied, data, models and method built. The step
itself lives in `step.py`; the `Trainer` only moves data and writes outputs, so tests can
drive it step by step.

Nothing is lost (`checkpoint.py`, `resume.py`, docs/CHECKPOINTS.md): the Trainer resumes from
the newest good checkpoint in the workdir at construction, `fit` checkpoints every
`checkpoint.every` steps and at the end, saves and raises `errors.Preempted` on SIGTERM, and
raises `errors.TrainingDiverged` after `train.max_bad_steps` consecutive non-finite steps.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Iterator

import jax
import numpy as np
from absl import logging

from rail_kd_jax.core.errors import ConfigError, Preempted, TrainingDiverged
from rail_kd_jax.data import loader
from rail_kd_jax.distill import diagnostics, layer_sampling
from rail_kd_jax.distill import methods as methods_lib
from rail_kd_jax.outputs import model_card, plots, task_metrics, writers
from rail_kd_jax.training import builders, exports, resume, workdir_lock
from rail_kd_jax.training import checkpoint as checkpoint_lib
from rail_kd_jax.training.step import current_mapping, make_eval_step, make_train_step, mapping_counter
from rail_kd_jax.training.train_state import TrainState

# Per-step metrics that are not loss terms (never named as "the term that went non-finite").
# The modes this loop runs; the demo and the study (modes too) are built on it.
TRAIN_MODES = ("finetune", "distill")
_NOT_TERMS = ("finite", "skipped", "mapping", "learning_rate", "param_norm", "epoch", "step_ms") + diagnostics.ALL_NAMES


class Trainer:
  """Owns the built run, the replicated state and the compiled steps."""

  def __init__(self, setup: builders.Setup):
    """`setup`: the run as `builders.setup` built it (checked, on its devices, with data,
    models and method); `Trainer.create(config, workdir)` builds it and the trainer at once."""
    self.run = run = setup.run
    self.config = run.config  # the preset-resolved config: what runs, in config.json and every checkpoint
    self.workdir = workdir = setup.workdir
    self.par = setup.par
    self.step_spec = run.step_spec
    self.is_main = jax.process_index() == 0
    self._eval_logits: dict[str, np.ndarray] = {}  # train.eval_predictions: the latest logits per split
    # Checkpoints: restore before anything is compiled or written to metrics.jsonl.
    self.ckpt = self._make_checkpointer()
    params = {"student": run.student_params, "heads": run.head_params}
    resumed = None
    if self.ckpt is not None:
      resumed = resume.restore(
        self.ckpt, self.config, workdir, params, self.step_spec.tx, run.steps_per_epoch, self.is_main
      )
    self.resumed_meta: dict | None = resumed.meta if resumed else None
    self._bad_run = resumed.bad_run if resumed else 0  # consecutive non-finite steps so far
    self._train_seconds_before = resumed.train_seconds if resumed else 0.0  # of the interrupted runs
    if resumed is not None:
      host_state = resumed.state
    else:
      host_state = TrainState.create(params, self.step_spec.tx)
      if self.ckpt is not None and self.is_main:
        resume.set_aside_stale_metrics(workdir)
    self.state = self.par.replicate(host_state)
    self.step = int(np.asarray(host_state.step))
    self.teacher_params = self.par.replicate(run.teacher_params) if run.teacher_params is not None else None
    self.train_step = self.par.compile_train(make_train_step(self.step_spec))
    self.eval_step = self.par.compile_eval(make_eval_step(self.step_spec))
    self.writer = writers.MetricsWriter(workdir, enabled=self.is_main)
    self.collapse_watch = methods_lib.collapse_watch(self.step_spec.dcfg, self.config.train.batch_size)

  @classmethod
  def create(cls, config, workdir: str) -> "Trainer":
    """Builds the run (`builders.setup`) and its trainer."""
    return cls(builders.setup(config, workdir))

  # ---- checkpoints ----------------------------------------------------------------
  def _make_checkpointer(self) -> checkpoint_lib.Checkpointer | None:
    c = self.config.checkpoint
    if not c.enabled:
      return None
    metric = task_metrics.main_metric(self.run.task_spec) if self.run.eval_splits else None
    return checkpoint_lib.Checkpointer(
      self.workdir,
      keep=int(c.keep),
      keep_best=bool(c.keep_best),
      best_metric=metric,
      best_mode=checkpoint_lib.best_mode_for(metric or ""),
      async_save=bool(c.async_save),
    )

  def save_checkpoint(self, eval_results: dict | None = None, final: bool = False, train_seconds: float = 0.0) -> bool:
    """Writes the current state (asynchronously when configured); False if it exists already."""
    if self.ckpt is None:
      return False
    run = self.run
    meta = resume.metadata(
      self.config,
      self.workdir,
      step=self.step,
      steps_per_epoch=run.steps_per_epoch,
      total_steps=run.total_steps,
      mapping_counter=int(np.asarray(jax.device_get(mapping_counter(self.step_spec, np.int32(self.step))))),
      par=self.par,
      bad_run=self._bad_run,
      train_seconds=self._train_seconds_before + train_seconds,
      eval_results=eval_results,
      final=final,
    )
    main = run.eval_splits[0] if run.eval_splits else None
    saved = self.ckpt.save(
      self.step, checkpoint_lib.to_host(self.par, self.state), meta, (eval_results or {}).get(main) if main else None
    )
    if saved:
      logging.info("checkpoint at step %d -> %s", self.step, self.ckpt.path(self.step))
    return saved

  # ---- data ------------------------------------------------------------------
  def train_batches(self, epoch: int, start_step: int = 0) -> Iterator[dict]:
    d = self.config.data
    return loader.batches(
      self.run.arrays["train"],
      self.config.train.batch_size,
      seed=self.config.seed,
      epoch=epoch,
      shuffle=True,
      drop_remainder=True,
      host_id=jax.process_index(),
      num_hosts=jax.process_count(),
      bucket=bool(d.bucket),
      bucket_multiple=int(d.bucket_multiple),
      buckets=tuple(d.buckets) or None,
      start_step=start_step,
    )

  def eval_batches(self, split: str) -> Iterator[dict]:
    d = self.config.data
    bs = self.config.train.eval_batch_size or self.config.train.batch_size
    return loader.batches(
      self.run.arrays[split],
      bs,
      seed=0,
      epoch=0,
      shuffle=False,
      drop_remainder=False,
      host_id=jax.process_index(),
      num_hosts=jax.process_count(),
      bucket=bool(d.bucket),
      bucket_multiple=int(d.bucket_multiple),
      buckets=tuple(d.buckets) or None,
    )

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
    return np.concatenate(outs)[: len(self.run.arrays[split]["labels"])]

  def evaluate(self, split: str) -> dict:
    """Task metrics, what the class balance hides (`task_metrics.class_report`: majority-class
    accuracy, per-class precision/recall/F1) and the mean task loss of the student on one
    labelled split."""
    loss_sum = count = 0.0
    outs = []
    for batch in self.eval_batches(split):
      out = self.eval_step(self.state.params, self.par.shard_batch(batch))
      logits, mask = self.par.gather(out["logits"]), self.par.gather(out["mask"])
      outs.append(logits[mask > 0])
      loss_sum += float(self.par.scalar(out["loss_sum"]))
      count += float(self.par.scalar(out["count"]))
    arrays = self.run.arrays[split]
    logits = np.concatenate(outs)[: len(arrays["labels"])]
    labels = np.asarray(arrays["labels"])
    if split in tuple(self.config.train.eval_predictions):
      self._eval_logits[split] = logits  # the latest; written by _conclude after the final evaluation
    result = task_metrics.compute_metrics(self.run.task_spec, logits, labels)
    result.update(task_metrics.class_report(self.run.task_spec, logits, labels))
    result["loss"] = loss_sum / max(count, 1.0)
    return result

  @property
  def scored_splits(self) -> tuple[str, ...]:
    """The splits evaluated: the eval splits (the first picks the best checkpoint), then the
    test splits whose files carry labels."""
    return tuple(self.run.eval_splits) + tuple(self.run.scored_test_splits)

  def evaluate_all(self) -> dict:
    results = {}
    for split in self.scored_splits:
      res = self.evaluate(split)
      self.writer.write(self.step, split, res)
      results[split] = res
      logging.info("eval %s @ %d: %s", split, self.step, task_metrics.eval_line(res))
    return results

  def host_params(self) -> Any:
    return self.par.unreplicate(self.state.params)

  # ---- the loop --------------------------------------------------------------
  def fit(self, stop_at: int | None = None) -> dict:
    """Trains to `run.total_steps`, evaluating every `eval_every` and at the end, checkpointing
    every `checkpoint.every` steps and at the end; exports.

    Raises `Preempted` after saving a checkpoint when SIGTERM/Ctrl-C arrives (at the next
    step boundary), or after step `stop_at` (a hook for tests and scripted stops), and
    `TrainingDiverged` after `train.max_bad_steps` consecutive non-finite steps.
    """
    cfg, run = self.config, self.run
    total = run.total_steps
    meta = self.resumed_meta
    if meta is not None and meta.get("final") and self.step >= total:
      logging.info("the run in %s is already complete at step %d; exporting again", self.workdir, self.step)
      return self._conclude(dict(meta.get("eval", {})), float(meta.get("train_seconds", 0.0)), evaluated=True)
    eval_every = cfg.train.eval_every or run.steps_per_epoch
    ckpt_every = int(cfg.checkpoint.every)
    progress = writers.Progress(total, start_step=self.step)
    t_start = time.perf_counter()
    epoch, start_in_epoch = divmod(self.step, run.steps_per_epoch)
    last_log = None  # (step, time) of the previous train log, for step_ms
    pending = None  # (step, device metrics): its finiteness is read one step late, so the host never stalls
    with checkpoint_lib.PreemptionGuard() as guard:
      while self.step < total:
        for batch in self.train_batches(epoch, start_step=start_in_epoch):
          metrics = self.train_on(batch)
          step = self.step
          if pending is not None:
            self._check_finite(*pending)
          pending = (step, metrics)
          if step % cfg.train.log_every == 0 or step == total:
            values = self.par.unreplicate(metrics)  # waits for this step: the clock below is honest
            values["epoch"] = epoch
            now = time.perf_counter()
            if last_log is not None and step > last_log[0]:
              # Wall milliseconds per step since the previous log (host work, evals and
              # checkpoints in between included); absent on the first log, which holds the compile.
              values["step_ms"] = 1000.0 * (now - last_log[1]) / (step - last_log[0])
            last_log = (step, now)
            self.writer.write(step, "train", values)
            for line in self.collapse_watch.update(step, values):
              logging.warning("%s", line)
            progress.update(step, float(values["loss"]))  # the record holds "nan" as a string
          results = None
          if step % eval_every == 0 and step < total:
            results = self.evaluate_all()
          stop = step < total and (
            guard.requested
            or step == stop_at
            or (jax.process_count() > 1 and self.ckpt is not None and self.ckpt.reached_preemption(step))
          )
          if (stop or (ckpt_every and step % ckpt_every == 0)) and step < total:
            self._check_finite(*pending)
            pending = None
            self.save_checkpoint(results, train_seconds=time.perf_counter() - t_start)
          if stop:
            self._stop_preempted()
          if step >= total:
            break
        epoch, start_in_epoch = epoch + 1, 0
      if pending is not None:
        self._check_finite(*pending)
    jax.block_until_ready(self.state)
    train_seconds = self._train_seconds_before + time.perf_counter() - t_start
    return self._conclude({}, train_seconds, evaluated=False)

  def _conclude(self, final: dict, train_seconds: float, evaluated: bool) -> dict:
    """After the last step: final evaluation, final checkpoint, summary, export, predictions."""
    cfg, run = self.config, self.run
    if not evaluated:
      final = self.evaluate_all()
      self.save_checkpoint(final, final=True, train_seconds=train_seconds - self._train_seconds_before)
    if self.ckpt is not None:
      self.ckpt.close()
    summary = {"train_seconds": train_seconds, "steps": self.step}
    for split, res in final.items():
      if isinstance(res, dict):
        summary.update({f"{split}/{k}": v for k, v in res.items() if k in run.task_spec.metric_names})
        logging.info("final %s @ %d: %s", split, self.step, task_metrics.eval_line(res))
    self.writer.write(self.step, "summary", summary)
    self.writer.close()
    self._write_eval_predictions()
    if cfg.train.export and self.is_main:
      out_dir = os.path.join(self.workdir, "export", run.export_name)
      card = model_card.card(run, final, command=tuple(sys.argv), cwd=os.getcwd(), workdir=self.workdir)
      exports.export(run, self.host_params()["student"], out_dir, card=card)
      logging.info("exported %s to %s", run.export_name, out_dir)
    self.finish()
    final["train_seconds"] = train_seconds
    return final

  def _write_eval_predictions(self) -> None:
    """`train.eval_predictions`: each named split's final logits [N, C] (float32) and labels [N],
    in file order, as workdir/eval_predictions/<split>.npz."""
    out = os.path.join(self.workdir, "eval_predictions")
    for split in tuple(self.config.train.eval_predictions):
      if split not in self.run.arrays:
        continue
      logits = self._eval_logits.get(split)
      if logits is None:  # a run resumed complete: no evaluation ran in this process (every host predicts)
        logits = self.predict(split)
      if self.is_main:
        os.makedirs(out, exist_ok=True)
        labels = np.asarray(self.run.arrays[split]["labels"])
        np.savez(os.path.join(out, f"{split}.npz"), logits=np.asarray(logits, np.float32), labels=labels)

  def _stop_preempted(self) -> None:
    path = None
    if self.ckpt is not None:
      self.ckpt.close()
      newest = self.ckpt.latest_step()  # this step's save may have failed (disk full): the newest on disk
      path = self.ckpt.path(newest) if newest is not None else None
    self.writer.close()
    error = Preempted(self.step, path, enabled=self.ckpt is not None)
    logging.warning("%s", error)
    raise error

  def _check_finite(self, step: int, metrics: Any) -> None:
    """Counts consecutive non-finite steps (skipped by the step) and stops the run after
    `train.max_bad_steps` of them, naming the terms that were not finite."""
    if int(self.par.scalar(metrics["finite"])):
      self._bad_run = 0
      return
    self._bad_run += 1
    values = self.par.unreplicate(metrics)
    order = lambda k: (k in ("loss", "grad_norm"), k == "grad_norm", k)  # the loss terms first
    bad = sorted(
      (k for k, v in values.items() if k not in _NOT_TERMS and np.ndim(v) == 0 and not np.isfinite(float(v))), key=order
    )
    terms = ", ".join(bad) or "the gradient"
    limit = int(self.config.train.max_bad_steps)
    logging.warning(
      "step %d skipped (no update): non-finite %s; %d consecutive, %d skipped in all",
      step,
      terms,
      self._bad_run,
      int(values["skipped"]),
    )
    if self._bad_run >= limit:
      if self.ckpt is not None:
        self.ckpt.close()
      self.writer.close()
      newest = self.ckpt.latest_step() if self.ckpt is not None else None
      raise TrainingDiverged(
        f"training stopped at step {step}: {self._bad_run} consecutive steps had a non-finite loss or gradient "
        f"(train.max_bad_steps={limit}), the last one in {terms}; lower optim.learning_rate or check the data, "
        f"then resume from the newest checkpoint (step {newest})"
      )

  def finish(self) -> None:
    """After training: test-split predictions (GLUE submission files), the layer-pairing
    counts replayed from (seed, counter), and the plots."""
    run = self.run
    for split in run.test_splits:
      preds = self.predict(split)
      if self.is_main:
        path = task_metrics.write_submission(
          run.task_spec, preds, os.path.join(self.workdir, "predictions"), split, index=run.arrays[split].get("idx")
        )
        logging.info("predictions for %s written to %s", split, path)
    if not self.is_main:
      return
    if self.step_spec.method.uses_mapping:
      counts = pairing_counts_for(self.step_spec, self.step)
      with open(os.path.join(self.workdir, "mapping_counts.json"), "w") as f:
        json.dump(
          {
            "counts": counts.tolist(),
            "steps": self.step,
            "num_teacher_layers": self.step_spec.num_teacher_layers,
            "num_student_layers": self.step_spec.num_student_layers,
            "resample_every": self.step_spec.dcfg.resample_every,
          },
          f,
        )
    if self.config.train.plots:
      plots.write_run_plots(self.workdir)


def pairing_counts_for(spec, num_steps: int) -> np.ndarray:
  """int [M, N+1]: how many steps student layer j (row j-1) was paired with teacher layer t.

  Replays the mapping of every step 0..num_steps-1 from (seed, counter) alone.
  """
  steps = np.arange(num_steps, dtype=np.int32)
  mappings = np.asarray(jax.jit(jax.vmap(lambda s: current_mapping(spec, s)))(steps))
  return layer_sampling.pairing_counts(mappings, spec.num_teacher_layers)


def train_and_evaluate(config, workdir: str) -> dict:
  """Fine-tunes or distils (`config.mode`) in `workdir`; returns the final eval metrics per split.

  The demo and the study are built on this function; `main.run` dispatches to them.
  """
  if config.mode not in TRAIN_MODES:
    raise ConfigError(
      f"mode={config.mode!r} is not a training mode ({', '.join(TRAIN_MODES)}); run it with `python -m rail_kd_jax.main`"
    )
  with workdir_lock.held(workdir):  # one writer per workdir; re-entrant under main.run
    return Trainer.create(config, workdir).fit()
