"""Reading data files: CSV/TSV/JSONL records with the line each starts on, and errors that name the line."""

from __future__ import annotations

import codecs
import csv
import json
import os
import sys
from typing import Any, Iterator, Mapping, Sequence

from absl import logging

# GLUE TSVs hold single fields far over csv's default 128 KiB limit only rarely,
# but MNLI parses do come close.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


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


def records(f, path: str, ext: str, spans: dict[int, list[str]] | None = None) -> Iterator[tuple[int, list[str]]]:
  """(line the record starts on, its fields) for each record of an open .csv/.tsv/.txt file.

  With `spans`, each .csv record that runs over several lines (a quoted field holding line
  breaks) is recorded there as {start line: its physical lines}, for `check_spans`.
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


def not_utf8(path: str) -> ValueError:
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


def read_table(
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
      recs = list(records(f, path, ext, spans))
    except UnicodeDecodeError:
      raise not_utf8(path) from None
  if no_header_columns is not None:
    header, body = list(no_header_columns), recs
  else:
    if not recs:
      raise ValueError(f"Data file {path!r} is empty (no header line).")
    header, body = [h.strip() for h in recs[0][1]], recs[1:]
    dups = sorted({h for h in header if h and header.count(h) > 1})
    if dups:
      raise ValueError(
        f"Data file {path!r} names the column(s) {dups} more than once in its header {header}; rename them."
      )
  if spans:
    check_spans(path, spans, dict(body), len(header))
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


def check_spans(path: str, spans: Mapping[int, list[str]], fields: Mapping[int, list[str]], width: int) -> None:
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


def jsonl_objects(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
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
      raise not_utf8(path) from None


def _read_jsonl(path: str) -> tuple[list[str], list[dict[str, Any]], list[int]]:
  rows, lines, header = [], [], {}
  for i, row in jsonl_objects(path):
    rows.append(row)
    lines.append(i)
    header.update(dict.fromkeys(row))
  return list(header), rows, lines
