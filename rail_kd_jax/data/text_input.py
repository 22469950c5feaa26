"""Unlabelled text input: the texts of a file without labels (predict's --input, data.unlabeled_file)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterator, Sequence

import numpy as np
from absl import logging

from rail_kd_jax.data import labels, readers


def read_texts(
  path: str, text_columns: Sequence[str], *, what: str, keep_empty: bool, column_options: str = "data.text_column"
) -> dict[str, Any]:
  """The texts of a file without labels (text to predict, or unlabelled text for distillation).

  `.txt`: one text per line, no header (single-text tasks only); `.csv`, `.tsv`, `.jsonl`: the
  `text_columns` by name, other columns ignored (a label column included). Rows whose texts are
  empty are kept as '' when `keep_empty` (every input row gets an output), else skipped with a
  counted warning. `what` names the file's role in messages ('data.unlabeled_file'),
  `column_options` the option(s) that name the text columns.

  Returns:
    {column: [str] for each of `text_columns`, 'idx': int64 [N] the row's line (or row number)}.
  """
  text_columns = list(text_columns)
  plain = os.path.splitext(path)[1].lower() == ".txt"
  counts = TextCounts()
  lines, rows = [], []
  for line, texts in iter_texts(
    path, text_columns, what=what, column_options=column_options, counts=counts, warn_spans=True
  ):
    if keep_empty or all(texts):  # a text is '' exactly when its cell is empty
      lines.append(line)
      rows.append(texts)
  # Blank lines separate nothing in a list of texts: skipped silently from a .txt.
  _warn(path, text_columns, what, counts, keep_empty, empty=keep_empty or not plain)
  if not rows:
    raise ValueError(f"{what}={path!r} holds no texts.")
  cols: dict[str, Any] = {c: [t[k] for t in rows] for k, c in enumerate(text_columns)}
  cols["idx"] = np.asarray(lines, np.int64)
  return cols


@dataclasses.dataclass
class TextCounts:
  """What a pass of `iter_texts` has read so far (`scan_texts` logs read_texts's warnings from it)."""

  rows: int = 0  # rows yielded
  empty: int = 0  # of them, rows with an empty text (yielded as '')
  first_empty: int = 0  # the line of the first such row
  malformed: int = 0  # .csv/.tsv lines whose field count is not the header's (fewer: skipped, more: cut)
  first_malformed: int = 0


def iter_texts(
  path: str,
  text_columns: Sequence[str],
  *,
  what: str,
  column_options: str = "data.text_column",
  counts: TextCounts | None = None,
  warn_spans: bool = False,
) -> Iterator[tuple[int, tuple[str, ...]]]:
  """The rows of `read_texts(..., keep_empty=True)` one at a time, holding none of them.

  Yields (the row's line, its texts: one str per `text_columns`) for exactly the rows, lines and
  texts read_texts returns, and raises its ValueErrors with the same sentences: a header's (a
  missing column, an empty file) before the first row, a row's when that row is read, and at the
  end a .jsonl's missing column (its columns are the keys of all its rows) and 'holds no texts'.
  `counts`, when given, is updated as rows are read. `warn_spans` (read_texts, which holds every
  row anyway) adds `readers.check_spans`'s warning on a .csv, which keeps every row's fields until
  the end.
  """
  if not os.path.isfile(path):
    raise ValueError(f"{what}={path!r} does not exist.")
  counts = TextCounts() if counts is None else counts
  ext = os.path.splitext(path)[1].lower()
  if ext == ".txt":
    rows = _txt_rows(path, list(text_columns), what)
  elif ext in (".jsonl", ".json"):
    rows = _jsonl_rows(path, list(text_columns), what, column_options)
  else:
    rows = _table_rows(path, list(text_columns), what, column_options, counts, warn_spans)
  for line, values in rows:
    if any(labels.is_blank(v) for v in values):
      counts.empty += 1
      counts.first_empty = counts.first_empty or line
    counts.rows += 1
    yield line, tuple("" if labels.is_blank(v) else v if isinstance(v, str) else str(v) for v in values)
  if not counts.rows:
    raise ValueError(f"{what}={path!r} holds no texts.")


def scan_texts(path: str, text_columns: Sequence[str], *, what: str, column_options: str = "data.text_column") -> int:
  """The number of rows `iter_texts` yields, from one pass that keeps none: raises every error of
  the file (as read_texts would) and logs read_texts's warnings (malformed lines, empty texts)."""
  counts = TextCounts()
  for _ in iter_texts(path, text_columns, what=what, column_options=column_options, counts=counts):
    pass
  _warn(path, text_columns, what, counts, keep_empty=True)
  return counts.rows


def _warn(
  path: str, text_columns: Sequence[str], what: str, counts: TextCounts, keep_empty: bool, empty: bool = True
) -> None:
  """read_texts's warnings from what a pass read: malformed lines, and (when `empty`) the rows
  with an empty text, kept as '' (`keep_empty`) or skipped."""
  if counts.malformed:
    logging.warning(
      "%s: %d malformed lines (first at line %d) skipped or truncated.", path, counts.malformed, counts.first_malformed
    )
  if empty and counts.empty:
    logging.warning(
      "%s=%r: %d row(s) with an empty %s %s (first at line %d).",
      what,
      path,
      counts.empty,
      " or ".join(repr(c) for c in text_columns),
      "kept as '' so that every row gets an output" if keep_empty else "skipped",
      counts.first_empty,
    )


def _check_text_columns(header: Sequence[str], text_columns: Sequence[str], what: str, path: str, options: str) -> None:
  """read_texts's error for a text column the file's header lacks."""
  missing = [c for c in text_columns if c not in header]
  if missing:
    raise ValueError(
      f"{what}={path!r} has no text column {missing[0]!r}; its columns are {list(header)} "
      f"(name the text column with {options})."
    )


def _txt_rows(path: str, text_columns: list[str], what: str) -> Iterator[tuple[int, tuple[str]]]:
  """(line, (text,)) for every line of a .txt file, blank ones included."""
  if len(text_columns) != 1:
    raise ValueError(
      f"{what}={path!r} is plain text (one text per line) but the task reads text pairs "
      f"{text_columns}; give a .csv, .tsv or .jsonl file with those columns."
    )
  with open(path, encoding="utf-8-sig") as f:
    try:
      for i, line in enumerate(f, 1):
        yield i, (line.rstrip("\r\n"),)
    except UnicodeDecodeError:
      raise readers.not_utf8(path) from None


def _jsonl_rows(path: str, text_columns: list[str], what: str, options: str) -> Iterator[tuple[int, tuple]]:
  """(line, the text columns' values, None where a key is absent) for every object of a .jsonl file,
  as `readers.read_table` reads them; a text column no object has is an error at the end."""
  header: dict[str, None] = {}
  for i, row in readers.jsonl_objects(path):
    header.update(dict.fromkeys(row))
    yield i, tuple(row.get(c) for c in text_columns)
  _check_text_columns(list(header), text_columns, what, path, options)


def _table_rows(
  path: str, text_columns: list[str], what: str, options: str, counts: TextCounts, warn_spans: bool = False
) -> Iterator[tuple[int, tuple[str, ...]]]:
  """(line, the text fields) for every row of a .csv/.tsv file, read by `readers.records` with
  `readers.read_table`'s rules (header, duplicate names, blank rows, field counts: strict_rows=False,
  a multi-line record of the wrong width: `readers.check_spans`'s error; its warning, which needs
  every row's last field, only with `warn_spans`, after the last row)."""
  spans: dict[int, list[str]] = {}
  ext = os.path.splitext(path)[1].lower()
  if ext not in (".tsv", ".csv"):
    raise ValueError(f"Data file {path!r} has an unsupported extension {ext!r}; use .csv, .tsv or .jsonl.")
  with open(path, encoding="utf-8-sig", newline="") as f:
    try:
      records = readers.records(f, path, ext, spans)
      first = next(records, None)
      if first is None:
        raise ValueError(f"Data file {path!r} is empty (no header line).")
      header = [h.strip() for h in first[1]]
      dups = sorted({h for h in header if h and header.count(h) > 1})
      if dups:
        raise ValueError(
          f"Data file {path!r} names the column(s) {dups} more than once in its header {header}; rename them."
        )
      _check_text_columns(header, text_columns, what, path, options)
      pick = [header.index(c) for c in text_columns]
      spans.clear()
      spanned: dict[int, list[str]] = {}  # with warn_spans: the records over several lines,
      fields_at: dict[int, list[str]] = {}  # and every record's fields
      for line, fields in records:
        raw = spans.pop(line, None)
        if raw is not None:
          readers.check_spans(path, {line: raw}, {line: fields}, len(header))
        if warn_spans:
          fields_at[line] = fields
          if raw is not None:
            spanned[line] = raw
        if all(not x.strip() for x in fields):
          continue  # blank line, or a row of empty cells
        if len(fields) != len(header):
          counts.malformed += 1
          counts.first_malformed = counts.first_malformed or line
          if len(fields) < len(header):
            continue
        yield line, tuple(fields[k] for k in pick)
      if spanned:
        readers.check_spans(path, spanned, fields_at, len(header))
    except UnicodeDecodeError:
      raise readers.not_utf8(path) from None
