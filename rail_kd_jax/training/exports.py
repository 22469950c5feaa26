"""Exporting the trained model: a Hugging Face folder with its tokenizer and model card, written
whole or not at all."""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import shutil
from typing import Any

from rail_kd_jax import models
from rail_kd_jax.core import files
from rail_kd_jax.core.errors import StorageError
from rail_kd_jax.outputs import model_card
from rail_kd_jax.training.builders import Run


def storage_cause(e: Exception) -> str | None:
  """'No space left on device (ENOSPC)' for a failed write: an OSError, or safetensors'
  SafetensorError wrapping one ('... I/O error: ... (os error 28) ...'); None for other errors."""
  if isinstance(e, OSError):
    cause = files.os_error_text(e)
    return f"{cause} writing {os.path.basename(e.filename)}" if e.filename else cause
  m = re.search(r"\(os error (\d+)\)", str(e)) if type(e).__name__ == "SafetensorError" else None
  if m is None:
    return None
  code = int(m.group(1))
  return f"{os.strerror(code)} ({errno.errorcode.get(code, code)}) writing model.safetensors"


def _move_into_place(tmp: str, out_dir: str) -> None:
  """Renames the finished folder `tmp` to `out_dir`; a previous export there is renamed away
  first and deleted only once the new one is in place (put back if that rename fails)."""
  if not os.path.lexists(out_dir):
    os.rename(tmp, out_dir)
    return
  old = files.mkdtemp(dir=os.path.dirname(out_dir), prefix=f".old-{os.path.basename(out_dir)}-")
  os.rename(out_dir, old)  # onto the empty folder just made: atomic on POSIX
  try:
    os.rename(tmp, out_dir)
  except OSError:
    os.rename(old, out_dir)
    raise
  shutil.rmtree(old, ignore_errors=True)


def export(run: Run, student_params: Any, out_dir: str, card: str | None = None) -> None:
  """save_pretrained of the trained model (distillation heads dropped) + its tokenizer + its
  model card README.md (`card`, else `model_card.card` without metrics).

  Written into a temporary sibling folder and renamed to `out_dir` when complete: a write
  that fails (disk full, I/O error) removes the partial folder, leaves a previous export
  at `out_dir` as it was, and raises StorageError."""
  if card is None:
    card = model_card.card(run, {})
  model = run.student
  if run.task_spec.label_names:
    names = tuple(run.task_spec.label_names)
    model = model.clone(
      config=dataclasses.replace(
        model.config, id2label={i: n for i, n in enumerate(names)}, label2id={n: i for i, n in enumerate(names)}
      )
    )
  out_dir = os.path.abspath(os.path.expanduser(out_dir))
  try:
    with files.staging_folder(out_dir, prefix=f".tmp-{os.path.basename(out_dir)}-") as tmp:
      models.save_pretrained(model, student_params, tmp, tokenizer=run.tokenizer)
      with open(os.path.join(tmp, model_card.FILE_NAME), "w", encoding="utf-8") as f:
        f.write(card)
      _move_into_place(tmp, out_dir)
  except Exception as e:  # pylint: disable=broad-except
    cause = storage_cause(e)
    if cause is None:
      raise
    raise StorageError(
      f"the export to '{out_dir}' could not be written ({cause}); the partial folder was removed and "
      "a previous export there, if any, is unchanged, so free space there and rerun"
    ) from e
