"""Wall-clock timing: interleaved timed windows, best-of timing and peak matmul FLOP/s."""

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
  """Per-step times of one runner's windows: their median, interquartile range and values."""

  step_ms_median: float
  step_ms_iqr: float
  windows_ms: list[float]


def time_interleaved(
  runners: dict,
  *,
  warmup: int,
  windows: int,
  steps_per_window: int,
  skip_warmup=(),
  budget_s: float = 0.0,
  min_windows: int = 2,
  slow=(),
) -> dict:
  """Times several `{key: (step, block)}` runners in interleaved windows; returns `{key: Timing}`.

  Each runner first runs `warmup` untimed steps (none for the keys in `skip_warmup`,
  which were warmed up by their builder). Then, `windows` times, every runner in turn
  runs one window of `steps_per_window` steps (JAX, JAX + cache, PyTorch, ..., JAX,
  ...), so a change of machine load hits all of them alike. A window ends by blocking
  on its last step's result, so asynchronous dispatch never hides work; its per-step
  time is its wall time divided by `steps_per_window`. With `budget_s` > 0, a runner
  whose timed windows already add up to `budget_s` takes no further windows once it
  has `min_windows` (a slow row gets fewer windows, and says so in `windows_ms`); the
  keys in `slow` (a first step already over the budget) stop after one window.
  """
  for key, (step, block) in runners.items():
    if key in skip_warmup:
      continue
    out = None
    for _ in range(warmup):
      out = step()
    block(out)
  per_step = {k: [] for k in runners}
  spent = {k: 0.0 for k in runners}
  for _ in range(windows):
    for key, (step, block) in runners.items():
      least = 1 if key in slow else min_windows
      if budget_s > 0 and spent[key] >= budget_s and len(per_step[key]) >= least:
        continue
      t0 = time.perf_counter()
      out = None
      for _ in range(steps_per_window):
        out = step()
      block(out)
      elapsed = time.perf_counter() - t0
      spent[key] += elapsed
      per_step[key].append(elapsed * 1e3 / steps_per_window)
  result = {}
  for key, values in per_step.items():
    q = np.percentile(values, [25, 75])
    result[key] = Timing(float(statistics.median(values)), float(q[1] - q[0]), values)
  return result


def best_seconds(fn: Callable[[], Any], repeats: int) -> float:
  """The shortest wall time of `repeats` calls of `fn`, after one untimed call."""
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
  return 2.0 * n**3 / best_seconds(lambda: jax.block_until_ready(f(a, b)), repeats)


def cpu_torch():
  """The torch module when JAX runs on the CPU and torch is installed (the peers' setting), else None."""
  if jax.default_backend() != "cpu":
    return None
  try:
    import torch  # torch is optional: imported only to time PyTorch's matmuls
  except ImportError:
    return None
  return torch


def measure_torch_peak_flops(n: int = 2048, repeats: int = 8) -> float | None:
  """The same matmul with PyTorch on the CPU (None without torch or off CPU)."""
  torch = cpu_torch()
  if torch is None:
    return None
  a, b = torch.randn(n, n), torch.randn(n, n)
  return 2.0 * n**3 / best_seconds(lambda: torch.matmul(a, b), repeats)
