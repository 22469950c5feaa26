"""Labels and columns from rows: label cells parsed and checked, and a split's column dict."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from absl import logging

from rail_kd_jax.data.spec import TaskSpec


def _as_int(v: Any) -> int | None:
  """The integer a cell holds (1, '1', 1.0 and '1.0' alike), else None."""
  if isinstance(v, (bool, np.bool_)):
    return None
  if isinstance(v, (int, np.integer)):
    return int(v)
  if isinstance(v, str):
    try:
      return int(v.strip())
    except ValueError:
      pass
    try:
      v = float(v)
    except ValueError:
      return None
  if isinstance(v, (float, np.floating)) and np.isfinite(v) and float(v).is_integer():
    return int(v)
  return None


def _is_float(v: Any) -> bool:
  if isinstance(v, (bool, np.bool_)) or v is None:
    return False
  try:
    return np.isfinite(float(v))
  except (TypeError, ValueError):
    return False


def is_blank(v: Any) -> bool:
  """An empty cell: None (JSON null), NaN, or a string of whitespace."""
  if v is None:
    return True
  if isinstance(v, (float, np.floating)):
    return bool(np.isnan(v))
  return isinstance(v, str) and not v.strip()


def _is_missing_label(v: Any) -> bool:
  """An empty label cell; pandas writes a missing value as '' or 'nan'."""
  return is_blank(v) or (isinstance(v, str) and v.strip().lower() == "nan")


def _at(lines: Sequence[int] | None, i: int) -> str:
  """Where row i of a file is: its line when known, else its row number."""
  return f"line {lines[i]}" if lines else f"row {i + 1}"


def check_labels_present(
  values: Sequence[Any], lines: Sequence[int] | None, path: str, column: str, test: bool = False
) -> None:
  """Raises on empty label cells: skipping those rows would silently change the data."""
  missing = [i for i, v in enumerate(values) if _is_missing_label(v)]
  if missing:
    fix = (
      "a test file is scored when every row has a label and only predicted when none has, so fill them in "
      "or empty the whole column"
      if test
      else "fill them in or drop those rows (only a test file may be unlabelled)"
    )
    raise ValueError(
      f"Data file {path!r} column {column!r} has {len(missing)} empty label(s) (first at {_at(lines, missing[0])}); "
      f"{fix}."
    )


def has_labels(header: Sequence[str], rows: Sequence[Mapping[str, Any]], column: str, hf: bool = False) -> bool:
  """Whether a test file carries labels: the column exists and some row fills it (Hugging Face's
  GLUE test splits hold -1 in every row, i.e. none)."""
  if column not in header:
    return False
  missing = lambda v: _is_missing_label(v) or (hf and _as_int(v) == -1)
  return not all(missing(r.get(column)) for r in rows)


def _parse_labels(values: Sequence[Any], spec: TaskSpec, where: str, lines: Sequence[int] | None = None) -> np.ndarray:
  """Label values (names or ids, or scores) -> int32 class ids / float32 scores."""
  if spec.is_regression:
    out = np.empty(len(values), np.float32)
    for i, v in enumerate(values):
      if not _is_float(v):
        raise ValueError(
          f"{where}: label {v!r} ({_at(lines, i)}) is not a number, but the task is a regression (num_labels=1)."
        )
      out[i] = float(v)
    return out
  names = {n: i for i, n in enumerate(spec.label_names or ())}
  k = spec.num_labels
  out = np.empty(len(values), np.int32)
  for i, v in enumerate(values):
    key = v.strip() if isinstance(v, str) else v
    class_id = _as_int(key)
    if isinstance(key, str) and key in names:
      out[i] = names[key]
    elif class_id is not None and 0 <= class_id < k:
      out[i] = class_id
    else:
      valid = f"one of {list(spec.label_names)} or " if spec.label_names else ""
      raise ValueError(
        f"{where}: label {v!r} ({_at(lines, i)}) is outside the configured classes; "
        f"valid labels are {valid}an integer id in 0..{k - 1}."
      )
  return out


def columns_from_rows(
  header: Sequence[str],
  rows: Sequence[Mapping[str, Any]],
  lines: Sequence[int] | None,
  spec: TaskSpec,
  path: str,
  labelled: bool,
  split: str,
  index_columns: Sequence[str] = ("idx", "index", "id"),
) -> dict[str, Any]:
  """Rows of one file (and each row's line, or None) -> the split's column dict, with every check a user needs.

  An empty label is an error. A row with an empty text is skipped in a labelled split and kept as ''
  in a test split (every test row gets a prediction); either way a warning counts them.
  """
  needed = list(spec.text_columns) + ([spec.label_column] if labelled else [])
  missing = [c for c in needed if c not in header]
  if missing:
    raise ValueError(
      f"Data file {path!r} (split {split!r}) has no column {missing[0]!r}; its columns are {list(header)}."
    )
  if not rows:
    raise ValueError(f"Split {split!r} from {path!r} is empty (no data rows).")
  if labelled:
    check_labels_present(
      [r.get(spec.label_column) for r in rows], lines, path, spec.label_column, test=split in spec.test_splits
    )
  blank = [i for i, r in enumerate(rows) if any(is_blank(r.get(c)) for c in spec.text_columns)]
  if blank:
    columns = " or ".join(repr(c) for c in spec.text_columns)
    logging.warning(
      "Data file %r (split %r): %d row(s) with an empty %s %s (first at %s).",
      path,
      split,
      len(blank),
      columns,
      "skipped" if labelled else "kept as '' so that every test row gets a prediction",
      _at(lines, blank[0]),
    )
    if labelled:
      if len(blank) == len(rows):
        raise ValueError(f"Split {split!r} from {path!r} has no rows left: all {len(rows)} have an empty {columns}.")
      keep = sorted(set(range(len(rows))) - set(blank))
      rows = [rows[i] for i in keep]
      lines = [lines[i] for i in keep] if lines else None
  cols: dict[str, Any] = {}
  for c in spec.text_columns:
    cols[c] = ["" if is_blank(v) else v if isinstance(v, str) else str(v) for v in (r.get(c) for r in rows)]
  if labelled:
    cols[spec.label_column] = _parse_labels(
      [r.get(spec.label_column) for r in rows], spec, f"Data file {path!r} column {spec.label_column!r}", lines
    )
  idx = None
  for c in index_columns:
    if c in header and all(_as_int(r.get(c)) is not None for r in rows):
      idx = np.asarray([_as_int(r[c]) for r in rows], np.int64)
      break
  cols["idx"] = idx if idx is not None else np.arange(len(rows), dtype=np.int64)
  return cols


def infer_labels(values: Sequence[Any], lines: Sequence[int] | None, path: str, column: str):
  """num_labels and label_names from the train labels, when the config gives neither.

  Integer ids ('1' and '1.0' alike) give num_labels = max + 1 and no names; anything else gives the
  sorted set of names. A column mixing ids with names or other numbers is an error.
  """
  ids = [_as_int(v) for v in values]
  if all(i is not None for i in ids):
    k = max(ids) + 1
    if min(ids) < 0:
      raise ValueError(f"Data file {path!r} column {column!r} has negative labels; class ids must be 0..num_labels-1.")
    names = None
  else:
    numbers = [i for i, v in enumerate(values) if _is_float(v)]
    bad = ids.index(None)
    if _is_float(values[bad]):
      raise ValueError(
        f"Data file {path!r} column {column!r} holds the non-integer number {values[bad]!r} ({_at(lines, bad)}); "
        "class labels must be integers (1.0 counts as 1), or set data.num_labels=1 for a regression task."
      )
    if numbers:
      raise ValueError(
        f"Data file {path!r} column {column!r} mixes class ids ({values[numbers[0]]!r}, {_at(lines, numbers[0])}) "
        f"and names ({values[bad]!r}, {_at(lines, bad)}); use one or the other, or set data.label_names."
      )
    names = tuple(sorted({str(v).strip() for v in values}))
    k = len(names)
    logging.info("Label names inferred from %s (sorted): %s", path, names)
  if k < 2:
    raise ValueError(
      f"Data file {path!r} column {column!r} has only one class; set data.num_labels or data.label_names."
    )
  return k, names
