"""Checkpoints of the student's train state: orbax manager, exact resume, preemption.

Layout of `workdir/checkpoints/` (one orbax CheckpointManager, see docs/CHECKPOINTS.md):

  <step>/state/   the student's `TrainState` as host numpy arrays (orbax StandardSave):
                  step, params {student, heads}, opt_state, skipped. One unreplicated
                  copy, so it restores onto any number of devices and either parallel
                  path. The frozen teacher is never written here.
  <step>/meta/    JSON: step, epoch, step_in_epoch, steps_per_epoch (the data-loader
                  position), seed and mapping counter (the RNG counters: dropout keys and
                  layer mappings are functions of (seed, step)), the full resolved config
                  and its hash, the eval results at that step, the size of metrics.jsonl
                  when it was written, the count of consecutive non-finite steps, a CRC32 of
                  the state, and `final` (written after the last step's evaluation).

Kept: the newest `checkpoint.keep`, plus (`checkpoint.keep_best`) the one with the best
main eval metric (`task_metrics.main_metric`; its direction: `task_metrics.lower_is_better`).

Resume picks the newest checkpoint that restores and verifies; a half-written one (an
orbax temporary folder left by a kill) is removed with a warning, a committed one that
fails to restore or verify is moved to `workdir/checkpoints_corrupt/` with a warning and
the previous one is used. A config that changed in a way that breaks resume is refused
with a `ConfigError` (the resume policy: `resume.py`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
import zlib
from typing import Any, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import serialization
from orbax.checkpoint import checkpoint_managers as ocp_policies

from rail_kd_jax.core.errors import ConfigError, CorruptCheckpoint
from rail_kd_jax.outputs import task_metrics

FORMAT = 1
CORRUPT_DIR = "checkpoints_corrupt"
_TMP_MARKER = ".orbax-checkpoint-tmp"

# ----------------------------------------------------------------------------- state


def to_host(par, state) -> Any:
  """The replicated device state -> one host copy as a nested dict of numpy arrays."""
  tree = serialization.to_state_dict(par.unreplicate(state))
  # Own copies: the device buffers are donated to the next step, and orbax writes in
  # the background.
  return jax.tree.map(lambda x: np.array(x, copy=True), tree)


def state_template(abstract_state) -> Any:
  """A TrainState of ShapeDtypeStructs -> zeros with the same nested-dict layout."""
  return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), serialization.to_state_dict(abstract_state))


def checksum(tree: Any) -> int:
  """CRC32 over every leaf's bytes in key order; verifies a restored state bit for bit."""
  crc = 0
  for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(tree)[0], key=lambda kv: jax.tree_util.keystr(kv[0])):
    crc = zlib.crc32(jax.tree_util.keystr(path).encode(), crc)
    crc = zlib.crc32(np.ascontiguousarray(leaf).view(np.uint8), crc)
  return crc


def _shapes(tree) -> dict[str, tuple]:
  return {
    jax.tree_util.keystr(p): (tuple(np.shape(x)), str(np.dtype(x.dtype)))
    for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def _describe_mismatch(saved: dict, want: dict) -> str:
  for k in sorted(set(saved) | set(want)):
    if k not in want:
      return f"the checkpoint has {k} which the config does not build"
    if k not in saved:
      return f"the config builds {k} which the checkpoint lacks"
    if saved[k] != want[k]:
      return f"{k} is {saved[k][0]} {saved[k][1]} in the checkpoint but {want[k][0]} {want[k][1]} now"
  return "the state trees differ"


# ------------------------------------------------------------------------ the manager


class Checkpointer:
  """The orbax CheckpointManager of one run's `workdir/checkpoints`."""

  def __init__(
    self,
    workdir: str,
    *,
    keep: int = 2,
    keep_best: bool = True,
    best_metric: str | None = None,
    best_mode: str = "max",
    async_save: bool = True,
  ):
    self.workdir = workdir
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.best_metric = best_metric if keep_best else None
    self.is_primary = jax.process_index() == 0
    self._remove_half_written()
    policies = [ocp_policies.LatestN(n=max(1, int(keep)))]
    if self.best_metric:
      policies.append(
        ocp_policies.BestN(
          get_metric_fn=lambda m: m[self.best_metric],
          reverse=best_mode == "min",
          n=1,
          keep_checkpoints_without_metrics=False,
        )
      )
    self._options = ocp.CheckpointManagerOptions(
      preservation_policy=ocp_policies.AnyPreservationPolicy(policies),
      enable_async_checkpointing=bool(async_save),
      cleanup_tmp_directories=True,
      create=True,
    )
    self.manager = self._make_manager()
    self._pending: int | None = None  # the step of a save that may still be in flight
    self.failed_steps: list[int] = []  # saves that could not be written (disk full, I/O error)

  def _make_manager(self) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
      self.directory,
      options=self._options,
      item_handlers={"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()},
    )

  def _remove_half_written(self, quiet: bool = False) -> None:
    if not self.is_primary or not os.path.isdir(self.directory):
      return
    for name in sorted(os.listdir(self.directory)):
      if _TMP_MARKER in name:
        path = os.path.join(self.directory, name)
        if not quiet:
          logging.warning("checkpoint %s was left half-written by an interrupted save; it is skipped and removed", path)
        shutil.rmtree(path, ignore_errors=True)

  # ---- queries -----------------------------------------------------------------
  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def path(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  # ---- save --------------------------------------------------------------------
  def save(self, step: int, host_state: Any, meta: dict, eval_results: dict | None = None) -> bool:
    """Starts writing `host_state` (numpy, from `to_host`) and `meta` at `step`.

    Returns False when a checkpoint at `step` exists already. Asynchronous when the
    manager is; `wait()` blocks until it is on disk.
    """
    self._settle()  # a failed background write of the previous save surfaces here
    if step in self.manager.all_steps():
      return False
    meta = dict(meta, format=FORMAT, step=int(step), crc32=checksum(host_state), saved_at=time.time())
    metrics = None
    if self.best_metric and eval_results and self.best_metric in eval_results:
      value = float(eval_results[self.best_metric])
      if np.isfinite(value):
        metrics = {self.best_metric: value}
    try:
      self.manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(host_state), meta=ocp.args.JsonSave(meta)),
        metrics=metrics,
        force=True,
      )
    except Exception as e:  # pylint: disable=broad-except
      self._write_failed(step, e)
      return False
    self._pending = step
    return True

  def _settle(self) -> bool:
    """Waits for the save in flight; False (after a warning) when it could not be written."""
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      self._write_failed(self._pending, e)
      return False
    self._pending = None
    return True

  def _write_failed(self, step: int | None, e: Exception) -> None:
    """A save that failed (disk full, I/O error): warn, drop its partial folder, keep the rest.

    Training goes on; the checkpoints committed before stay as they were, and the manager
    is rebuilt from what is on disk, so a half-written step is never listed or restored.
    """
    self._pending = None
    self.failed_steps.append(-1 if step is None else int(step))
    with contextlib.suppress(Exception):
      self.manager.close()
    self._remove_half_written(quiet=True)
    self.manager = self._make_manager()
    newest = self.manager.latest_step()
    logging.warning(
      "checkpoint at step %s could not be written (%s); training continues, and the newest complete "
      "checkpoint (%s) is intact",
      "?" if step is None else step,
      _short(e),
      f"step {newest}" if newest is not None else "none yet",
    )

  def wait(self) -> bool:
    """Blocks until the save in flight is on disk; False when it could not be written."""
    return self._settle()

  def close(self) -> bool:
    """Finishes the save in flight and closes the manager; False when that save failed."""
    ok = self._settle()
    self.manager.close()
    return ok

  def reached_preemption(self, step: int) -> bool:
    """Multi-host: JAX's preemption sync point (every host agrees on the step)."""
    try:
      return bool(self.manager.reached_preemption(step))
    except Exception:  # pylint: disable=broad-except
      return False

  # ---- restore -----------------------------------------------------------------
  def read_meta(self, step: int) -> dict:
    try:
      meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # pylint: disable=broad-except
      raise CorruptCheckpoint(f"its metadata cannot be read ({_short(e)})") from None
    if not isinstance(meta, dict) or meta.get("step") != step or "crc32" not in meta:
      raise CorruptCheckpoint("its metadata is incomplete")
    return meta

  def read_state(self, step: int, template: Any, meta: dict) -> Any:
    """Restores the host numpy state, checks its layout against `template`, verifies the CRC."""
    try:
      saved_tree = self.manager.item_metadata(step)["state"]
      saved_tree = getattr(saved_tree, "tree", saved_tree)
      saved = {
        jax.tree_util.keystr(p): (tuple(m.shape), str(np.dtype(m.dtype)))
        for p, m in jax.tree_util.tree_flatten_with_path(saved_tree)[0]
      }
    except Exception as e:  # pylint: disable=broad-except
      raise CorruptCheckpoint(f"its array metadata cannot be read ({_short(e)})") from None
    want = _shapes(template)
    if saved != want:
      raise ConfigError(
        f"the checkpoint at {self.path(step)} does not fit the model and optimizer this config "
        f"builds: {_describe_mismatch(saved, want)}; restore the config it was made with or use a "
        "new --workdir"
      )
    try:
      state = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(template)))["state"]
    except Exception as e:  # pylint: disable=broad-except
      raise CorruptCheckpoint(f"its arrays cannot be read ({_short(e)})") from None
    state = jax.tree.map(np.asarray, state)
    if checksum(state) != meta["crc32"]:
      raise CorruptCheckpoint("its arrays do not match the checksum written with them")
    return state

  def set_aside(self, step: int, reason: str) -> None:
    """Moves a corrupt checkpoint out of the manager's folder (never deletes it)."""
    src = self.path(step)
    logging.warning(
      "checkpoint %s is unusable (%s); it is moved to %s/ and the previous one is used", src, reason, CORRUPT_DIR
    )
    if self.is_primary and os.path.isdir(src):
      dst_dir = os.path.join(self.workdir, CORRUPT_DIR)
      os.makedirs(dst_dir, exist_ok=True)
      dst = os.path.join(dst_dir, str(step))
      if os.path.exists(dst):
        dst = f"{dst}-{int(time.time())}"
      shutil.move(src, dst)
    self.manager.reload()

  def restore_latest(self, template: Any, check_meta) -> tuple[Any, dict] | None:
    """The newest good checkpoint as (host state, meta), or None when there is none.

    `check_meta(meta, path)` vets the newest readable checkpoint's metadata against the
    current run and raises ConfigError to refuse it (not retried with older ones).
    """
    checked = False
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        meta = self.read_meta(step)
        if not checked:
          check_meta(meta, self.path(step))
          checked = True
        state = self.read_state(step, template, meta)
      except CorruptCheckpoint as e:
        self.set_aside(step, str(e))
        continue
      return state, meta
    return None


def _short(e: Exception) -> str:
  text = " ".join(str(e).split())
  return (type(e).__name__ + ": " + text)[:200]


# ------------------------------------------------------------------------ preemption


class PreemptionGuard:
  """SIGTERM (and Ctrl-C) request a checkpoint at the next step boundary; a second one
  ends the process at once (the default action is restored after the first).

  Only installed in the main thread of a single-process run: on a multi-host run JAX's
  own preemption notice (`Checkpointer.reached_preemption`) is used, so that every host
  stops at the same step.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum: int | None = None
    self._previous: dict[int, Any] = {}

  @property
  def requested(self) -> bool:
    return self.signum is not None

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    self.signum = signum
    for s in self.SIGNALS:
      signal.signal(s, signal.SIG_DFL)
    logging.warning(
      "received %s: saving a checkpoint at the next step boundary and exiting (send it again to exit at once)",
      signal.Signals(signum).name,
    )

  def __enter__(self) -> "PreemptionGuard":
    if threading.current_thread() is threading.main_thread() and jax.process_count() == 1:
      for s in self.SIGNALS:
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous.clear()


def best_mode_for(metric: str) -> str:
  return "min" if task_metrics.lower_is_better(metric) else "max"


__all__: Sequence[str] = (
  "Checkpointer",
  "PreemptionGuard",
  "checksum",
  "state_template",
  "to_host",
)
