"""Teacher-output cache: run the frozen teacher once per dataset, then train without it.

The teacher is frozen and runs deterministically, so its outputs for an example
never change during a run. With `config.distill.cache_teacher=True`,
`builders.build_run` calls `attach`, which computes once per (teacher, data,
settings) -- and reuses from disk afterwards -- per train example:

  teacher_logits  [N, C]        the teacher's logits
  teacher_pooled  [N, L+1, H]   every layer's hidden states, masked mean over real tokens
  teacher_cls     [N, L+1, H]   every layer's first-token vector

in `distill.cache_dtype` (bfloat16 by default, float32 for bit-exact runs),
stored as `.npy` files that are memory-mapped, not loaded. They are added to
`run.arrays["train"]`, so `data.loader.batches` gathers each batch's rows along
with its tokens, and the step (`StepSpec.cached_teacher=True`) reads them
instead of running the teacher: the train step does not contain the teacher
forward at all (nor its params).

Valid for every method that distils logits and pooled vectors (kd, pkd, alp_kd,
ckd with ckd_granularity='pooled', rail_l, rail_c); refused for methods that
read token-level teacher states (ckd with ckd_granularity='token').

Exactness. In float32 the cached values are bit-for-bit those of the online
teacher when the cache forward sees the same per-device batch shape as training
(same per-device batch size and padded length): the cache is computed with the
same `step.teacher_outputs` function, per device, over `train.batch_size /
num_devices` examples, padded like the training batches. With length bucketing
on (`data.bucket=True`, the default) a training batch's padded length depends on
which examples it holds, so values then agree only up to float rounding
(masked mean pooling is length-independent in exact arithmetic); with
`data.bucket=False` training equals the online teacher bit for bit (tested).
bfloat16 rounds every cached value to 8 significant bits (relative error
<= 2^-9), which is below the noise of the losses it feeds and halves the disk.

Disk: N * (C + 2 (L+1) H) values, e.g. MiniLM-6 (7 x 384) on SST-2 (67k
examples): 0.7 GB in bfloat16; RoBERTa-large (25 x 1024) on MNLI (393k): 40 GB.
Files live under `data.cache_dir/teacher/` (or `<workdir>/teacher_cache/`),
in a folder named by a hash of everything that determines them: the teacher's
config and params, the token arrays, per-device batch, bucketing and dtype (one
cache serves both poolings: it holds the mean and the first token). Every host of a multi-host run computes the whole cache with its local
devices (every host's batches draw from every example); a finished cache is
renamed into place atomically, so hosts sharing a folder never read a partial one.

Integrity. meta.json records each data file's size and sha256 (format version 2;
a version-1 cache has another key, so it is not reused but rebuilt beside it, and
left on disk). Every reuse checks the sizes, then the sha256 of every file. That
reads the whole cache once per run: the three files are hashed in parallel threads
(sha256 runs at about 1 GB/s per core), so it takes as long as the disk needs to
read it -- about a second for a GLUE-sized cache, tens of seconds for the 40 GB
above -- against the teacher forward over the whole train set that built it; and
it leaves the files in the page cache for the first epoch, which reads every row.
A file that is missing, of the wrong size or with altered bytes is named in a
warning; the folder is moved to `corrupt/<folder>-<time>` under the same root
(never deleted) and the cache is rebuilt. A write that fails while building
(disk full, I/O error) removes the partial folder and raises
`errors.StorageError`; the data files' blocks are reserved up front
(posix_fallocate), so a full disk fails there, before the teacher runs, and not
as a SIGBUS in a memory-mapped write.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import errno
import hashlib
import json
import os
import time
from typing import Any, Mapping

import jax
import ml_dtypes
import numpy as np
from absl import logging
from flax.traverse_util import flatten_dict
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rail_kd_jax import models
from rail_kd_jax.core import files as files_lib
from rail_kd_jax.core.errors import ConfigError, StorageError
from rail_kd_jax.data import loader
from rail_kd_jax.distill import methods as methods_lib
from rail_kd_jax.training import parallel
from rail_kd_jax.training.step import AXIS, StepSpec, teacher_outputs

# 2: meta.json records each data file's size and sha256, checked at every reuse.
CACHE_VERSION = 2
DTYPES = ("bfloat16", "float32")
KEYS = ("teacher_logits", "teacher_pooled", "teacher_cls")
_META = "meta.json"
_CORRUPT_DIR = "corrupt"  # under the cache root: folders that failed verification


def serves(dcfg) -> bool:
  """Whether a teacher cache can stand in for the teacher of `dcfg`'s method: it needs
  the teacher, and only the teacher's logits and pooled vectors."""
  return methods_lib.get_method(dcfg.method).needs_teacher and not methods_lib.token_level(dcfg)


def check_supported(dcfg) -> None:
  """Raises ConfigError when the method needs teacher states a cache does not hold."""
  if dcfg.cache_dtype not in DTYPES:
    raise ConfigError(f"distill.cache_dtype={dcfg.cache_dtype!r} is not valid; choose one of: {', '.join(DTYPES)}")
  if methods_lib.token_level(dcfg):
    raise ConfigError(
      "distill.cache_teacher=True caches pooled vectors and logits, but ckd with "
      "ckd_granularity='token' compares every token's hidden states; use "
      "ckd_granularity='pooled' or cache_teacher=False"
    )


def _hash_arrays(h, tree: Mapping[str, Any]) -> None:
  for path, leaf in sorted(flatten_dict(dict(tree)).items()):
    arr = np.ascontiguousarray(np.asarray(leaf))
    h.update("/".join(map(str, path)).encode())
    h.update(arr.dtype.str.encode() + str(arr.shape).encode())
    h.update(memoryview(arr).cast("B"))


def cache_key(
  spec: StepSpec,
  teacher_params: Any,
  arrays: Mapping[str, np.ndarray],
  *,
  per_device_batch: int,
  bucket: dict,
  dtype: str,
) -> str:
  """Hash of everything that determines the cached values (see the module docstring)."""
  h = hashlib.sha256()
  t = spec.teacher
  meta = {
    "version": CACHE_VERSION,
    "config": repr(t.config),
    "dtype": str(np.dtype(t.dtype)),
    "param_dtype": str(np.dtype(t.param_dtype)),
    "scan_layers": bool(t.scan_layers),
    # The form the deterministic teacher forward computes (auto resolves by backend and dtype).
    "attention": models.resolve_attention(t.attention, t.dtype, True, t.config.attention_probs_dropout_prob),
    "pooling": "mean and cls",  # both, whatever the run's pooling (_forward_fn)
    "per_device_batch": int(per_device_batch),
    "bucket": {k: (list(v) if isinstance(v, (tuple, list)) else v) for k, v in sorted(bucket.items())},
    "cache_dtype": dtype,
    "backend": jax.default_backend(),
  }
  h.update(json.dumps(meta, sort_keys=True).encode())
  _hash_arrays(h, {"params": teacher_params})
  _hash_arrays(h, {k: arrays[k] for k in loader.SEQUENCE_KEYS if k in arrays})
  return h.hexdigest()


def _forward_fn(spec: StepSpec, devices):
  """jit + shard_map over `devices` (this host's) of the step's own teacher forward.

  Returns (fn, place_params, place_batch); fn(params, batch) -> (logits [n, C],
  pooled [L+1, n, H], cls [L+1, n, H]) with n = devices x per-device batch.
  """
  # The cache holds the masked mean and the first token of every layer, whatever the run's
  # pooling: one cache serves every pooling (step.teacher_outputs picks the one it needs).
  dcfg = spec.dcfg.copy_and_resolve_references()
  dcfg.pooling = "mean"
  fwd_spec = dataclasses.replace(spec, cached_teacher=False, dcfg=dcfg)
  mesh = Mesh(np.array(devices), (AXIS,))

  def fwd(params, batch):
    out = teacher_outputs(fwd_spec, params, batch)
    return out["logits"], out["pooled"], out["cls"]

  fn = jax.jit(
    jax.shard_map(fwd, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=(P(AXIS), P(None, AXIS), P(None, AXIS)))
  )
  place_params = lambda tree: jax.device_put(tree, NamedSharding(mesh, P()))
  place_batch = lambda batch: jax.device_put(batch, NamedSharding(mesh, P(AXIS)))
  return fn, place_params, place_batch


def compute(
  spec: StepSpec,
  teacher_params: Any,
  arrays: Mapping[str, np.ndarray],
  out: Mapping[str, np.ndarray],
  *,
  per_device_batch: int,
  devices,
  bucket: dict,
) -> None:
  """Fills `out` (arrays [N, ...] of KEYS, any dtype) with the teacher's outputs, in file order."""
  n = len(arrays["input_ids"])
  nd = len(devices)
  host_batch = per_device_batch * nd
  fwd, place_params, place_batch = _forward_fn(spec, devices)
  params = place_params(teacher_params)
  seq = {k: arrays[k] for k in loader.SEQUENCE_KEYS if k in arrays}
  t0 = time.perf_counter()
  start = 0
  for i, batch in enumerate(
    loader.batches(seq, host_batch, seed=0, epoch=0, shuffle=False, drop_remainder=False, **bucket)
  ):
    real = min(host_batch, n - start)
    batch = place_batch({k: v for k, v in batch.items() if k != "example_mask"})
    logits, pooled, cls = fwd(params, batch)
    # pooled/cls [L+1, n, H] -> [n, L+1, H]: example-major, like every batch array.
    logits = np.asarray(logits)
    pooled = np.swapaxes(np.asarray(pooled), 0, 1)
    cls = np.swapaxes(np.asarray(cls), 0, 1)
    for key, value in zip(KEYS, (logits, pooled, cls)):
      out[key][start : start + real] = value[:real].astype(out[key].dtype)
    start += real
    if i % 200 == 0 or start >= n:
      logging.info("teacher cache: %d / %d examples (%.0f ex/s)", start, n, start / (time.perf_counter() - t0))


def _open(path: str, dtype: str) -> dict[str, np.ndarray]:
  out = {}
  for key in KEYS:
    arr = np.load(os.path.join(path, key + ".npy"), mmap_mode="r")
    out[key] = arr.view(ml_dtypes.bfloat16) if dtype == "bfloat16" else arr
  return out


def _sha256_all(files: Mapping[str, str]) -> dict[str, str]:
  with concurrent.futures.ThreadPoolExecutor(len(files)) as pool:
    return dict(zip(files, pool.map(files_lib.sha256, files.values())))


def _records(path: str) -> dict[str, dict]:
  """{KEYS: {"bytes", "sha256"}} of the data files in `path`, as meta.json records them."""
  files = {k: os.path.join(path, k + ".npy") for k in KEYS}
  digests = _sha256_all(files)
  return {k: {"bytes": os.path.getsize(f), "sha256": digests[k]} for k, f in files.items()}


def _problem(path: str) -> str | None:
  """What is wrong with the cache folder `path` (one clause naming the file), or None when
  every data file has the size and sha256 that meta.json recorded when it was built."""
  meta_file = os.path.join(path, _META)
  try:
    with open(meta_file) as f:
      recorded = json.load(f)["files"]
    expected = {k: (int(recorded[k]["bytes"]), str(recorded[k]["sha256"])) for k in KEYS}
  except FileNotFoundError:
    return f"teacher cache file '{meta_file}' is missing"
  except OSError as e:
    return f"teacher cache file '{meta_file}' cannot be read ({files_lib.os_error_text(e)})"
  except json.JSONDecodeError:
    return f"teacher cache file '{meta_file}' is not valid JSON (truncated?)"
  except (KeyError, TypeError, ValueError):
    return f"teacher cache file '{meta_file}' does not record each data file's size and sha256"
  files = {k: os.path.join(path, k + ".npy") for k in KEYS}
  try:
    for k, file in files.items():
      if not os.path.isfile(file):
        return f"teacher cache file '{file}' is missing"
      size, want = os.path.getsize(file), expected[k][0]
      if size != want:
        return (
          f"teacher cache file '{file}' is {size} bytes, expected {want} ({'truncated' if size < want else 'grown'}?)"
        )
    digests = _sha256_all(files)
  except OSError as e:
    return f"teacher cache file '{e.filename or path}' cannot be read ({files_lib.os_error_text(e)})"
  for k, file in files.items():
    if digests[k] != expected[k][1]:
      return (
        f"teacher cache file '{file}' has the recorded size but sha256 {digests[k][:12]}..., "
        f"expected {expected[k][1][:12]}... (bytes altered)"
      )
  return None


def _set_aside(path: str, problem: str) -> None:
  """Moves the unusable cache folder `path` to `corrupt/<name>-<time>` beside it (never deletes
  it); outside the `teacher-*` names, so nothing that lists the caches counts it as one."""
  root, name = os.path.split(path)
  stamp = time.strftime("%Y%m%d-%H%M%S")
  aside, n = os.path.join(root, _CORRUPT_DIR, f"{name}-{stamp}"), 2
  while os.path.lexists(aside):
    aside, n = os.path.join(root, _CORRUPT_DIR, f"{name}-{stamp}-{n}"), n + 1
  logging.warning("%s; moving the cache aside to '%s' and rebuilding it", problem, aside)
  try:
    os.makedirs(os.path.dirname(aside), exist_ok=True)
    os.rename(path, aside)
  except FileNotFoundError:
    pass  # another host sharing the folder moved it first
  except OSError as e:
    raise StorageError(
      f"teacher cache '{path}' is unusable ({problem}) and cannot be moved aside to '{aside}' "
      f"({files_lib.os_error_text(e)}); move or delete it and rerun"
    ) from None


def _allocate(file: str, store, shape: tuple) -> np.memmap:
  """A new .npy file mapped for writing, its blocks reserved on disk: a memory-mapped write
  that finds the disk full kills the process (SIGBUS), a failed reservation raises OSError."""
  arr = np.lib.format.open_memmap(file, mode="w+", dtype=store, shape=shape)
  if hasattr(os, "posix_fallocate"):
    fd = os.open(file, os.O_RDWR)
    try:
      os.posix_fallocate(fd, 0, os.path.getsize(file))
    except OSError as e:
      if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # else: no reservation there
        raise OSError(e.errno, e.strerror, file) from None
    finally:
      os.close(fd)
  return arr


def _build(spec, teacher_params, arrays, path: str, key: str, dtype: str, **compute_kw) -> None:
  """Computes the cache into a temporary sibling of `path` and renames it into place when
  complete; a failed write (OSError) removes the partial folder and raises StorageError."""
  n = len(arrays["input_ids"])
  t = spec.teacher.config
  shapes = {
    "teacher_logits": (n, t.num_labels),
    "teacher_pooled": (n, t.num_hidden_layers + 1, t.hidden_size),
    "teacher_cls": (n, t.num_hidden_layers + 1, t.hidden_size),
  }
  # bfloat16 has no .npy type code: it is stored as its uint16 bit pattern and viewed back.
  store = np.uint16 if dtype == "bfloat16" else np.float32
  try:
    with files_lib.staging_folder(path, prefix=".tmp-teacher-") as tmp:
      files = {k: _allocate(os.path.join(tmp, k + ".npy"), store, shapes[k]) for k in KEYS}
      views = {k: (v.view(ml_dtypes.bfloat16) if dtype == "bfloat16" else v) for k, v in files.items()}
      t0 = time.perf_counter()
      compute(spec, teacher_params, arrays, views, **compute_kw)
      for v in files.values():
        v.flush()
      del files, views
      meta = {
        "version": CACHE_VERSION,
        "key": key,
        "examples": n,
        "dtype": dtype,
        "shapes": {k: list(s) for k, s in shapes.items()},
        "files": _records(tmp),
        "seconds": round(time.perf_counter() - t0, 2),
      }
      with open(os.path.join(tmp, _META), "w") as f:
        json.dump(meta, f)
      try:
        os.replace(tmp, path)  # atomic; another host may have won the race
      except OSError:
        if not os.path.isfile(os.path.join(path, _META)):
          raise
      logging.info("teacher cache: %d examples in %.1fs -> %s", n, time.perf_counter() - t0, path)
  except OSError as e:
    where = f" writing {os.path.basename(e.filename)}" if e.filename else ""
    raise StorageError(
      f"teacher cache '{path}' could not be written ({files_lib.os_error_text(e)}{where}); the partial files "
      "were removed and nothing was cached, so free space there or set data.cache_dir to another disk and rerun"
    ) from e


def build_or_load(
  spec: StepSpec,
  teacher_params: Any,
  arrays: Mapping[str, np.ndarray],
  *,
  cache_root: str,
  per_device_batch: int,
  devices,
  bucket: dict,
  dtype: str = "bfloat16",
) -> dict[str, np.ndarray]:
  """The memory-mapped cache arrays {KEYS: [N, ...]}, computed and saved on first use.

  A folder already there is verified (sizes, sha256) before it is reused; an unusable one
  is moved aside with a warning and rebuilt. Raises StorageError when a write fails."""
  if dtype not in DTYPES:
    raise ConfigError(f"distill.cache_dtype={dtype!r} is not valid; choose one of: {', '.join(DTYPES)}")
  key = cache_key(spec, teacher_params, arrays, per_device_batch=per_device_batch, bucket=bucket, dtype=dtype)
  path = os.path.join(os.path.expanduser(cache_root), f"teacher-{key[:24]}")
  if os.path.lexists(path):
    t0 = time.perf_counter()
    problem = _problem(path)
    if problem is None:
      logging.info("teacher cache: reusing %s (sizes and sha256 verified in %.1fs)", path, time.perf_counter() - t0)
      return _open(path, dtype)
    _set_aside(path, problem)
  _build(
    spec, teacher_params, arrays, path, key, dtype, per_device_batch=per_device_batch, devices=devices, bucket=bucket
  )
  return _open(path, dtype)


def attach(config, workdir: str, spec: StepSpec, teacher_params: Any, train_arrays: dict, num_devices: int) -> dict:
  """`train_arrays` plus the cache arrays (built or reused); called by `builders.build_run`."""
  check_supported(config.distill)
  d = config.data
  root = os.path.join(d.cache_dir, "teacher") if d.cache_dir else os.path.join(workdir, "teacher_cache")
  selected = parallel.select_devices(num_devices)
  devices = parallel.local_devices(selected)
  per_device = int(config.train.batch_size) // len(selected) // int(config.train.grad_accum_steps)
  bucket = dict(bucket=bool(d.bucket), bucket_multiple=int(d.bucket_multiple), buckets=tuple(d.buckets) or None)
  cached = build_or_load(
    spec,
    teacher_params,
    train_arrays,
    cache_root=root,
    per_device_batch=per_device,
    devices=devices,
    bucket=bucket,
    dtype=config.distill.cache_dtype,
  )
  out = dict(train_arrays)
  out.update(cached)
  return out
