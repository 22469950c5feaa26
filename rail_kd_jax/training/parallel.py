"""Data parallelism two ways: `jax.pmap` and `jax.jit` + `jax.shard_map`.

Both wrap the same per-device step from `step.py`, whose gradient all-reduce is a
`lax.pmean` over the axis named `step.AXIS`. The state and the teacher params are
replicated; the global batch is split along its first axis. Multi-host: each
host passes only its own slice of every global batch (see `data.loader.batches`).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rail_kd_jax.core.errors import ConfigError
from rail_kd_jax.training.step import AXIS

KINDS = ("pmap", "shard_map")


def maybe_initialize_distributed(
  enabled: bool, coordinator: str = "", num_processes: int = 0, process_id: int = -1
) -> None:
  """`jax.distributed.initialize()`; on TPU pods / SLURM the arguments are discovered."""
  if not enabled:
    return
  kwargs = {}
  if coordinator:
    kwargs = dict(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
  jax.distributed.initialize(**kwargs)
  logging.info(
    "jax.distributed: process %d of %d, %d local / %d global devices",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )


def select_devices(num_devices: int = 0) -> list:
  """The devices a run uses: every device of every host (multi-host), else the first
  `num_devices` local ones (0 = all). ConfigError when the count cannot be met."""
  if jax.process_count() > 1:
    devices = jax.devices()
    if num_devices not in (0, len(devices)):
      raise ConfigError(f"num_devices={num_devices} must be 0 (all) on a multi-host run")
    return devices
  available = jax.local_devices()
  if num_devices > len(available):
    raise ConfigError(f"num_devices={num_devices} but only {len(available)} devices are visible")
  return available[:num_devices] if num_devices > 0 else available


def local_devices(devices) -> list:
  """This host's share of `devices`."""
  return [d for d in devices if d.process_index == jax.process_index()]


class DataParallel:
  """Places state and batches and compiles the step for one of `KINDS`."""

  def __init__(self, kind: str, num_devices: int = 0):
    if kind not in KINDS:
      raise ConfigError(f"parallel={kind!r} is not supported; valid: {', '.join(KINDS)}")
    self.kind = kind
    devices = select_devices(num_devices)
    self.devices = devices
    self.num_devices = len(devices)
    self.num_local_devices = len(local_devices(devices))
    self.mesh = Mesh(np.array(devices), (AXIS,))
    self._replicated = NamedSharding(self.mesh, P())
    self._split = NamedSharding(self.mesh, P(AXIS))

  # ---- placement -------------------------------------------------------------
  def replicate(self, tree: Any) -> Any:
    """Puts one copy of `tree` on every device (pmap: a leading device axis)."""
    if self.kind == "pmap":
      stack = lambda x: np.broadcast_to(np.asarray(x), (self.num_local_devices,) + np.shape(x))
      return jax.tree.map(lambda x: self._put_split(stack(x)), tree)
    return jax.tree.map(lambda x: jax.device_put(x, self._replicated), tree)

  def shard_batch(self, batch: dict) -> dict:
    """Host-local numpy batch [b_host, ...] -> device arrays split over the data axis."""

    def put(x):
      x = np.asarray(x)
      if self.kind == "pmap":
        if x.shape[0] % self.num_local_devices:
          raise ValueError(f"host batch of {x.shape[0]} does not split over {self.num_local_devices} devices")
        x = x.reshape((self.num_local_devices, x.shape[0] // self.num_local_devices) + x.shape[1:])
      return self._put_split(x)

    return {k: put(v) for k, v in batch.items()}

  def _put_split(self, x: np.ndarray) -> jax.Array:
    if jax.process_count() == 1:
      return jax.device_put(x, self._split)
    return jax.make_array_from_process_local_data(self._split, x)

  def unreplicate(self, tree: Any) -> Any:
    """One host-side numpy copy of a replicated tree."""

    def first(x):
      local = np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else np.asarray(x)
      return local[0] if self.kind == "pmap" else local

    return jax.tree.map(first, tree)

  def gather(self, x: jax.Array) -> np.ndarray:
    """A per-example output split over devices -> numpy [global_batch, ...] (all hosts)."""
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      x = multihost_utils.process_allgather(x, tiled=True)
    x = np.asarray(x)
    if self.kind == "pmap":
      x = x.reshape((-1,) + x.shape[2:])
    return x

  # ---- compilation -----------------------------------------------------------
  def compile_train(self, step_fn: Callable) -> Callable:
    """(state, teacher_params, batch) -> (state, metrics); the state is donated."""
    if self.kind == "pmap":
      return jax.pmap(step_fn, axis_name=AXIS, devices=self.devices, donate_argnums=(0,))
    # check_vma=False: with JAX's varying-axes typing, the gradient of the replicated params
    # would already be psum-ed over AXIS by autodiff, and the step's pmean would then leave
    # the SUM of the per-device gradients (N times the mean; masked by clipping and Adam).
    mapped = jax.shard_map(step_fn, mesh=self.mesh, in_specs=(P(), P(), P(AXIS)), out_specs=(P(), P()), check_vma=False)
    return jax.jit(mapped, donate_argnums=(0,))

  def compile_eval(self, eval_fn: Callable) -> Callable:
    """(params, batch) -> {"logits": split, "loss_sum": replicated, "count": replicated}."""
    if self.kind == "pmap":
      return jax.pmap(eval_fn, axis_name=AXIS, devices=self.devices)
    out_specs = {"logits": P(AXIS), "mask": P(AXIS), "loss_sum": P(), "count": P()}
    return jax.jit(jax.shard_map(eval_fn, mesh=self.mesh, in_specs=(P(), P(AXIS)), out_specs=out_specs))

  def scalar(self, x: Any) -> np.ndarray:
    """A replicated output (metric) -> numpy."""
    local = np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else np.asarray(x)
    return local[0] if self.kind == "pmap" else local
