"""Task definitions: the GLUE registry, local CSV/TSV/JSONL tasks, and `load_task`.

A loaded task is a `Task(spec, splits, sources)`. Every split is a dict of columns:
the text column(s) named by `spec.text_columns` (lists of str), the label column
`spec.label_column` (numpy int32 class ids, or float32 scores when
`spec.is_regression`; absent for unlabelled test splits) and `idx` (int64, the
file's index/id column where it has one, else the row number).

GLUE tasks keep the column names of GLUE's original TSV files (MNLI: sentence1,
sentence2, gold_label; QQP: question1, question2, is_duplicate; ...), so extra
out-of-domain files in the same layout (HANS for MNLI, ...) load unchanged.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import dataclasses
import json
import os
import sys
from typing import Any, Iterator, Mapping, Sequence

import ml_collections
import numpy as np
from absl import logging

# GLUE TSVs hold single fields far over csv's default 128 KiB limit only rarely,
# but MNLI parses do come close.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

LOCAL = "local"
TRAIN = "train"


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """What a task is: its input columns, its labels and how it is scored.

  Attributes:
    name: GLUE task name ('sst2', 'mnli', ...) or 'local'.
    text_columns: one or two column names (a sentence, or a sentence pair).
    label_column: the column holding labels in the files.
    num_labels: number of classes; 1 means regression.
    label_names: class names in class-id order, or None (regression / unnamed).
    is_regression: True when num_labels == 1.
    main_metric: the metric used to pick the best checkpoint.
    metric_names: the metrics `task_metrics.compute_metrics` returns.
    eval_splits: labelled evaluation splits (the first is the main one).
    test_splits: splits whose predictions are written (GLUE submission files); a test file that
      carries labels is scored too (`Task.splits[split]` then holds its label column).
  """

  name: str
  text_columns: tuple[str, ...]
  label_column: str
  num_labels: int
  label_names: tuple[str, ...] | None
  is_regression: bool
  main_metric: str
  metric_names: tuple[str, ...]
  eval_splits: tuple[str, ...]
  test_splits: tuple[str, ...]


@dataclasses.dataclass
class Task:
  """A loaded task: `splits[name][column]` -> list[str] | np.ndarray; `sources[name]` -> file.

  `unlabeled` holds the texts of `data.unlabeled_file` (the text columns and 'idx', no label
  column; `read_texts`), already cut to `data.unlabeled_ratio`, or None without that file.
  """

  spec: TaskSpec
  splits: dict[str, dict[str, Any]]
  sources: dict[str, str] = dataclasses.field(default_factory=dict)
  unlabeled: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class _GlueLayout:
  """Where a GLUE task's data lives: its TSV files, their columns, and the HF dataset."""

  folder: str  # GLUE's folder name, e.g. 'SST-2'.
  files: Mapping[str, str]  # split -> file name inside the folder.
  no_header_columns: tuple[str, ...] | None = None  # train/dev files without a header (CoLA).
  optional_files: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
  hf_columns: Mapping[str, str] = dataclasses.field(default_factory=dict)  # HF name -> TSV name.


def _spec(
  name,
  text_columns,
  label_column,
  label_names,
  main_metric,
  metric_names,
  eval_splits=("validation",),
  test_splits=("test",),
):
  num_labels = 1 if label_names is None else len(label_names)
  return TaskSpec(
    name=name,
    text_columns=tuple(text_columns),
    label_column=label_column,
    num_labels=num_labels,
    label_names=label_names,
    is_regression=label_names is None,
    main_metric=main_metric,
    metric_names=tuple(metric_names),
    eval_splits=tuple(eval_splits),
    test_splits=tuple(test_splits),
  )


_STD = {TRAIN: "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}

# Class-id order follows the Hugging Face `glue` datasets, so teachers fine-tuned on
# them keep their label ids. The TSV files hold either these names or these ids.
GLUE_TASKS: dict[str, TaskSpec] = {
  "cola": _spec(
    "cola", ["sentence"], "label", ("unacceptable", "acceptable"), "matthews_corr", ["matthews_corr", "accuracy"]
  ),
  "sst2": _spec("sst2", ["sentence"], "label", ("negative", "positive"), "accuracy", ["accuracy"]),
  "mrpc": _spec(
    "mrpc",
    ["#1 String", "#2 String"],
    "Quality",
    ("not_equivalent", "equivalent"),
    "f1",
    ["f1", "accuracy", "combined_score"],
  ),
  "qqp": _spec(
    "qqp",
    ["question1", "question2"],
    "is_duplicate",
    ("not_duplicate", "duplicate"),
    "accuracy",
    ["accuracy", "f1", "combined_score"],
  ),
  "stsb": _spec(
    "stsb", ["sentence1", "sentence2"], "score", None, "pearson", ["pearson", "spearmanr", "combined_score"]
  ),
  "mnli": _spec(
    "mnli",
    ["sentence1", "sentence2"],
    "gold_label",
    ("entailment", "neutral", "contradiction"),
    "accuracy",
    ["accuracy"],
    eval_splits=("validation_matched", "validation_mismatched"),
    test_splits=("test_matched", "test_mismatched", "ax"),
  ),
  "qnli": _spec("qnli", ["question", "sentence"], "label", ("entailment", "not_entailment"), "accuracy", ["accuracy"]),
  "rte": _spec("rte", ["sentence1", "sentence2"], "label", ("entailment", "not_entailment"), "accuracy", ["accuracy"]),
  "wnli": _spec(
    "wnli", ["sentence1", "sentence2"], "label", ("not_entailment", "entailment"), "accuracy", ["accuracy"]
  ),
}

_GLUE_LAYOUTS: dict[str, _GlueLayout] = {
  "cola": _GlueLayout("CoLA", _STD, no_header_columns=("source", "label", "orig_label", "sentence")),
  "sst2": _GlueLayout("SST-2", _STD),
  "mrpc": _GlueLayout(
    "MRPC", _STD, hf_columns={"sentence1": "#1 String", "sentence2": "#2 String", "label": "Quality"}
  ),
  "qqp": _GlueLayout("QQP", _STD, hf_columns={"label": "is_duplicate"}),
  "stsb": _GlueLayout("STS-B", _STD, hf_columns={"label": "score"}),
  "mnli": _GlueLayout(
    "MNLI",
    {
      TRAIN: "train.tsv",
      "validation_matched": "dev_matched.tsv",
      "validation_mismatched": "dev_mismatched.tsv",
      "test_matched": "test_matched.tsv",
      "test_mismatched": "test_mismatched.tsv",
      "ax": "diagnostic.tsv",
    },
    # The diagnostic set (AX) ships in GLUE's separate 'diagnostic' folder.
    optional_files={"ax": ("diagnostic.tsv", "AX.tsv", "../diagnostic/diagnostic.tsv")},
    hf_columns={"premise": "sentence1", "hypothesis": "sentence2", "label": "gold_label"},
  ),
  "qnli": _GlueLayout("QNLI", _STD),
  "rte": _GlueLayout("RTE", _STD),
  "wnli": _GlueLayout("WNLI", _STD),
}


# ----------------------------------------------------------------------------- reading


class _Lines:
  """A text file's lines for csv.reader, counting them and keeping the current record's lines."""

  def __init__(self, f):
    self._f = iter(f)
    self.count = 0
    self.record: list[str] = []
    self.at_end = False

  def __iter__(self):
    return self

  def __next__(self) -> str:
    try:
      line = next(self._f)
    except StopIteration:
      self.at_end = True
      raise
    self.count += 1
    self.record.append(line)
    return line


def _records(f, path: str, ext: str, spans: dict[int, list[str]] | None = None) -> Iterator[tuple[int, list[str]]]:
  """(line the record starts on, its fields) for each record of an open .csv/.tsv/.txt file.

  With `spans`, each .csv record that runs over several lines (a quoted field holding line
  breaks) is recorded there as {start line: its physical lines}, for `_check_spans`.
  """
  if ext != ".csv":
    # GLUE TSVs contain bare quote characters inside sentences: no quoting, one line per record.
    reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
    try:
      for fields in reader:
        yield reader.line_num, fields
    except csv.Error as e:
      raise ValueError(f"Data file {path!r} line {reader.line_num} cannot be read ({e}).") from None
    return
  lines = _Lines(f)
  reader = csv.reader(lines, strict=True)
  while True:
    start = lines.count + 1
    lines.record = []
    try:
      fields = next(reader)
    except StopIteration:
      return
    except csv.Error:
      if lines.at_end:
        raise ValueError(
          f"Data file {path!r}: the record starting at line {start} opens a quote that is never closed, so the "
          f"rest of the file ({lines.count - start + 1} lines) would be one field; close the quote, or double "
          'it ("") inside a quoted text.'
        ) from None
      end = start + len(lines.record) - 1
      if end > start:
        # A quote opened on one line and closed on a later one, then more text: csv's non-strict
        # mode would read the lines between as one record, merging rows without a word.
        raise ValueError(
          f"Data file {path!r}: the record starting at line {start} opens a quote that closes on line {end} and is "
          f"followed by more text there, so lines {start}-{end} would be read as one row; close the quote on "
          f'line {start}, or double it ("") inside a quoted text.'
        ) from None
      try:
        # A quoted field followed by more text ('"Hi" she said'): read as csv's non-strict mode does.
        fields = next(csv.reader(lines.record))
      except csv.Error as e:
        raise ValueError(f"Data file {path!r} line {start} cannot be read ({e}).") from None
    if spans is not None and len(lines.record) > 1:
      spans[start] = list(lines.record)
    yield start, fields


def _not_utf8(path: str) -> ValueError:
  """The error for a file that does not decode as UTF-8: where its first bad byte is."""
  with open(path, "rb") as f:
    data = f.read()
  name, ext = os.path.splitext(os.path.basename(path))
  hint = f"convert it to UTF-8, e.g. iconv -f latin1 -t utf-8 {name}{ext} > {name}.utf8{ext}"
  skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
  try:
    data[skip:].decode("utf-8")
  except UnicodeDecodeError as e:
    offset = skip + e.start
    line = data.count(b"\n", 0, offset) + 1
    return ValueError(
      f"Data file {path!r} is not UTF-8: byte 0x{data[offset]:02x} at line {line} (byte offset {offset}) "
      f"is invalid; {hint}."
    )
  return ValueError(f"Data file {path!r} is not UTF-8; {hint}.")


def _read_table(
  path: str, *, no_header_columns: Sequence[str] | None = None, strict_rows: bool = True
) -> tuple[list[str], list[dict[str, Any]], list[int]]:
  """Reads a .tsv (GLUE style, no quoting), .csv or .jsonl file: (header, rows of dicts, line of each row)."""
  if not os.path.isfile(path):
    raise ValueError(f"Data file {path!r} does not exist.")
  ext = os.path.splitext(path)[1].lower()
  if ext in (".jsonl", ".json"):
    return _read_jsonl(path)
  if ext not in (".tsv", ".csv", ".txt"):
    raise ValueError(f"Data file {path!r} has an unsupported extension {ext!r}; use .csv, .tsv or .jsonl.")
  spans: dict[int, list[str]] = {}
  with open(path, encoding="utf-8-sig", newline="") as f:
    try:
      records = list(_records(f, path, ext, spans))
    except UnicodeDecodeError:
      raise _not_utf8(path) from None
  if no_header_columns is not None:
    header, body = list(no_header_columns), records
  else:
    if not records:
      raise ValueError(f"Data file {path!r} is empty (no header line).")
    header, body = [h.strip() for h in records[0][1]], records[1:]
    dups = sorted({h for h in header if h and header.count(h) > 1})
    if dups:
      raise ValueError(
        f"Data file {path!r} names the column(s) {dups} more than once in its header {header}; rename them."
      )
  if spans:
    _check_spans(path, spans, dict(body), len(header))
  rows, lines, bad = [], [], []
  for line, fields in body:
    if all(not f.strip() for f in fields):
      continue  # blank line, or a row of empty cells
    if len(fields) != len(header):
      bad.append(line)
      if len(fields) < len(header):
        continue
    rows.append(dict(zip(header, fields)))
    lines.append(line)
  if bad:
    # QQP's train.tsv has a handful of broken lines; more than that is a wrong format.
    if strict_rows and len(bad) > max(2, len(body) // 1000):
      raise ValueError(
        f"Data file {path!r} has {len(bad)} lines whose field count differs from "
        f"its {len(header)} columns {header} (first at line {bad[0]}); "
        "is it the right file and delimiter?"
      )
    logging.warning("%s: %d malformed lines (first at line %d) skipped or truncated.", path, len(bad), bad[0])
  return header, rows, lines


def _check_spans(path: str, spans: Mapping[int, list[str]], fields: Mapping[int, list[str]], width: int) -> None:
  """Refuses a record that spans lines with the wrong number of fields, and warns once when a
  spanning record's inner line reads as a whole row on its own (the header's number of fields,
  quotes taken literally, ending in a value the last column holds in another row): a quote left
  open may have merged rows there. A quoted text with line breaks is otherwise valid CSV and is
  read as it is."""
  last = {f[-1].strip() for s, f in fields.items() if s not in spans and len(f) == width and width > 1}

  def whole_row(text: str) -> bool:
    f = next(csv.reader([text.rstrip("\r\n")], quoting=csv.QUOTE_NONE), [])
    return len(f) == width and f[-1].strip() in last

  suspect = []
  for start, raw in spans.items():
    if start not in fields:
      continue  # the header
    end = start + len(raw) - 1
    if len(fields[start]) != width:
      raise ValueError(
        f"Data file {path!r}: the record at lines {start}-{end} is one quoted text over several lines with "
        f"{len(fields[start])} fields where the header has {width}, so a quote opened on line {start} probably "
        'merged rows; close the quote there, or double it ("") inside a quoted text.'
      )
    whole = [start + i for i, text in enumerate(raw[:-1]) if whole_row(text)]
    if whole:
      suspect.append((start, end, whole[0]))
  if suspect:
    start, end, line = suspect[0]
    logging.warning(
      "%s: %d record(s) hold a quoted text over several lines where a line on its own has the header's %d fields "
      "(first at lines %d-%d, line %d): read as one row each, as CSV says; if a quote was left open there, close it.",
      path,
      len(suspect),
      width,
      start,
      end,
      line,
    )


def _jsonl_objects(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
  """(line, object) for every non-blank line of a .jsonl file, one at a time; a line that is not
  a JSON object, or bytes that are not UTF-8, stop with one sentence naming the line."""
  with open(path, encoding="utf-8-sig") as f:
    try:
      for i, line in enumerate(f, 1):
        if not line.strip():
          continue
        try:
          row = json.loads(line)
        except json.JSONDecodeError as e:
          raise ValueError(f"Data file {path!r} line {i} is not valid JSON ({e.msg}).") from None
        if not isinstance(row, dict):
          raise ValueError(f"Data file {path!r} line {i} is not a JSON object.")
        yield i, row
    except UnicodeDecodeError:
      raise _not_utf8(path) from None


def _read_jsonl(path: str) -> tuple[list[str], list[dict[str, Any]], list[int]]:
  rows, lines, header = [], [], {}
  for i, row in _jsonl_objects(path):
    rows.append(row)
    lines.append(i)
    header.update(dict.fromkeys(row))
  return list(header), rows, lines


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


def _is_blank(v: Any) -> bool:
  """An empty cell: None (JSON null), NaN, or a string of whitespace."""
  if v is None:
    return True
  if isinstance(v, (float, np.floating)):
    return bool(np.isnan(v))
  return isinstance(v, str) and not v.strip()


def _is_missing_label(v: Any) -> bool:
  """An empty label cell; pandas writes a missing value as '' or 'nan'."""
  return _is_blank(v) or (isinstance(v, str) and v.strip().lower() == "nan")


def _at(lines: Sequence[int] | None, i: int) -> str:
  """Where row i of a file is: its line when known, else its row number."""
  return f"line {lines[i]}" if lines else f"row {i + 1}"


def _check_labels_present(
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


def _has_labels(header: Sequence[str], rows: Sequence[Mapping[str, Any]], column: str, hf: bool = False) -> bool:
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


def _columns_from_rows(
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
    _check_labels_present(
      [r.get(spec.label_column) for r in rows], lines, path, spec.label_column, test=split in spec.test_splits
    )
  blank = [i for i, r in enumerate(rows) if any(_is_blank(r.get(c)) for c in spec.text_columns)]
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
    cols[c] = ["" if _is_blank(v) else v if isinstance(v, str) else str(v) for v in (r.get(c) for r in rows)]
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
  if not os.path.isfile(path):
    raise ValueError(f"{what}={path!r} does not exist.")
  text_columns = list(text_columns)
  if os.path.splitext(path)[1].lower() == ".txt":
    if len(text_columns) != 1:
      raise ValueError(
        f"{what}={path!r} is plain text (one text per line) but the task reads text pairs "
        f"{text_columns}; give a .csv, .tsv or .jsonl file with those columns."
      )
    try:
      with open(path, encoding="utf-8-sig") as f:
        pairs = [(i, line.rstrip("\r\n")) for i, line in enumerate(f, 1)]
    except UnicodeDecodeError:
      raise _not_utf8(path) from None
    header = text_columns
    lines = [i for i, _ in pairs]
    rows = [{text_columns[0]: t} for _, t in pairs]
    if not keep_empty:  # blank lines separate nothing in a list of texts
      keep = [i for i, r in enumerate(rows) if r[text_columns[0]].strip()]
      rows, lines = [rows[i] for i in keep], [lines[i] for i in keep]
  else:
    header, rows, lines = _read_table(path, strict_rows=False)
  missing = [c for c in text_columns if c not in header]
  if missing:
    raise ValueError(
      f"{what}={path!r} has no text column {missing[0]!r}; its columns are {list(header)} "
      f"(name the text column with {column_options})."
    )
  blank = [i for i, r in enumerate(rows) if any(_is_blank(r.get(c)) for c in text_columns)]
  if blank:
    logging.warning(
      "%s=%r: %d row(s) with an empty %s %s (first at %s).",
      what,
      path,
      len(blank),
      " or ".join(repr(c) for c in text_columns),
      "kept as '' so that every row gets an output" if keep_empty else "skipped",
      _at(lines, blank[0]),
    )
    if not keep_empty:
      keep = sorted(set(range(len(rows))) - set(blank))
      rows, lines = [rows[i] for i in keep], [lines[i] for i in keep]
  if not rows:
    raise ValueError(f"{what}={path!r} holds no texts.")
  cols: dict[str, Any] = {
    c: ["" if _is_blank(v) else v if isinstance(v, str) else str(v) for v in (r.get(c) for r in rows)]
    for c in text_columns
  }
  cols["idx"] = np.asarray(lines if lines else range(1, len(rows) + 1), np.int64)
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
) -> Iterator[tuple[int, tuple[str, ...]]]:
  """The rows of `read_texts(..., keep_empty=True)` one at a time, holding none of them.

  Yields (the row's line, its texts: one str per `text_columns`) for exactly the rows, lines and
  texts read_texts returns, and raises its ValueErrors with the same sentences: a header's (a
  missing column, an empty file) before the first row, a row's when that row is read, and at the
  end a .jsonl's missing column (its columns are the keys of all its rows) and 'holds no texts'.
  `counts`, when given, is updated as rows are read.
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
    rows = _table_rows(path, list(text_columns), what, column_options, counts)
  for line, values in rows:
    if any(_is_blank(v) for v in values):
      counts.empty += 1
      counts.first_empty = counts.first_empty or line
    counts.rows += 1
    yield line, tuple("" if _is_blank(v) else v if isinstance(v, str) else str(v) for v in values)
  if not counts.rows:
    raise ValueError(f"{what}={path!r} holds no texts.")


def scan_texts(path: str, text_columns: Sequence[str], *, what: str, column_options: str = "data.text_column") -> int:
  """The number of rows `iter_texts` yields, from one pass that keeps none: raises every error of
  the file (as read_texts would) and logs read_texts's warnings (malformed lines, empty texts)."""
  counts = TextCounts()
  for _ in iter_texts(path, text_columns, what=what, column_options=column_options, counts=counts):
    pass
  if counts.malformed:
    logging.warning(
      "%s: %d malformed lines (first at line %d) skipped or truncated.", path, counts.malformed, counts.first_malformed
    )
  if counts.empty:
    logging.warning(
      "%s=%r: %d row(s) with an empty %s kept as '' so that every row gets an output (first at line %d).",
      what,
      path,
      counts.empty,
      " or ".join(repr(c) for c in text_columns),
      counts.first_empty,
    )
  return counts.rows


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
      raise _not_utf8(path) from None


def _jsonl_rows(path: str, text_columns: list[str], what: str, options: str) -> Iterator[tuple[int, tuple]]:
  """(line, the text columns' values, None where a key is absent) for every object of a .jsonl file,
  as `_read_jsonl` reads them; a text column no object has is an error at the end."""
  header: dict[str, None] = {}
  for i, row in _jsonl_objects(path):
    header.update(dict.fromkeys(row))
    yield i, tuple(row.get(c) for c in text_columns)
  _check_text_columns(list(header), text_columns, what, path, options)


def _table_rows(
  path: str, text_columns: list[str], what: str, options: str, counts: TextCounts
) -> Iterator[tuple[int, tuple[str, ...]]]:
  """(line, the text fields) for every row of a .csv/.tsv file, read by `_records` with
  `_read_table`'s rules (header, duplicate names, blank rows, field counts: strict_rows=False,
  a multi-line record of the wrong width: `_check_spans`'s error; its warning, which needs every
  row's last field, is not given)."""
  spans: dict[int, list[str]] = {}
  ext = os.path.splitext(path)[1].lower()
  if ext not in (".tsv", ".csv"):
    raise ValueError(f"Data file {path!r} has an unsupported extension {ext!r}; use .csv, .tsv or .jsonl.")
  with open(path, encoding="utf-8-sig", newline="") as f:
    try:
      records = _records(f, path, ext, spans)
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
      for line, fields in records:
        raw = spans.pop(line, None)
        if raw is not None:
          _check_spans(path, {line: raw}, {line: fields}, len(header))
        if all(not x.strip() for x in fields):
          continue  # blank line, or a row of empty cells
        if len(fields) != len(header):
          counts.malformed += 1
          counts.first_malformed = counts.first_malformed or line
          if len(fields) < len(header):
            continue
        yield line, tuple(fields[k] for k in pick)
    except UnicodeDecodeError:
      raise _not_utf8(path) from None


def _ratio_subset(cols: dict[str, Any], ratio: float, num_labeled: int) -> dict[str, Any]:
  """At most round(ratio * num_labeled) rows of `cols` (all when ratio is 0): a subset drawn with a
  fixed seed, independent of the run's seed so that every run of a study sees the same data, in
  file order."""
  n = _num_rows(cols)
  keep = n if ratio <= 0 else min(n, max(1, round(ratio * num_labeled)))
  if keep == n:
    return cols
  rows = np.sort(np.random.default_rng(0).permutation(n)[:keep])
  return {k: ([v[i] for i in rows] if isinstance(v, list) else np.asarray(v)[rows]) for k, v in cols.items()}


def _head(cols: dict[str, Any], n: int) -> dict[str, Any]:
  return {k: v[:n] for k, v in cols.items()} if n and n > 0 else cols


def _num_rows(cols: Mapping[str, Any]) -> int:
  return len(cols["idx"])


# ----------------------------------------------------------------------------- GLUE


def _glue_folder(data_dir: str, layout: _GlueLayout) -> str:
  if os.path.isfile(os.path.join(data_dir, layout.files[TRAIN])):
    return data_dir
  nested = os.path.join(data_dir, layout.folder)
  if os.path.isfile(os.path.join(nested, layout.files[TRAIN])):
    return nested  # data_dir is the parent glue/ folder.
  return data_dir


def _load_glue_tsv(spec: TaskSpec, data_dir: str, data_cfg) -> Task:
  layout = _GLUE_LAYOUTS[spec.name]
  if not os.path.isdir(data_dir):
    raise ValueError(
      f"data.data_dir {data_dir!r} for GLUE task {spec.name!r} is not a folder; "
      f"point it at GLUE's {layout.folder} folder of TSV files."
    )
  folder = _glue_folder(data_dir, layout)
  splits, sources = {}, {}
  for split, fname in layout.files.items():
    labelled = split not in spec.test_splits
    candidates = layout.optional_files.get(split, (fname,))
    path = next(
      (os.path.join(folder, c) for c in candidates if os.path.isfile(os.path.join(folder, c))),
      os.path.join(folder, candidates[0]),
    )
    if not os.path.isfile(path):
      if labelled:
        raise ValueError(
          f"GLUE task {spec.name!r}: file {path!r} does not exist; "
          f"data.data_dir must be GLUE's {layout.folder} folder with "
          f"{sorted(set(layout.files.values()) - {'diagnostic.tsv'})}."
        )
      logging.info("GLUE %s: no %s, split %r skipped.", spec.name, path, split)
      continue
    # CoLA's train/dev files have no header; its test file has one (index, sentence).
    no_header = layout.no_header_columns if labelled else None
    header, rows, lines = _read_table(path, no_header_columns=no_header)
    # A test file that carries labels (not GLUE's own) is scored as well as predicted.
    labelled = labelled or (split != "ax" and _has_labels(header, rows, spec.label_column))
    splits[split] = _columns_from_rows(header, rows, lines, spec, path, labelled, split)
    sources[split] = path
  return Task(spec, splits, sources)


def _hf_cache_has_glue() -> bool:
  roots = []
  try:
    import datasets  # pylint: disable=g-import-not-at-top

    roots.append(datasets.config.HF_DATASETS_CACHE)
  except Exception:  # pylint: disable=broad-except
    pass
  try:
    from huggingface_hub import constants  # pylint: disable=g-import-not-at-top

    roots.append(constants.HF_HUB_CACHE)
  except Exception:  # pylint: disable=broad-except
    pass
  names = ("glue", "nyu-mll___glue", "datasets--nyu-mll--glue", "datasets--glue")
  return any(os.path.isdir(os.path.join(str(r), n)) for r in roots for n in names)


@contextlib.contextmanager
def _offline():
  """Forces datasets/huggingface_hub offline for one call, whatever the environment says."""
  import datasets  # pylint: disable=g-import-not-at-top
  from huggingface_hub import constants  # pylint: disable=g-import-not-at-top

  flags = [(datasets.config, "HF_HUB_OFFLINE"), (datasets.config, "HF_DATASETS_OFFLINE"), (constants, "HF_HUB_OFFLINE")]
  saved = [(mod, attr, getattr(mod, attr)) for mod, attr in flags if hasattr(mod, attr)]
  try:
    for mod, attr, _ in saved:
      setattr(mod, attr, True)
    yield
  finally:
    for mod, attr, value in saved:
      setattr(mod, attr, value)


def _load_glue_hf(spec: TaskSpec) -> Task:
  layout = _GLUE_LAYOUTS[spec.name]
  hint = (
    f"GLUE task {spec.name!r} has no data.data_dir and is not in the local Hugging Face "
    f"cache (the hub is not reachable); download GLUE and point at the task's folder, e.g. "
    f"--config.data.data_dir=/path/to/glue/{layout.folder}"
  )
  if not _hf_cache_has_glue():
    raise ValueError(hint + ".")
  try:
    import datasets  # pylint: disable=g-import-not-at-top

    with _offline():
      ds = datasets.load_dataset("nyu-mll/glue", spec.name)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"{hint} (load_dataset failed: {type(e).__name__}: {e}).") from None
  splits, sources = {}, {}
  rename = lambda c: layout.hf_columns.get(c, c)
  for split in (TRAIN,) + spec.eval_splits + spec.test_splits:
    if split not in ds:
      continue  # 'ax' is a separate HF config; point data_dir at the TSVs to get it.
    hf_split = split
    d = ds[hf_split]
    header = [rename(c) for c in d.column_names]
    rows = [{rename(k): v for k, v in r.items()} for r in d]
    labelled = split not in spec.test_splits or _has_labels(header, rows, spec.label_column, hf=True)
    splits[split] = _columns_from_rows(header, rows, None, spec, f"hf:glue/{spec.name}/{hf_split}", labelled, split)
    sources[split] = f"hf:glue/{spec.name}/{hf_split}"
  return Task(spec, splits, sources)


# ----------------------------------------------------------------------------- local


def _resolve(data_dir: str, path: str) -> str:
  path = os.path.expanduser(path)
  return path if os.path.isabs(path) or not data_dir else os.path.join(data_dir, path)


def _find_default(data_dir: str, stems: Sequence[str]) -> str:
  for stem in stems:
    for ext in (".csv", ".tsv", ".jsonl"):
      p = os.path.join(data_dir, stem + ext)
      if os.path.isfile(p):
        return p
  return ""


def _as_dict(d) -> dict[str, str]:
  if not d:
    return {}
  if isinstance(d, ml_collections.ConfigDict):
    d = d.to_dict()
  if not isinstance(d, Mapping):
    raise ValueError(f"Expected a dict of split name -> file, got {d!r}.")
  return {str(k): str(v) for k, v in d.items() if v}


def _local_files(cfg) -> tuple[str, dict[str, str], str]:
  data_dir = os.path.expanduser(cfg.get("data_dir", "") or "")
  train = cfg.get("train_file", "") or ""
  evals = _as_dict(cfg.get("eval_files"))
  test = cfg.get("test_file", "") or ""
  if data_dir and not train and not evals:
    if not os.path.isdir(data_dir):
      raise ValueError(f"data.data_dir {data_dir!r} is not a folder.")
    train = _find_default(data_dir, ["train"])
    dev = _find_default(data_dir, ["dev", "validation", "valid"])
    evals = {"validation": dev} if dev else {}
    test = test or _find_default(data_dir, ["test"])
  if not train:
    raise ValueError(
      "data.train_file is empty for task 'local'; set it (or data.data_dir to a "
      "folder with train.csv/.tsv/.jsonl), or set data.task to a GLUE task name."
    )
  return (
    _resolve(data_dir, train),
    {k: _resolve(data_dir, v) for k, v in evals.items()},
    _resolve(data_dir, test) if test else "",
  )


def _infer_labels(values: Sequence[Any], lines: Sequence[int] | None, path: str, column: str):
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


def _local_spec(
  cfg,
  train_path: str,
  evals: Mapping[str, str],
  test: str,
  train_rows: tuple[list[str], list[dict[str, Any]], list[int]],
) -> TaskSpec:
  text_columns = tuple(c for c in (cfg.get("text_column", "text"), cfg.get("text_pair_column", "")) if c)
  label_column = cfg.get("label_column", "label")
  names = tuple(cfg.get("label_names", ()) or ()) or None
  k = int(cfg.get("num_labels", 0) or 0)
  if names is not None and k not in (0, len(names)):
    raise ValueError(f"data.num_labels={k} does not match data.label_names {list(names)} ({len(names)} names).")
  if names is not None:
    k = len(names)
  elif k == 0:
    header, rows, lines = train_rows
    if label_column not in header:
      raise ValueError(f"Data file {train_path!r} has no column {label_column!r}; its columns are {list(header)}.")
    if not rows:
      raise ValueError(f"Split 'train' from {train_path!r} is empty (no data rows).")
    values = [r.get(label_column) for r in rows]
    _check_labels_present(values, lines, train_path, label_column)
    k, names = _infer_labels(values, lines, train_path, label_column)
  elif k < 1:
    raise ValueError(f"data.num_labels={k} is invalid; use 1 (regression) or >= 2 classes.")
  regression = k == 1
  if regression and names is not None:
    raise ValueError("data.label_names is set but data.num_labels=1 (regression); drop one.")
  metrics = ("pearson", "spearmanr", "mse") if regression else ("accuracy", "macro_f1")
  return TaskSpec(
    name=LOCAL,
    text_columns=text_columns,
    label_column=label_column,
    num_labels=k,
    label_names=names,
    is_regression=regression,
    main_metric=metrics[0],
    metric_names=metrics,
    eval_splits=tuple(evals),
    test_splits=("test",) if test else (),
  )


def _load_local(cfg) -> Task:
  train, evals, test = _local_files(cfg)
  train_rows = _read_table(train)
  spec = _local_spec(cfg, train, evals, test, train_rows)
  splits = {TRAIN: _columns_from_rows(*train_rows, spec, train, True, TRAIN)}
  sources = {TRAIN: train}
  for name, path in evals.items():
    splits[name] = _columns_from_rows(*_read_table(path), spec, path, True, name)
    sources[name] = path
  if test:
    header, rows, lines = _read_table(test)
    # A test file may leave its label column empty: it is then only predicted, not scored.
    labelled = _has_labels(header, rows, spec.label_column)
    splits["test"] = _columns_from_rows(header, rows, lines, spec, test, labelled, "test")
    sources["test"] = test
  return Task(spec, splits, sources)


# ----------------------------------------------------------------------------- entry


# Other spellings users type for a task name (after lower-casing and dropping '-').
TASK_ALIASES = {"sst": "sst2", "sts": "stsb", "mnlim": "mnli"}


def task_name(task: str) -> str:
  """The canonical name of `data.task`: 'SST-2' -> 'sst2', '' -> 'local' (not checked)."""
  name = str(task or LOCAL).lower().replace("-", "")
  return TASK_ALIASES.get(name, name)


def load_task(data_cfg) -> Task:
  """Loads the task named by `data_cfg.task` (see `defaults.data_config`).

  Returns a `Task` whose `splits` hold 'train', every name in `spec.eval_splits`
  (including the out-of-domain ones from `data_cfg.ood_eval_files`), and the test
  splits whose files exist. Raises ValueError with one sentence naming the file,
  column or value on any bad input, before anything is tokenized.
  """
  name = task_name(data_cfg.get("task", LOCAL))
  if name == LOCAL:
    task = _load_local(data_cfg)
  elif name in GLUE_TASKS:
    spec = GLUE_TASKS[name]
    if data_cfg.get("num_labels", 0) and int(data_cfg.num_labels) != spec.num_labels:
      raise ValueError(
        f"data.num_labels={data_cfg.num_labels} does not match GLUE task {name!r} ({spec.num_labels}); leave it at 0."
      )
    data_dir = os.path.expanduser(data_cfg.get("data_dir", "") or "")
    task = _load_glue_tsv(spec, data_dir, data_cfg) if data_dir else _load_glue_hf(spec)
  else:
    raise ValueError(f"data.task={data_cfg.get('task')!r} is not a GLUE task ({sorted(GLUE_TASKS)}) or 'local'.")
  spec = task.spec
  ood = _as_dict(data_cfg.get("ood_eval_files"))
  ood_dir = os.path.expanduser(data_cfg.get("data_dir", "") or "") if name == LOCAL else ""
  for split, path in ood.items():
    if split in task.splits:
      raise ValueError(
        f"data.ood_eval_files name {split!r} clashes with an existing split {sorted(task.splits)}; rename it."
      )
    path = _resolve(ood_dir, path)
    task.splits[split] = _columns_from_rows(*_read_table(path, strict_rows=False), spec, path, True, split)
    task.sources[split] = path
  main_metric = data_cfg.get("main_metric", "") or spec.main_metric
  if main_metric not in spec.metric_names:
    raise ValueError(
      f"data.main_metric={main_metric!r} is not a metric of task {spec.name!r}; valid: {list(spec.metric_names)}."
    )
  task.spec = dataclasses.replace(spec, main_metric=main_metric, eval_splits=tuple(spec.eval_splits) + tuple(ood))
  n_train, n_eval = (int(data_cfg.get("max_train_examples", 0) or 0), int(data_cfg.get("max_eval_examples", 0) or 0))
  for split in list(task.splits):
    task.splits[split] = _head(task.splits[split], n_train if split == TRAIN else n_eval)
  if data_cfg.get("unlabeled_file", ""):
    path = _resolve(ood_dir, os.path.expanduser(data_cfg.unlabeled_file))
    texts = read_texts(path, task.spec.text_columns, what="data.unlabeled_file", keep_empty=False)
    task.unlabeled = _ratio_subset(texts, float(data_cfg.get("unlabeled_ratio", 0.0)), _num_rows(task.splits[TRAIN]))
    task.sources["unlabeled"] = path
  logging.info("Task %s: %s", task.spec.name, {s: _num_rows(c) for s, c in task.splits.items()})
  return task
