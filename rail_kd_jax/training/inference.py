"""An exported classifier applied to texts: finding it (`--model`), loading it, running it chunk by chunk.

`resolve_model` turns `python -m rail_kd_jax.predict`'s `--model` (and `--export`) into the
export folder and what the run that wrote it says (its data.max_length and compute dtype);
`load_classifier` loads the config, weights with their task head, and tokenizer; and
`predicted_chunks` runs the jitted deterministic forward (`make_forward`) over column dicts of
texts, chunk by chunk, returning float32 logits in row order.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from rail_kd_jax import models
from rail_kd_jax.core import checks
from rail_kd_jax.core.errors import ConfigError
from rail_kd_jax.data import loader, tasks, tokenize
from rail_kd_jax.models import convert

DTYPES = ("", "float32", "bfloat16")  # '' = the run's compute dtype, float32 when it is not known
DEFAULT_MAX_LENGTH = 128  # tokens, when the model folder does not belong to a run workdir
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


def task_spec(classifier: Classifier, text_columns: list[str]) -> tasks.TaskSpec:
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
