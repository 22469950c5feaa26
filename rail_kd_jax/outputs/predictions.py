"""The predictions file of `python -m rail_kd_jax.predict`: its columns, its rows, where it goes, how it is written.

`output_rows` turns a chunk's logits into one row per text (`label` and `prob_<class>`, or
`score`), `prediction_rows` chains the chunks' rows with progress lines (texts/s, ETA), and
`write_rows` writes them, CSV or JSON lines, atomically to the path `output_target` chose.
"""

from __future__ import annotations

import csv
import json
import os
import time
from typing import Any

import numpy as np
from absl import logging

from rail_kd_jax.core import files
from rail_kd_jax.core.errors import ConfigError, StorageError
from rail_kd_jax.outputs import writers

FORMATS = ("csv", "jsonl")
_DIGITS = 6  # significant digits of the written probabilities and scores


def _log_progress(done: int, total: int, seconds: float) -> None:
  rate = done / max(seconds, 1e-9)
  eta = (total - done) / rate if rate > 0 else 0.0
  logging.info(
    "predicted %d/%d texts (%.1f%%, %.0f texts/s, %s elapsed, ETA %s)",
    done,
    total,
    100.0 * done / max(total, 1),
    rate,
    writers.clock(seconds),
    writers.clock(max(eta, 0.0)),
  )


def _softmax(logits: np.ndarray) -> np.ndarray:
  z = logits.astype(np.float64) - logits.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def output_columns(class_names: tuple[str, ...], text_columns: list[str]) -> list[str]:
  """`line`, the text columns, then `label` and `prob_<class>` per class of `class_names` (a
  classifier's `class_names`), or `score` when there are none (a regression model)."""
  outputs = ["label"] + [f"prob_{c}" for c in class_names] if class_names else ["score"]
  clash = [c for c in text_columns if c in ("line", *outputs)]
  if clash:
    raise ConfigError(
      f"the input's text column {clash[0]!r} has the name of an output column ({', '.join(['line', *outputs])}); "
      "rename it in the input file"
    )
  return ["line", *text_columns, *outputs]


def output_rows(class_names: tuple[str, ...], texts: dict[str, Any], text_columns: list[str], logits: np.ndarray):
  """Yields one dict per input row: {'line': int, text column: str, 'label': str, 'prob_<c>': float}
  (or 'score': float when `class_names` is (): a regression model), from logits [N, C]."""
  round_ = lambda x: float(f"{x:.{_DIGITS}g}")
  if class_names:
    probs = _softmax(logits)
    pred = logits.argmax(-1)  # as `task_metrics.to_predictions`
  for i, line in enumerate(texts["idx"]):
    row = {"line": int(line), **{c: texts[c][i] for c in text_columns}}
    if class_names:
      row["label"] = class_names[int(pred[i])]
      row.update({f"prob_{c}": round_(p) for c, p in zip(class_names, probs[i])})
    else:
      row["score"] = round_(logits[i, 0])
    yield row


def output_target(input_path: str, output: str, fmt: str) -> tuple[str, str]:
  """(the output path, 'csv' | 'jsonl') from --output and --format (`rail_kd_jax.predict`'s flags)."""
  if fmt not in ("",) + FORMATS:
    raise ConfigError(f"--format={fmt!r} is not valid; choose one of: '', {', '.join(FORMATS)}")
  if not output:
    fmt = fmt or "csv"
    return f"{os.path.splitext(input_path)[0]}.predictions.{fmt}", fmt
  ext = os.path.splitext(output)[1].lower().lstrip(".")
  if fmt and ext in FORMATS and ext != fmt:
    raise ConfigError(f"--format={fmt} contradicts --output={output!r}; drop --format or name the file .{fmt}")
  if not fmt and ext not in FORMATS:
    raise ConfigError(
      f"--output={output!r} ends in neither .csv nor .jsonl; name it so, or give --format=csv or --format=jsonl"
    )
  path = os.path.abspath(os.path.expanduser(output))
  if os.path.exists(input_path) and os.path.exists(path) and os.path.samefile(path, input_path):
    raise ConfigError(f"--output={output!r} is the --input file; give another --output")
  return path, fmt or ext


def write_rows(path: str, fmt: str, columns: list[str], rows) -> None:
  """Writes `rows` (dicts over `columns`) as CSV with a header, or JSON lines, to a temporary
  sibling renamed to `path` when complete (mode 0666 & ~umask); StorageError when it fails."""
  folder = os.path.dirname(path)
  tmp = None
  try:
    os.makedirs(folder, exist_ok=True)
    fd, tmp = files.mkstemp(dir=folder, prefix=f".tmp-{os.path.basename(path)}-")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
      if fmt == "csv":
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
      else:
        for row in rows:
          f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
  except OSError as e:
    raise StorageError(
      f"--output={path!r} could not be written ({files.os_error_text(e)}); nothing partial was kept, "
      "so free space there or choose another --output"
    ) from e
  finally:
    if tmp is not None and os.path.exists(tmp):
      os.remove(tmp)


def prediction_rows(class_names: tuple[str, ...], predicted, text_columns: list[str], total: int, every: int):
  """The output rows of `inference.predicted_chunks`, in input order, logging progress (texts/s and an ETA
  from the `total` rows counted by the first pass) after a chunk that completes `every`
  texts (0: only after the last)."""
  t0, done = time.perf_counter(), 0
  for cols, logits in predicted:
    yield from output_rows(class_names, cols, text_columns, logits)
    before, done = done, done + len(logits)
    if done >= total or (every > 0 and done // every > before // every):
      _log_progress(done, total, time.perf_counter() - t0)
