"""Tokenized arrays (cached on disk) and deterministic, host-sliced, length-bucketed batches."""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from absl import logging

from rail_kd_jax.core import files
from rail_kd_jax.data import tokenize as tokenize_lib
from rail_kd_jax.data.tasks import TaskSpec

SEQUENCE_KEYS = ("input_ids", "attention_mask", "token_type_ids")
_CACHE_VERSION = 2  # 2: ids stored as uint16 where they fit, masks as uint8
CACHE_OFF = "off"
_CHUNK = 4096


def _content_hash(texts: Sequence[Sequence[str]], labels: np.ndarray | None) -> str:
  h = hashlib.sha256()
  for column in texts:
    h.update(b"\x01column")
    for t in column:
      h.update(t.encode("utf-8", "surrogatepass"))
      h.update(b"\x00")
  if labels is not None:
    h.update(labels.dtype.str.encode())
    h.update(np.ascontiguousarray(labels).tobytes())
  return h.hexdigest()


def cache_key(split_columns: Mapping[str, Any], tokenizer, spec: TaskSpec, max_length: int) -> str:
  """The hash that names a cache file: tokenizer, max_length, columns and their content."""
  texts = [split_columns[c] for c in spec.text_columns]
  labels = _labels(split_columns, spec)
  meta = {
    "version": _CACHE_VERSION,
    "tokenizer": tokenize_lib.tokenizer_fingerprint(tokenizer),
    "max_length": int(max_length),
    "text_columns": list(spec.text_columns),
    "label_column": spec.label_column,
    "num_labels": spec.num_labels,
    "content": _content_hash(texts, labels),
  }
  return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()


def _labels(split_columns: Mapping[str, Any], spec: TaskSpec) -> np.ndarray | None:
  if spec.label_column not in split_columns:
    return None
  return np.asarray(split_columns[spec.label_column], np.float32 if spec.is_regression else np.int32)


def _tokenize(texts, pairs, tokenizer, max_length: int) -> dict[str, np.ndarray]:
  n = len(texts)
  out = {k: np.zeros((n, max_length), np.int32) for k in SEQUENCE_KEYS}
  side = getattr(tokenizer, "padding_side", "right")
  if side != "right":
    tokenizer.padding_side = "right"  # bucketing trims the right end of every row.
  try:
    for start in range(0, n, _CHUNK):
      stop = min(n, start + _CHUNK)
      enc = tokenizer(
        list(texts[start:stop]),
        list(pairs[start:stop]) if pairs is not None else None,
        truncation=True,
        max_length=max_length,
        padding="max_length",
        return_attention_mask=True,
        return_token_type_ids=True,
        return_tensors="np",
      )
      for k in SEQUENCE_KEYS:
        if k in enc:
          out[k][start:stop] = enc[k]
  finally:
    if side != "right":
      tokenizer.padding_side = side
  return out


def cache_folder(value: str) -> str | None:
  """The token cache's folder for `data.cache_dir`: 'off' = no cache; '' = the default,
  $RAIL_KD_CACHE_DIR, else $XDG_CACHE_HOME/rail_kd_jax/tokens, else ~/.cache/rail_kd_jax/tokens;
  anything else is that folder."""
  if value == CACHE_OFF:
    return None
  if value:
    return os.path.expanduser(value)
  if os.environ.get("RAIL_KD_CACHE_DIR"):
    return os.path.expanduser(os.environ["RAIL_KD_CACHE_DIR"])
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
  return os.path.expanduser(os.path.join(base, "rail_kd_jax", "tokens"))


def encode(
  split_columns: Mapping[str, Any], tokenizer, spec: TaskSpec, max_length: int, cache_dir: str | None = None
) -> dict[str, np.ndarray]:
  """Tokenizes one split once; with `cache_dir`, reuses the arrays saved by an earlier call.

  Args:
    split_columns: one entry of `Task.splits` (text columns named by
      `spec.text_columns`, labels under `spec.label_column`, absent for test sets).
    tokenizer: a Hugging Face tokenizer (see `tokenize.load_tokenizer`).
    spec: the task's `TaskSpec`.
    max_length: every row is truncated/padded to this many tokens (right padding).
    cache_dir: folder for `<task>-<hash>.npz` (`cache_folder` resolves `data.cache_dir`); the
      hash covers the tokenizer's vocabulary and rules, max_length, and the split's columns and
      content. A file that cannot be read or does not hold this split's arrays is rebuilt with
      a warning; a folder that cannot be written costs a warning, not the run.

  Returns:
    `input_ids`, `attention_mask`, `token_type_ids`: int32 [N, max_length];
    `labels`: int32 [N] class ids, or float32 [N] for regression; -1 where the
    split has no labels.
  """
  if max_length < 4:
    raise ValueError(f"data.max_length={max_length} is too small; use at least 4 tokens.")
  missing = [c for c in spec.text_columns if c not in split_columns]
  if missing:
    raise ValueError(f"Split columns {sorted(split_columns)} lack text column {missing[0]!r}.")
  texts = split_columns[spec.text_columns[0]]
  path = None
  if cache_dir:
    key = cache_key(split_columns, tokenizer, spec, max_length)
    path = os.path.join(os.path.expanduser(cache_dir), f"{spec.name}-{key[:24]}.npz")
    arrays = _read_cache(path, len(texts), max_length)
    if arrays is not None:
      return arrays
  t0 = time.time()
  pairs = split_columns[spec.text_columns[1]] if len(spec.text_columns) > 1 else None
  arrays = _tokenize(texts, pairs, tokenizer, max_length)
  labels = _labels(split_columns, spec)
  if labels is None:
    labels = np.full(len(texts), -1, np.float32 if spec.is_regression else np.int32)
  arrays["labels"] = labels
  lengths = arrays["attention_mask"].sum(1)
  logging.info(
    "Tokenized %d examples in %.1fs: mean length %.1f, %.1f%% reach max_length=%d.",
    len(texts),
    time.time() - t0,
    lengths.mean() if len(texts) else 0.0,
    100.0 * float(np.mean(lengths >= max_length)) if len(texts) else 0.0,
    max_length,
  )
  if path:
    _write_cache(path, arrays)
  return arrays


def _read_cache(path: str, n: int, max_length: int) -> dict[str, np.ndarray] | None:
  """The arrays of a cache file as `encode` returns them, or None when there is none; a file
  that cannot be read or holds other shapes is reported and left to be rebuilt."""
  if not os.path.isfile(path):
    return None
  try:
    with np.load(path) as z:
      stored = {k: z[k] for k in z.files}
  except Exception as e:  # pylint: disable=broad-except  # a torn zip raises BadZipFile, EOFError, ...
    logging.warning(
      "Token cache file %s is damaged (%s: %s); tokenizing again and rebuilding it.", path, type(e).__name__, e
    )
    return None
  shapes = {k: v.shape for k, v in stored.items()}
  want = {**{k: (n, max_length) for k in SEQUENCE_KEYS}, "labels": (n,)}
  if shapes != want:
    logging.warning("Token cache file %s holds %s, not %s; tokenizing again and rebuilding it.", path, shapes, want)
    return None
  logging.info("Tokenized arrays (%d examples) read from the token cache %s", n, path)
  return {k: v.astype(np.int32) if k in SEQUENCE_KEYS else v for k, v in stored.items()}


def _write_cache(path: str, arrays: Mapping[str, np.ndarray]) -> None:
  """Saves `arrays` compactly (ids as uint16 when they fit, masks as uint8) by write-then-rename,
  so hosts sharing a cache folder never see a half-written file; a write that fails is a warning."""
  ids = arrays["input_ids"]
  packed = dict(arrays)
  packed["input_ids"] = ids.astype(np.uint16) if ids.size == 0 or ids.max() < 2**16 else ids
  for k in ("attention_mask", "token_type_ids"):
    packed[k] = arrays[k].astype(np.uint8)
  tmp = None
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = files.mkstemp(dir=os.path.dirname(path), suffix=".tmp.npz")
    os.close(fd)
    np.savez(tmp, **packed)
    os.replace(tmp, path)
  except OSError as e:
    logging.warning(
      "Token cache file %s could not be written (%s); this run goes on without it.", path, files.os_error_text(e)
    )
  finally:
    if tmp is not None and os.path.exists(tmp):
      os.remove(tmp)


def steps_per_epoch(n: int, batch_size: int, drop_remainder: bool) -> int:
  """Global batches in one pass over `n` examples."""
  if batch_size <= 0:
    raise ValueError(f"batch_size={batch_size} must be positive.")
  return n // batch_size if drop_remainder else -(-n // batch_size)


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
  """The example order of one epoch: a permutation drawn from (seed, epoch) alone."""
  if not shuffle:
    return np.arange(n)
  rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(epoch)])))
  return rng.permutation(n)


def bucket_length(
  max_real_length: int,
  max_length: int,
  *,
  bucket: bool = True,
  bucket_multiple: int = 16,
  buckets: Sequence[int] | None = None,
) -> int:
  """The padded length of a batch whose longest row has `max_real_length` tokens."""
  if not bucket:
    return max_length
  m = max(1, int(max_real_length))
  if buckets:
    fitting = [b for b in sorted(buckets) if b >= m]
    return min(fitting[0], max_length) if fitting else max_length
  return min(max_length, int(math.ceil(m / bucket_multiple)) * bucket_multiple)


def batches(
  arrays: Mapping[str, np.ndarray],
  batch_size: int,
  *,
  seed: int,
  epoch: int,
  shuffle: bool,
  drop_remainder: bool,
  host_id: int = 0,
  num_hosts: int = 1,
  bucket: bool = True,
  bucket_multiple: int = 16,
  buckets: Sequence[int] | None = None,
  start_step: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
  """Yields this host's slice of every global batch of one epoch.

  Args:
    arrays: the output of `encode` ([N, T] sequences, [N] labels; any other
      [N, ...] array is gathered along).
    batch_size: the GLOBAL batch size; each host yields batch_size // num_hosts rows.
    seed, epoch: the order is `epoch_order(N, seed, epoch, shuffle)`; every host
      computes the same one.
    shuffle: permute the examples (training) or keep file order (evaluation).
    drop_remainder: drop the last partial batch; otherwise it is filled to
      batch_size with copies of real rows whose `example_mask` is 0.
    host_id, num_hosts: host h gets rows [h*b, (h+1)*b) of each global batch, b =
      batch_size // num_hosts.
    bucket, bucket_multiple, buckets: sequences are trimmed to the global batch's
      longest real row rounded up to a multiple of `bucket_multiple` (or to the
      smallest of `buckets` that fits), at most T. The length is computed over the
      global batch so that every host yields the same shapes at the same step.
    start_step: first global batch to yield (resuming mid-epoch sees the same order).

  Yields:
    dicts with `input_ids`, `attention_mask`, `token_type_ids` int32 [b, L],
    `labels` [b], `example_mask` float32 [b].
  """
  n = len(arrays["input_ids"])
  max_length = arrays["input_ids"].shape[1]
  if num_hosts < 1 or not 0 <= host_id < num_hosts:
    raise ValueError(f"host_id={host_id} is not in 0..num_hosts-1 (num_hosts={num_hosts}).")
  if batch_size <= 0 or batch_size % num_hosts:
    raise ValueError(
      f"The global batch_size={batch_size} must be a positive multiple of the number of hosts ({num_hosts})."
    )
  if n == 0:
    raise ValueError("Cannot batch an empty split (0 examples).")
  if drop_remainder and n < batch_size:
    raise ValueError(
      f"The split has {n} examples, fewer than batch_size={batch_size}, so "
      "drop_remainder=True yields no batch; lower the batch size."
    )
  steps = steps_per_epoch(n, batch_size, drop_remainder)
  if not 0 <= start_step <= steps:
    raise ValueError(f"start_step={start_step} is outside the epoch's 0..{steps} steps.")
  if buckets and any(int(b) <= 0 for b in buckets):
    raise ValueError(f"data.buckets={list(buckets)} must hold positive lengths.")
  order = epoch_order(n, seed, epoch, shuffle)
  per_host = batch_size // num_hosts
  lo, hi = host_id * per_host, (host_id + 1) * per_host
  mask_all = arrays["attention_mask"]
  for step in range(start_step, steps):
    idx = order[step * batch_size : (step + 1) * batch_size]
    real = len(idx)
    if real < batch_size:
      idx = np.concatenate([idx, np.resize(idx, batch_size - real)])
    example_mask = np.zeros(batch_size, np.float32)
    example_mask[:real] = 1.0
    longest = int(mask_all[idx[:real]].sum(1).max())
    length = bucket_length(longest, max_length, bucket=bucket, bucket_multiple=bucket_multiple, buckets=buckets)
    host_idx = idx[lo:hi]
    batch = {}
    for k, v in arrays.items():
      batch[k] = v[host_idx, :length] if k in SEQUENCE_KEYS else v[host_idx]
    batch["example_mask"] = example_mask[lo:hi]
    yield batch
