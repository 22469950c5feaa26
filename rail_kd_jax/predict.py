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

import csv
import dataclasses
import itertools
import json
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from rail_kd_jax import models
from rail_kd_jax.core import checks, files
from rail_kd_jax.core.errors import ConfigError, StorageError
from rail_kd_jax.data import loader, tasks, text_input, tokenize
from rail_kd_jax.models import convert

INPUT_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".txt")
FORMATS = ("csv", "jsonl")
DTYPES = ("", "float32", "bfloat16")  # '' = the run's compute dtype, float32 when it is not known
DEFAULT_MAX_LENGTH = 128  # tokens, when the model folder does not belong to a run workdir
DEFAULT_CHUNK_ROWS = 4096  # input rows read, tokenized, run and written at a time
_DIGITS = 6  # significant digits of the written probabilities and scores
# How text_input's messages name the input and its column options.
_INPUT_OPTIONS = {"what": "--input", "column_options": "--text_column / --text_pair_column"}
_EXPORTED_BLOCK = {"finetune": "model", "distill": "student"}  # a run's mode -> its exported model's config block

# ----------------------------------------------------------------------------- the model


@dataclasses.dataclass(frozen=True)
class Classifier:
  """A loaded sequence classifier and what its outputs mean."""

  folder: str  # the export folder
  model: models.Encoder  # its `dtype` is the compute dtype
  params: Any
  tokenizer: Any
  class_names: tuple[str, ...]  # one per logit; () for a regression model (one score)
  run_max_length: int | None  # data.max_length of the run that wrote the export, if known


@dataclasses.dataclass(frozen=True)
class ModelSource:
  """Where `--model`'s classifier is, and what the run that wrote it says about it."""

  folder: str  # the export folder
  run_max_length: int | None  # the run's data.max_length, when the export belongs to a run
  run_dtype: str | None  # the compute dtype the run trained it in ('float32' | 'bfloat16'), if known


def _run_config(workdir: str) -> dict | None:
  """A run's config.json in `workdir` (it has `mode` and `data`), or None when there is none."""
  try:
    with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
      config = json.load(f)
  except (OSError, ValueError):
    return None
  return config if isinstance(config, dict) and "mode" in config and isinstance(config.get("data"), dict) else None


def _source(folder: str, workdir: str | None) -> ModelSource:
  """The export `folder` with the facts of the run in `workdir` (None: not a run's export):
  its data.max_length, and the `dtype` of the config block it exported (finetune: `model`,
  distill: `student`)."""
  run = _run_config(workdir) if workdir else None
  if run is None:
    return ModelSource(folder, None, None)
  max_length = run["data"].get("max_length")
  block = _EXPORTED_BLOCK.get(run.get("mode"))
  fields = run.get(block) if block == os.path.basename(folder) else None
  dtype = fields.get("dtype") if isinstance(fields, dict) else None
  return ModelSource(
    folder,
    max_length if isinstance(max_length, int) and max_length > 0 else None,
    dtype if dtype in DTYPES[1:] else None,
  )


def _exports(workdir: str) -> list[str]:
  """The names of the export folders (those with a config.json) of a run workdir."""
  export_dir = os.path.join(workdir, "export")
  entries = sorted(os.listdir(export_dir)) if os.path.isdir(export_dir) else []
  return [n for n in entries if not n.startswith(".") and os.path.isfile(os.path.join(export_dir, n, "config.json"))]


def _workdir_export(workdir: str, export: str = "") -> str:
  """The export folder of a run workdir: `export`, else its only one; ConfigError when it has
  none, when `export` is not among them, or when it has several and `export` is ''."""
  found = _exports(workdir)
  listed = ", ".join(f"export/{n}" for n in found)
  if found and export:
    if export in found:
      return os.path.join(workdir, "export", export)
    raise ConfigError(f"--export={export!r} is not an export of --model={workdir!r}, which holds {listed}; choose one")
  if len(found) == 1:
    return os.path.join(workdir, "export", found[0])
  if found:
    raise ConfigError(
      f"--model={workdir!r} is a run workdir with {len(found)} exports ({listed}); choose one with "
      f"{' or '.join(f'--export={n}' for n in found)}"
    )
  export_dir = os.path.join(workdir, "export")
  if not os.path.isdir(export_dir):
    held = "it has no export/"
  else:
    entries = sorted(os.listdir(export_dir))
    held = f"its export/ holds only {entries}" if entries else "its export/ is empty"
  raise ConfigError(
    f"--model={workdir!r} is a run workdir without an exported model ({held}): the run "
    "has not finished or ran with train.export=False; point --model at a finished run or an export folder"
  )


def resolve_model(path: str, export: str = "") -> ModelSource:
  """The export folder `--model` (and `--export`) names, with its run's facts.

  A folder with an `export/` subfolder or a run's config.json is a run workdir: `export` names
  one of its exports, or it must hold exactly one. The folder found is checked for config.json
  and weights (`checks.model_folder`).
  """
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.isdir(os.path.join(path, "export")) or _run_config(path) is not None:
    return _source(checks.model_folder("--model", _workdir_export(path, export)), path)
  if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
    raise ConfigError(
      f"--model={path!r} is neither a model export (it has no config.json) nor a run workdir (it has no "
      "export/); point it at <workdir>/export/<name> or at a finished run's workdir"
    )
  folder = checks.model_folder("--model", path)
  if export:
    raise ConfigError(
      f"--export={export!r} picks one of a run workdir's exports, but --model={path!r} is an export folder; "
      "drop --export or point --model at the run's workdir"
    )
  owned = os.path.basename(os.path.dirname(folder)) == "export"
  return _source(folder, os.path.dirname(os.path.dirname(folder)) if owned else None)


def compute_dtype(requested: str, source: ModelSource) -> str:
  """The dtype the model computes in: `--dtype`, else the run's, else float32."""
  return requested or source.run_dtype or "float32"


def class_names(config: models.EncoderConfig) -> tuple[str, ...]:
  """One name per class: the export's `id2label` when it names the classes, else the ids."""
  ids = tuple(str(k) for k in range(config.num_labels))
  names = tuple(str(config.id2label[k]) for k in range(config.num_labels)) if config.id2label else ids
  generic = all(n == f"LABEL_{k}" for k, n in enumerate(names))
  return ids if generic or len(set(names)) < len(names) else names


def load_classifier(folder: str, run_max_length: int | None = None, dtype: str = "float32") -> Classifier:
  """The classifier in an export folder (`resolve_model`): config, weights with their task head
  (float32), and tokenizer, computing in `dtype` ('float32' | 'bfloat16', as the trainer builds
  it: softmax and LayerNorm statistics stay float32); ConfigError when the folder holds no
  sequence classifier."""
  try:
    config = convert.read_config(folder)
  except ValueError as e:
    raise ConfigError(f"--model: {e}") from None
  if config.num_labels == 0:
    raise ConfigError(
      f"--model={folder!r} holds a bare encoder ({config.architecture()}), not a sequence classifier; "
      "point it at the export of a finetune or distill run"
    )
  try:
    sd = convert.read_state_dict(folder)
  except ValueError as e:
    raise ConfigError(f"--model: {e}") from None
  head = [key for _, key, _, in_base in convert.name_map(config) if not in_base]
  missing = [key for key in head if key not in sd]
  if missing:
    raise ConfigError(
      f"--model={folder!r} is a {config.architecture()} without its classifier head (no {missing[0]!r} among "
      "its weights); point it at the export of a finetune or distill run"
    )
  try:
    tokenizer = tokenize.load_tokenizer(folder, vocab_size=config.vocab_size)
  except ValueError as e:
    raise ConfigError(f"--model: {e}") from None
  model = models.Encoder(config, dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32)
  params = jax.tree.map(jnp.asarray, convert.params_from_state_dict(sd, model, source=folder))
  names = () if config.num_labels == 1 else class_names(config)
  logging.info(
    "Loaded %s (%d layers, %d outputs, computing in %s) from %s",
    config.architecture(),
    config.num_hidden_layers,
    config.num_labels,
    dtype,
    folder,
  )
  return Classifier(folder, model, params, tokenizer, names, run_max_length)


def max_length_for(classifier: Classifier, requested: int) -> int:
  """Tokens per text: `requested`, else the run's, else DEFAULT_MAX_LENGTH; at most the model's
  positions (as the run's `builders.encode_splits`)."""
  want = requested or classifier.run_max_length or DEFAULT_MAX_LENGTH
  config = classifier.model.config
  positions = config.max_position_embeddings - (2 if config.model_type == "roberta" else 0)
  if requested > positions:  # a default beyond them is cut silently
    logging.warning("--max_length=%d exceeds the model's %d positions; using %d", requested, positions, positions)
  return min(want, positions)


# ----------------------------------------------------------------------------- running it


def make_forward(classifier: Classifier):
  """The jitted deterministic forward (the student's apply of `step.make_eval_step`) on one
  device: a batch of `loader.batches` -> float32 logits [B, C] (not yet fetched)."""
  model, params = classifier.model, classifier.params

  @jax.jit
  def forward(params, input_ids, attention_mask, token_type_ids):
    out = model.apply({"params": params}, input_ids, attention_mask, token_type_ids=token_type_ids, deterministic=True)
    return out.logits.astype(jnp.float32)

  return lambda batch: forward(params, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])


def _launch(forward, arrays: dict[str, np.ndarray], batch_size: int) -> tuple[np.ndarray, list]:
  """Dispatches the forward of encoded rows [N, T] in batches of rows of similar length (the
  rows sorted by length, each batch cut to its longest, as `loader.batches` buckets; the last
  padded with masked copies); returns (the sorted order, [(logits [B, C], real-row mask)])."""
  order = np.argsort(arrays["attention_mask"].sum(1), kind="stable")
  by_length = {k: v[order] for k, v in arrays.items()}
  batches = loader.batches(by_length, batch_size, seed=0, epoch=0, shuffle=False, drop_remainder=False, bucket=True)
  return order, [(forward(batch), batch["example_mask"] > 0) for batch in batches]


def _gather(order: np.ndarray, outputs: list) -> np.ndarray:
  """The float32 logits [N, C] of `_launch`'s batches, back in row order."""
  by_length = np.concatenate([np.asarray(logits)[real] for logits, real in outputs])
  logits = np.empty_like(by_length)
  logits[order] = by_length
  return logits


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


def predicted_chunks(classifier: Classifier, chunks, spec: tasks.TaskSpec, max_length: int, batch_size: int):
  """Yields (chunk, its float32 logits [n, C] in row order) for each column dict of `chunks`.

  A chunk's batches are dispatched before the previous chunk's logits are fetched, so reading
  and tokenizing one chunk overlaps the device's work on the one before; at most two chunks
  are held.
  """
  forward = make_forward(classifier)
  pending = None
  for cols in chunks:
    arrays = loader.encode(cols, classifier.tokenizer, spec, max_length)
    launched = (cols, _launch(forward, arrays, batch_size))
    if pending is not None:
      yield pending[0], _gather(*pending[1])
    pending = launched
  if pending is not None:
    yield pending[0], _gather(*pending[1])


def _clock(seconds: float) -> str:
  minutes, s = divmod(int(round(seconds)), 60)
  hours, m = divmod(minutes, 60)
  return f"{hours}:{m:02d}:{s:02d}"


def _log_progress(done: int, total: int, seconds: float) -> None:
  rate = done / max(seconds, 1e-9)
  eta = (total - done) / rate if rate > 0 else 0.0
  logging.info(
    "predicted %d/%d texts (%.1f%%, %.0f texts/s, %s elapsed, ETA %s)",
    done,
    total,
    100.0 * done / max(total, 1),
    rate,
    _clock(seconds),
    _clock(max(eta, 0.0)),
  )


def _softmax(logits: np.ndarray) -> np.ndarray:
  z = logits.astype(np.float64) - logits.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def output_columns(classifier: Classifier, text_columns: list[str]) -> list[str]:
  """`line`, the text columns, then `label` and `prob_<class>` per class, or `score`."""
  outputs = ["label"] + [f"prob_{c}" for c in classifier.class_names] if classifier.class_names else ["score"]
  clash = [c for c in text_columns if c in ("line", *outputs)]
  if clash:
    raise ConfigError(
      f"the input's text column {clash[0]!r} has the name of an output column ({', '.join(['line', *outputs])}); "
      "rename it in the input file"
    )
  return ["line", *text_columns, *outputs]


def output_rows(classifier: Classifier, texts: dict[str, Any], text_columns: list[str], logits: np.ndarray):
  """Yields one dict per input row: {'line': int, text column: str, 'label': str, 'prob_<c>': float}
  (or 'score': float), from logits [N, C]."""
  round_ = lambda x: float(f"{x:.{_DIGITS}g}")
  if classifier.class_names:
    probs = _softmax(logits)
    pred = logits.argmax(-1)  # as `evaluate.to_predictions`
  for i, line in enumerate(texts["idx"]):
    row = {"line": int(line), **{c: texts[c][i] for c in text_columns}}
    if classifier.class_names:
      row["label"] = classifier.class_names[int(pred[i])]
      row.update({f"prob_{c}": round_(p) for c, p in zip(classifier.class_names, probs[i])})
    else:
      row["score"] = round_(logits[i, 0])
    yield row


def output_target(input_path: str, output: str, fmt: str) -> tuple[str, str]:
  """(the output path, 'csv' | 'jsonl') from --output and --format (module docstring)."""
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


def _check_arguments(batch_size, max_length, text_column: str, dtype: str, chunk_rows) -> None:
  """ConfigError for a flag that is invalid on its own."""
  if not isinstance(batch_size, int) or batch_size < 1:
    raise ConfigError(f"--batch_size={batch_size!r} must be an integer >= 1")
  if not isinstance(max_length, int) or max_length < 0 or 0 < max_length < 4:
    raise ConfigError(f"--max_length={max_length!r} is not valid; give 0 (the default) or at least 4 tokens")
  if not text_column:
    raise ConfigError("--text_column is empty; give the input's text column, e.g. --text_column=text")
  if dtype not in DTYPES:
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


def _task_spec(classifier: Classifier, text_columns: list[str]) -> tasks.TaskSpec:
  """The spec `loader.encode` needs for unlabelled rows of `text_columns`."""
  return tasks.TaskSpec(
    name="predict",
    text_columns=tuple(text_columns),
    label_column="",  # the rows carry none: `encode` gives labels -1
    num_labels=classifier.model.config.num_labels,
    label_names=classifier.class_names or None,
    is_regression=not classifier.class_names,
    main_metric="",
    metric_names=(),
    eval_splits=(),
    test_splits=(),
  )


def _prediction_rows(classifier: Classifier, predicted, text_columns: list[str], total: int, every: int):
  """The output rows of `predicted_chunks`, in input order, logging progress (texts/s and an ETA
  from the `total` rows counted by the first pass) after a chunk that completes `every`
  texts (0: only after the last)."""
  t0, done = time.perf_counter(), 0
  for cols, logits in predicted:
    yield from output_rows(classifier, cols, text_columns, logits)
    before, done = done, done + len(logits)
    if done >= total or (every > 0 and done // every > before // every):
      _log_progress(done, total, time.perf_counter() - t0)


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
  out_path, fmt = output_target(input_path, output, fmt)
  text_columns = [text_column] + ([text_pair_column] if text_pair_column else [])
  source = resolve_model(model, export)
  total = _count_input(input_path, text_columns)
  classifier = load_classifier(source.folder, source.run_max_length, compute_dtype(dtype, source))
  columns = output_columns(classifier, text_columns)
  length = max_length_for(classifier, max_length)
  t0 = time.perf_counter()
  chunks = _chunks(_input_rows(input_path, text_columns), chunk_rows, text_columns)
  predicted = predicted_chunks(classifier, chunks, _task_spec(classifier, text_columns), length, batch_size)
  write_rows(
    out_path, fmt, columns, _prediction_rows(classifier, predicted, text_columns, total, log_every * batch_size)
  )
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
    "format", "", ("",) + FORMATS, "Output format, csv or jsonl; '' = from --output's extension (csv when it is empty)."
  )
  flags.DEFINE_string("text_column", "text", "The input's text column (a .txt input's texts get this name).")
  flags.DEFINE_string("text_pair_column", "", "The input's second text column, for a pair task; '' = single texts.")
  flags.DEFINE_integer(
    "max_length",
    0,
    "Tokens per text (longer texts are truncated); 0 = the run's data.max_length when --model is a run "
    f"workdir or its export, else {DEFAULT_MAX_LENGTH}; at most the model's positions.",
  )
  flags.DEFINE_integer(
    "batch_size",
    64,
    "Texts per forward pass (texts of similar length batched together, each batch cut to its longest).",
  )
  flags.DEFINE_enum(
    "dtype",
    "",
    DTYPES,
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
