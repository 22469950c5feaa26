"""Run outputs: metrics.jsonl, TensorBoard event files and a progress line.

Only process 0 writes. Every record is one JSON object with `step`, `split` and
named values; arrays (e.g. the sampled layer mapping) are written as lists.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import numpy as np
from absl import logging

from rail_kd_jax.core.errors import StorageError


def _plain(v: Any) -> Any:
  if isinstance(v, (np.ndarray, np.generic)) or hasattr(v, "__array__"):
    arr = np.asarray(v)
    if arr.ndim == 0:
      v = arr.item()
    else:
      return [_plain(x) for x in arr.tolist()]
  if isinstance(v, float) and not math.isfinite(v):
    return str(v)  # JSON has no NaN/inf; keep them readable
  return v


class MetricsWriter:
  """Appends records to `workdir/metrics.jsonl` and TensorBoard (`workdir/tb`)."""

  def __init__(self, workdir: str, enabled: bool = True, tensorboard: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if enabled and tensorboard:
      try:
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(os.path.join(workdir, "tb"))
      except ImportError:  # TensorBoard is optional
        logging.info("tensorboardX not installed: no TensorBoard event files")

  def write(self, step: int, split: str, values: dict) -> dict:
    record = {"step": int(step), "split": split}
    record.update({k: _plain(v) for k, v in values.items()})
    if not self.enabled:
      return record
    try:
      with open(self.path, "a") as f:
        f.write(json.dumps(record) + "\n")
    except OSError as e:  # a full disk: stop with one sentence (a partial line is cut on resume)
      raise StorageError(
        f"could not append to '{self.path}' at step {int(step)} ({type(e).__name__}: {e}); free space "
        "and run the same command again: it resumes from the newest checkpoint"
      ) from e
    if self._tb is not None:
      for k, v in record.items():
        if k in ("step", "split") or not isinstance(v, (int, float)):
          continue
        self._tb.add_scalar(f"{split}/{k}", v, step)
    return record

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


# Wall-clock values in the records: they differ between two runs that are otherwise equal
# (a resumed run's first log after the restart has no step_ms).
WALL_CLOCK_KEYS = ("step_ms", "train_seconds")


def without_wall_clock(records: list[dict]) -> list[dict]:
  """`records` without WALL_CLOCK_KEYS, for comparing two runs record by record."""
  return [{k: v for k, v in r.items() if k not in WALL_CLOCK_KEYS} for r in records]


def read_jsonl(path: str) -> list[dict]:
  """The records of a JSONL file ([] when it does not exist). A line that is not JSON (the
  partial last line of a run killed mid-write) is skipped with a warning."""
  if not os.path.isfile(path):
    return []
  records = []
  with open(path) as f:
    for number, line in enumerate(f, 1):
      line = line.strip()
      if not line:
        continue
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        logging.warning("%s: line %d is not JSON (a run killed mid-write?); skipped", path, number)
  return records


def read_metrics(workdir: str) -> list[dict]:
  """The records of `workdir/metrics.jsonl`."""
  return read_jsonl(os.path.join(workdir, "metrics.jsonl"))


class Progress:
  """A progress line every `every` steps: step, steps/s, ETA and the loss."""

  def __init__(self, total_steps: int, start_step: int = 0):
    self.total = total_steps
    self.start_step = start_step
    self.t0 = time.perf_counter()
    self.last_t = self.t0
    self.last_step = start_step

  def update(self, step: int, loss: float | None = None) -> str:
    now = time.perf_counter()
    rate = (step - self.last_step) / max(now - self.last_t, 1e-9)
    overall = (step - self.start_step) / max(now - self.t0, 1e-9)
    remaining = (self.total - step) / overall if overall > 0 else float("inf")
    self.last_t, self.last_step = now, step
    width = 24
    done = int(width * step / max(self.total, 1))
    bar = "#" * done + "." * (width - done)
    msg = f"[{bar}] step {step}/{self.total}  {rate:.2f} steps/s  ETA {clock(remaining)}"
    if loss is not None:
      msg += f"  loss {loss:.4f}"
    logging.info(msg)
    return msg


def clock(seconds: float) -> str:
  """'h:mm:ss' of a duration (rounded to the second); '?' when it is not finite."""
  if not math.isfinite(seconds):
    return "?"
  minutes, s = divmod(int(round(seconds)), 60)
  hours, m = divmod(minutes, 60)
  return f"{hours}:{m:02d}:{s:02d}"
