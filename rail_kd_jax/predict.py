"""Applying a trained classifier to new text: `python -m rail_kd_jax.predict`.

  python -m rail_kd_jax.predict --model=runs/rail --input=reviews.csv
  python -m rail_kd_jax.predict --model=runs/rail/export/student --input=lines.txt --output=out.jsonl
  python -m rail_kd_jax.predict --model=runs/sweep_1 --export=student --dtype=float32 --input=big.csv

`--model` is an exported classifier folder (`<workdir>/export/<name>`, what a finished run
writes) or the run's workdir (`--export` picks one when it holds several); `--input` a
.csv/.tsv/.jsonl file with a text column (and a pair column for pair tasks) or a .txt file with
one text per line. Every input row gets one output row, in input order: `line`, the text(s),
`label` (the predicted class: its name from the export's `id2label`, else its id) and one
`prob_<class>` per class; a regression model (one output) writes `score` instead. The model runs
deterministically (no dropout) on one device, in the run's eval path's form and compute dtype
(`--dtype` overrides it), so `label` is what the run's own evaluation predicts.

The input is read twice and never held whole: a first pass checks the whole file (every input
error stops the command before the model is loaded) and counts its rows, for the progress
lines' ETA; the second reads, tokenizes, runs and writes `--chunk_rows` rows at a time (at most
two chunks held), so memory does not grow with the input. docs/DATA.md, "Applying a model to
new text", lists the flags, the columns and the errors.

Exit codes: 0 done; 2 a user error (a bad flag, model folder or input file): one sentence on
stderr, no traceback unless --verbosity>=1; 1 an unexpected error.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from typing import Any

import numpy as np
from absl import app, flags, logging

from rail_kd_jax.core.errors import ConfigError
from rail_kd_jax.data import text_input
from rail_kd_jax.outputs import predictions
from rail_kd_jax.training import inference

INPUT_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".txt")
DEFAULT_CHUNK_ROWS = 4096  # input rows read, tokenized, run and written at a time
# How text_input's messages name the input and its column options.
_INPUT_OPTIONS = {"what": "--input", "column_options": "--text_column / --text_pair_column"}

# ----------------------------------------------------------------------------- the input, predicting a file


def _chunks(rows, size: int, text_columns: list[str]):
  """Yields column dicts ({text column: [str], 'idx': int64 [n] the rows' lines}) of at most
  `size` consecutive rows of `text_input.iter_texts`."""
  while True:
    block = list(itertools.islice(rows, size))
    if not block:
      return
    lines, texts = zip(*block)
    cols: dict[str, Any] = {c: [t[k] for t in texts] for k, c in enumerate(text_columns)}
    cols["idx"] = np.asarray(lines, np.int64)
    yield cols


def _check_arguments(batch_size, max_length, text_column: str, dtype: str, chunk_rows) -> None:
  """ConfigError for a flag that is invalid on its own."""
  if not isinstance(batch_size, int) or batch_size < 1:
    raise ConfigError(f"--batch_size={batch_size!r} must be an integer >= 1")
  if not isinstance(max_length, int) or max_length < 0 or 0 < max_length < 4:
    raise ConfigError(f"--max_length={max_length!r} is not valid; give 0 (the default) or at least 4 tokens")
  if not text_column:
    raise ConfigError("--text_column is empty; give the input's text column, e.g. --text_column=text")
  if dtype not in inference.DTYPES:
    raise ConfigError(f"--dtype={dtype!r} is not valid; choose one of: '' (the run's), float32, bfloat16")
  if not isinstance(chunk_rows, int) or chunk_rows < 1:
    raise ConfigError(f"--chunk_rows={chunk_rows!r} must be an integer >= 1 (rows held in memory at a time)")


def _count_input(input_path: str, text_columns: list[str]) -> int:
  """The rows of --input, from a pass of `text_input.scan_texts` that checks it all; its errors as ConfigErrors."""
  try:
    return text_input.scan_texts(input_path, text_columns, **_INPUT_OPTIONS)
  except ValueError as e:
    raise ConfigError(str(e)) from None


def _input_rows(input_path: str, text_columns: list[str]):
  """`text_input.iter_texts` over --input, its errors as ConfigErrors."""
  try:
    yield from text_input.iter_texts(input_path, text_columns, **_INPUT_OPTIONS)
  except ValueError as e:
    raise ConfigError(str(e)) from None


def predict_file(
  model: str,
  input_path: str,
  output: str = "",
  *,
  fmt: str = "",
  text_column: str = "text",
  text_pair_column: str = "",
  max_length: int = 0,
  batch_size: int = 64,
  log_every: int = 50,
  export: str = "",
  dtype: str = "",
  chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> str:
  """Predicts every text of `input_path` with the classifier of `model`; returns the output path.

  Arguments are the command's flags (module docstring). Every user error is a ConfigError of
  one sentence, raised before the model is loaded where the input alone decides it: a first
  pass over the input checks it all. The second reads, encodes, runs and writes `chunk_rows`
  rows at a time, so memory is bounded by `chunk_rows`, not by the input's length.
  """
  _check_arguments(batch_size, max_length, text_column, dtype, chunk_rows)
  input_path = os.path.abspath(os.path.expanduser(input_path))
  ext = os.path.splitext(input_path)[1].lower()
  if ext not in INPUT_EXTENSIONS:
    raise ConfigError(
      f"--input={input_path!r} has an unsupported extension {ext!r}; use .csv, .tsv, .jsonl or .txt (one text per line)"
    )
  out_path, fmt = predictions.output_target(input_path, output, fmt)
  text_columns = [text_column] + ([text_pair_column] if text_pair_column else [])
  source = inference.resolve_model(model, export)
  total = _count_input(input_path, text_columns)
  classifier = inference.load_classifier(source.folder, source.run_max_length, inference.compute_dtype(dtype, source))
  columns = predictions.output_columns(classifier.class_names, text_columns)
  length = inference.max_length_for(classifier, max_length)
  t0 = time.perf_counter()
  chunks = _chunks(_input_rows(input_path, text_columns), chunk_rows, text_columns)
  spec = inference.task_spec(classifier, text_columns)
  predicted = inference.predicted_chunks(classifier, chunks, spec, length, batch_size)
  rows = predictions.prediction_rows(classifier.class_names, predicted, text_columns, total, log_every * batch_size)
  predictions.write_rows(out_path, fmt, columns, rows)
  seconds = time.perf_counter() - t0
  logging.info(
    "%d predictions of %s written to %s in %.1fs (%.0f texts/s)",
    total,
    classifier.folder,
    out_path,
    seconds,
    total / seconds,
  )
  return out_path


# ----------------------------------------------------------------------------- command line


def _define_flags() -> None:
  """The command's flags (defined only when run as a program, like the benchmark's, so that
  importing this module adds nothing to absl's global flags)."""
  flags.DEFINE_string(
    "model", None, "An exported classifier folder (<workdir>/export/<name>) or a finished run's workdir."
  )
  flags.DEFINE_string(
    "export", "", "With --model a run workdir: the export to apply (its export/<name>); '' = its only one."
  )
  flags.DEFINE_string(
    "input",
    None,
    "The texts: a .csv, .tsv or .jsonl file with --text_column (and --text_pair_column), or .txt, one text per line.",
  )
  flags.DEFINE_string(
    "output",
    "",
    "The predictions file, .csv or .jsonl (replaced if it exists); '' = beside --input as "
    "<input name without its extension>.predictions.csv (.jsonl with --format=jsonl).",
  )
  flags.DEFINE_enum(
    "format",
    "",
    ("",) + predictions.FORMATS,
    "Output format, csv or jsonl; '' = from --output's extension (csv when it is empty).",
  )
  flags.DEFINE_string("text_column", "text", "The input's text column (a .txt input's texts get this name).")
  flags.DEFINE_string("text_pair_column", "", "The input's second text column, for a pair task; '' = single texts.")
  flags.DEFINE_integer(
    "max_length",
    0,
    "Tokens per text (longer texts are truncated); 0 = the run's data.max_length when --model is a run "
    f"workdir or its export, else {inference.DEFAULT_MAX_LENGTH}; at most the model's positions.",
  )
  flags.DEFINE_integer(
    "batch_size",
    64,
    "Texts per forward pass (texts of similar length batched together, each batch cut to its longest).",
  )
  flags.DEFINE_enum(
    "dtype",
    "",
    inference.DTYPES,
    "Compute dtype: '' = the run's (its model's or student's dtype, when --model is a run workdir or its export), "
    "else float32; float32 or bfloat16 to choose. Weights stay float32, the probabilities are computed in float32.",
  )
  flags.DEFINE_integer(
    "chunk_rows",
    DEFAULT_CHUNK_ROWS,
    "Input rows read, tokenized, run and written at a time: memory grows with it, not with the input "
    "(a multiple of --batch_size keeps every batch but the last full).",
  )
  flags.DEFINE_integer(
    "log_every", 50, "Log progress (texts/s, ETA) about every this many batches, at most once a chunk (0 = at the end)."
  )
  flags.mark_flags_as_required(["model", "input"])


def _user_error(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def parse_flags(argv):
  """absl's flag parsing, with a flag error (a missing --model, a bad --format) a one-line exit 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _user_error(" ".join(str(e).split()).replace("flag --", "--", 1))


def main(argv):
  if len(argv) > 1:
    _user_error(f"unexpected arguments: {' '.join(argv[1:])}; every option is a --flag (see --help)")
  f = flags.FLAGS
  try:
    path = predict_file(
      f.model,
      f.input,
      f.output,
      fmt=f.format,
      text_column=f.text_column,
      text_pair_column=f.text_pair_column,
      max_length=f.max_length,
      batch_size=f.batch_size,
      log_every=f.log_every,
      export=f.export,
      dtype=f.dtype,
      chunk_rows=f.chunk_rows,
    )
  except ConfigError as e:
    # A user error: one sentence, exit code 2, no traceback unless --verbosity>=1.
    if logging.get_verbosity() >= logging.DEBUG:
      raise
    logging.error("%s", e)
    _user_error(str(e))
  print(path)


if __name__ == "__main__":
  _define_flags()
  app.run(main, flags_parser=parse_flags)
