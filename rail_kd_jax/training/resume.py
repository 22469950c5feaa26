"""The resume policy: which config changes a checkpoint survives, what it records, and how a run
picks up from it (the state, the counters and metrics.jsonl).

`restore` is what a `Trainer` calls at construction: the newest good checkpoint
(`checkpoint.Checkpointer.restore_latest`), refused with a `ConfigError` when the config changed a
`RESUME_FIELDS` field or the data gives another number of batches per epoch, with metrics.jsonl
cut back to where the checkpoint was written. `metadata` is what every save records.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import os
from typing import Any

import jax
from absl import logging
from flax import serialization

from rail_kd_jax.core.errors import ConfigError
from rail_kd_jax.distill import methods as methods_lib
from rail_kd_jax.training import checkpoint as checkpoint_lib
from rail_kd_jax.training.train_state import TrainState

# Config fields whose change makes a resumed run a different run (another model, method,
# data order or mapping): resuming with a change to one of these is refused. Every other
# change (logging, evaluation, export, number of devices, parallel path, loss weights,
# learning rate, number of steps, ...) is allowed and logged as a warning.
RESUME_FIELDS = (
  "mode",
  "seed",
  "model.*",
  "teacher.*",
  "student.*",
  "distill.method",
  "distill.sampling",
  "distill.resample_every",
  "distill.fixed_layers",
  "distill.resample_every_steps",
  "distill.projection",
  "distill.proj_dim",
  "distill.proj_index",
  "distill.center",
  "distill.pkd_mapping",
  "train.batch_size",
  "data.task",
  "data.data_dir",
  "data.train_file",
  "data.synthetic",
  "data.max_train_examples",
  "data.text_column",
  "data.text_pair_column",
  "data.label_column",
  "data.label_names",
  "data.num_labels",
)
# Model fields inside the sections above that only change how the model computes.
RESUME_HARMLESS = ("*.dtype", "*.remat", "*.dropout", "*.attention_dropout", "*.attention")
# Fields that differ between launches (a new coordinator port) and between the hosts of one
# run (the checkpoint's meta is written by process 0): never reported as a change on resume.
LAUNCH_FIELDS = ("distributed.coordinator", "distributed.process_id")


def flat_config(config) -> dict[str, Any]:
  """The resolved config as {'a.b.c': JSON value} (tuples become lists)."""
  tree = json.loads(config.to_json_best_effort(sort_keys=True))
  out = {}

  def walk(prefix, node):
    if isinstance(node, dict) and node:
      for k, v in node.items():
        walk(f"{prefix}.{k}" if prefix else str(k), v)
    else:
      out[prefix] = node

  walk("", tree)
  return out


def metadata(
  config,
  workdir: str,
  *,
  step: int,
  steps_per_epoch: int,
  total_steps: int,
  mapping_counter: int,
  par,
  bad_run: int,
  train_seconds: float,
  eval_results: dict | None,
  final: bool,
) -> dict[str, Any]:
  """What a checkpoint records next to the state: the position in the run, the config (and
  its hash, to refuse a resume with other settings), the topology, and how far
  metrics.jsonl had got (a resume truncates it back to there)."""
  epoch, in_epoch = divmod(step, steps_per_epoch)
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  flat = flat_config(config)
  return {
    "epoch": epoch,
    "step_in_epoch": in_epoch,
    "steps_per_epoch": steps_per_epoch,
    "total_steps": total_steps,
    "seed": int(config.seed),
    "mapping_counter": mapping_counter,
    "num_devices": par.num_devices,
    "parallel": par.kind,
    "config": flat,
    "config_hash": config_hash(flat),
    "metrics_bytes": os.path.getsize(metrics_path) if os.path.exists(metrics_path) else 0,
    "bad_run": bad_run,
    "train_seconds": train_seconds,
    "eval": eval_results or {},
    "final": bool(final),
  }


def config_hash(flat: dict[str, Any]) -> str:
  return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:16]


def _is_resume_field(key: str, mode: str, method: str | None = None) -> bool:
  # Only the model sections the mode uses matter (finetune: model; distill: teacher, student),
  # and only the distill fields the method reads (its row's `options`), so that a kd or
  # finetune checkpoint written before a field of another method existed still resumes.
  section, _, field = key.partition(".")
  if section == "distill" and (mode == "finetune" or not methods_lib.reads_option(method, field)):
    return False
  if section in ("model", "teacher", "student"):
    if (mode == "finetune") != (section == "model"):
      return False
    if any(fnmatch.fnmatchcase(key, p) for p in RESUME_HARMLESS):
      return False
  return any(fnmatch.fnmatchcase(key, p) for p in RESUME_FIELDS)


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
  """Keys whose value differs (or exists on one side only)."""
  return sorted(k for k in set(saved) | set(current) if saved.get(k, "<absent>") != current.get(k, "<absent>"))


def check_resume_config(saved: dict[str, Any], current: dict[str, Any], where: str) -> list[str]:
  """Raises ConfigError if a `RESUME_FIELDS` field changed; returns the allowed changes."""
  changed = config_changes(saved, current)
  mode = current.get("mode", saved.get("mode"))
  method = current.get("distill.method", saved.get("distill.method"))
  refused = [k for k in changed if _is_resume_field(k, mode, method)]
  if refused:
    diffs = ", ".join(
      f"{k}={saved.get(k, '<absent>')!r} (checkpoint) vs {current.get(k, '<absent>')!r} (now)" for k in refused[:4]
    )
    more = f" and {len(refused) - 4} more" if len(refused) > 4 else ""
    older = (
      " (<absent>: the checkpoint predates that field, and its loss differs: it cannot continue)"
      if any(k not in saved for k in refused)
      else ""
    )
    raise ConfigError(
      f"{where} was made with a different config that cannot be resumed: {diffs}{more}{older}; "
      "restore those values or use a new --workdir"
    )
  return changed


# ---------------------------------------------------------------------------- metrics.jsonl


def truncate_metrics(workdir: str, size: int) -> None:
  """Cuts metrics.jsonl back to `size` bytes (its length when the checkpoint was written),
  so that a resumed run appends exactly what the interrupted one would have."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    if size:
      logging.warning("%s is missing; it restarts from the resumed step", path)
    return
  current = os.path.getsize(path)
  if current < size:
    logging.warning(
      "%s is shorter (%d bytes) than when the checkpoint was written (%d); kept as is", path, current, size
    )
  elif current > size:
    os.truncate(path, size)
    logging.info("metrics.jsonl: dropped %d bytes written after the checkpoint", current - size)


def set_aside_stale_metrics(workdir: str) -> None:
  """A run that starts from step 0 in a workdir whose metrics.jsonl came from a run that
  left no checkpoint: keep the old file under another name and start a fresh one."""
  path = os.path.join(workdir, "metrics.jsonl")
  if os.path.isfile(path) and os.path.getsize(path) > 0:
    n = 1
    while os.path.exists(f"{path}.{n}.old"):
      n += 1
    os.rename(path, f"{path}.{n}.old")
    logging.warning(
      "%s came from an earlier run that left no checkpoint; kept as %s.%d.old, this run starts "
      "from step 0 in a new one",
      path,
      path,
      n,
    )


# ---------------------------------------------------------------------------- resuming


@dataclasses.dataclass
class Resumed:
  """A run restored from a checkpoint: its state (host arrays) and what the checkpoint recorded."""

  state: TrainState
  meta: dict[str, Any]

  @property
  def bad_run(self) -> int:
    """Consecutive non-finite steps up to the checkpoint."""
    return int(self.meta.get("bad_run", 0))

  @property
  def train_seconds(self) -> float:
    """Training time of the interrupted runs."""
    return float(self.meta.get("train_seconds", 0.0))


def check_meta(config, steps_per_epoch: int, meta: dict, path: str) -> None:
  """Refuses a checkpoint this config cannot continue (ConfigError); warns about harmless changes."""
  where = f"the checkpoint at {path}"
  current = flat_config(config)
  allowed = check_resume_config(meta.get("config", {}), current, where)
  allowed = [k for k in allowed if k not in LAUNCH_FIELDS]
  if meta.get("steps_per_epoch") != steps_per_epoch:
    raise ConfigError(
      f"{where} was made with {meta.get('steps_per_epoch')} batches per epoch but the train data "
      f"now gives {steps_per_epoch}, so the data order cannot be continued; restore the "
      "original train file or use a new --workdir"
    )
  if allowed:
    saved = meta.get("config", {})
    logging.warning(
      "resuming with config changes that do not break resume: %s",
      ", ".join(f"{k}: {saved.get(k, '<absent>')!r} -> {current.get(k, '<absent>')!r}" for k in allowed),
    )


def restore(ckpt, config, workdir: str, params, tx, steps_per_epoch: int, is_main: bool) -> Resumed | None:
  """The newest checkpoint of `ckpt` this config can continue (None when there is none); on the
  main process, metrics.jsonl is cut back to its length at that checkpoint."""
  abstract = jax.eval_shape(lambda p: TrainState.create(p, tx), params)
  check = lambda meta, path: check_meta(config, steps_per_epoch, meta, path)
  restored = ckpt.restore_latest(checkpoint_lib.state_template(abstract), check)
  if restored is None:
    return None
  tree, meta = restored
  state = serialization.from_state_dict(abstract, tree)
  if is_main:
    truncate_metrics(workdir, int(meta.get("metrics_bytes", 0)))
  logging.info(
    "resumed from %s: step %d (epoch %d, batch %d of the epoch), saved on %s device(s) with %s",
    ckpt.path(meta["step"]),
    meta["step"],
    meta.get("epoch", -1),
    meta.get("step_in_epoch", -1),
    meta.get("num_devices", "?"),
    meta.get("parallel", "?"),
  )
  return Resumed(state, meta)
