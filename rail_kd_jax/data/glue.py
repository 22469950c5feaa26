"""GLUE's data: a task's folder of TSV files, or the local Hugging Face cache when no folder is given."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Mapping

from absl import logging

from rail_kd_jax.data import labels, readers
from rail_kd_jax.data.spec import TRAIN, Task, TaskSpec


@dataclasses.dataclass(frozen=True)
class _GlueLayout:
  """Where a GLUE task's data lives: its TSV files, their columns, and the HF dataset."""

  folder: str  # GLUE's folder name, e.g. 'SST-2'.
  files: Mapping[str, str]  # split -> file name inside the folder.
  no_header_columns: tuple[str, ...] | None = None  # train/dev files without a header (CoLA).
  optional_files: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
  hf_columns: Mapping[str, str] = dataclasses.field(default_factory=dict)  # HF name -> TSV name.


_STD = {TRAIN: "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}

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


def _glue_folder(data_dir: str, layout: _GlueLayout) -> str:
  if os.path.isfile(os.path.join(data_dir, layout.files[TRAIN])):
    return data_dir
  nested = os.path.join(data_dir, layout.folder)
  if os.path.isfile(os.path.join(nested, layout.files[TRAIN])):
    return nested  # data_dir is the parent glue/ folder.
  return data_dir


def load_glue_tsv(spec: TaskSpec, data_dir: str, data_cfg) -> Task:
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
    header, rows, lines = readers.read_table(path, no_header_columns=no_header)
    # A test file that carries labels (not GLUE's own) is scored as well as predicted.
    labelled = labelled or (split != "ax" and labels.has_labels(header, rows, spec.label_column))
    splits[split] = labels.columns_from_rows(header, rows, lines, spec, path, labelled, split)
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


def load_glue_hf(spec: TaskSpec) -> Task:
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
    labelled = split not in spec.test_splits or labels.has_labels(header, rows, spec.label_column, hf=True)
    splits[split] = labels.columns_from_rows(
      header, rows, None, spec, f"hf:glue/{spec.name}/{hf_split}", labelled, split
    )
    sources[split] = f"hf:glue/{spec.name}/{hf_split}"
  return Task(spec, splits, sources)
