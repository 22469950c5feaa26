"""Wall-clock timing: timed windows (interleaved across runners), best-of timing and peak matmul FLOP/s."""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass
class Timing:
  step_ms_median: float
  step_ms_iqr: float
  windows_ms: list[float]


def time_windows(
  step: Callable[[], Any],
  *,
  warmup: int,
  windows: int,
  steps_per_window: int,
  block: Callable[[Any], Any] = jax.block_until_ready,
) -> Timing:
  """Runs `step` `warmup` times, then `windows` timed windows of `steps_per_window` steps.

  Each window ends by blocking on the last step's result, so asynchronous
  dispatch never hides work; the per-step time of a window is its wall time
  divided by `steps_per_window`. Returns the median and interquartile range.
  """
  out = None
  for _ in range(warmup):
    out = step()
  block(out)
  per_step = []
  for _ in range(windows):
    t0 = time.perf_counter()
    for _ in range(steps_per_window):
      out = step()
    block(out)
    per_step.append((time.perf_counter() - t0) * 1e3 / steps_per_window)
  q = np.percentile(per_step, [25, 75]) if len(per_step) > 1 else (per_step[0], per_step[0])
  return Timing(float(statistics.median(per_step)), float(q[1] - q[0]), per_step)


def _best_seconds(fn: Callable[[], Any], repeats: int) -> float:
  fn()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t0)
  return best


def measure_peak_flops(n: int = 2048, repeats: int = 8) -> float:
  """FLOP/s of a large float32 matmul with JAX on the default device (best of `repeats`)."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
  f = jax.jit(lambda x, y: x @ y)
  return 2.0 * n**3 / _best_seconds(lambda: jax.block_until_ready(f(a, b)), repeats)


def _cpu_torch():
  """The torch module when JAX runs on the CPU and torch is installed (the peers' setting), else None."""
  if jax.default_backend() != "cpu":
    return None
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return torch


def measure_torch_peak_flops(n: int = 2048, repeats: int = 8) -> float | None:
  """The same matmul with PyTorch on the CPU (None without torch or off CPU)."""
  torch = _cpu_torch()
  if torch is None:
    return None
  a, b = torch.randn(n, n), torch.randn(n, n)
  return 2.0 * n**3 / _best_seconds(lambda: torch.matmul(a, b), repeats)


def time_interleaved(runners: dict, *, warmup: int, windows: int, steps_per_window: int) -> dict:
  """`time_windows` for several `(step, block)` runners, their windows interleaved."""
  for step, block in runners.values():
    out = None
    for _ in range(warmup):
      out = step()
    block(out)
  per_step = {k: [] for k in runners}
  for _ in range(windows):
    for key, (step, block) in runners.items():
      t0 = time.perf_counter()
      out = None
      for _ in range(steps_per_window):
        out = step()
      block(out)
      per_step[key].append((time.perf_counter() - t0) * 1e3 / steps_per_window)
  result = {}
  for key, values in per_step.items():
    q = np.percentile(values, [25, 75])
    result[key] = Timing(float(statistics.median(values)), float(q[1] - q[0]), values)
  return result
