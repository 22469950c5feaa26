"""The model card: README.md of an export folder, with Hugging Face metadata and the run's facts.

`card(run, metrics, ...)` gathers what it reads from disk (the data files' sizes and sha256,
the origin checkpoint's folder) and calls `render`, a pure function of those facts. The facts
come from `run.config`, the config the run wrote to its workdir's config.json (presets applied).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
from typing import Any

from rail_kd_jax import models
from rail_kd_jax.core import checks, defaults, files
from rail_kd_jax.core.errors import ConfigError
from rail_kd_jax.data import tasks
from rail_kd_jax.distill import methods as methods_lib

FILE_NAME = "README.md"
GLUE_DATASET = "nyu-mll/glue"  # the GLUE dataset's id on the Hugging Face hub


@dataclasses.dataclass(frozen=True)
class DataFile:
  """One data file a run read: its split, path, size in bytes and sha256 (None when the source
  is not a local file, e.g. a hub dataset, or it can no longer be read)."""

  split: str
  path: str
  size: int | None
  sha256: str | None


def data_files(sources: dict[str, str]) -> list[DataFile]:
  """The files of `sources` ({split: path}, `builders.Run.data_sources`) with size and sha256."""
  out, digests = [], {}
  for split, path in sources.items():
    if path not in digests:
      try:
        digests[path] = (os.path.getsize(path), files.sha256(path)) if os.path.isfile(path) else (None, None)
      except OSError:
        digests[path] = (None, None)
    out.append(DataFile(split, path, *digests[path]))
  return out


def origin(mcfg) -> tuple[str, str]:
  """(folder, the `_name_or_path` its config.json names or '') of a pretrained model block;
  ('', '') for a fresh model or a folder that cannot be read."""
  if mcfg.init != "pretrained" or not mcfg.path:
    return "", ""
  try:
    folder = checks.model_folder("path", mcfg.path)
    with open(os.path.join(folder, "config.json")) as f:
      name = json.load(f).get("_name_or_path", "")
  except (ConfigError, OSError, ValueError):
    return "", ""
  return os.path.abspath(folder), name if isinstance(name, str) else ""


def card(run, metrics: dict, *, command: tuple[str, ...] = (), cwd: str = "", workdir: str = "") -> str:
  """The card of `run` (a `builders.Run`) after training: `render` with the facts read from disk."""
  config = run.config
  distill = config.mode == "distill"
  origins = {"teacher": origin(config.teacher)} if distill else {}
  trained = config.student if distill else config.model
  origins["student" if distill else "model"] = origin(trained)
  return render(run, metrics, data_files(run.data_sources), origins, command=command, cwd=cwd, workdir=workdir)


def render(run, metrics: dict, data: list[DataFile], origins: dict, *, command=(), cwd="", workdir="") -> str:
  """The README.md text: YAML metadata between `---` lines, then the model, its training, its
  data, its final metrics per split and how to rerun it.

  Args:
    run: a `builders.Run` (its config, task spec, models and schedule).
    metrics: {split: {metric: value}} at the last step (`Trainer` evaluation).
    data: `data_files(run.data_sources)`.
    origins: {'teacher' | 'student' | 'model': `origin(...)`} of the pretrained blocks.
    command: the process's argv; cwd: its working folder; workdir: the run's workdir.
  """
  parts = [
    "---\n" + _yaml(metadata(run, origins)) + "---",
    _about(run, origins),
    _training(run),
    _data_section(run, data),
    _metrics_section(run, metrics),
    _rerun(run, command, cwd, workdir),
  ]
  return "\n\n".join(p for p in parts if p) + "\n"


def base_model(run, origins: dict) -> str:
  """The folder the trained weights started from ('' for a fresh model): the model's or the
  student's own, or the teacher's when the student copies teacher layers."""
  config = run.config
  if config.mode != "distill":
    return origins.get("model", ("", ""))[0]
  if config.student.init == "teacher_layers":
    return origins.get("teacher", ("", ""))[0]
  return origins.get("student", ("", ""))[0]


def metadata(run, origins: dict) -> dict:
  """The card's Hugging Face metadata (only the fields whose value is known)."""
  config, spec = run.config, run.task_spec
  meta = {"library_name": "transformers", "pipeline_tag": "text-classification"}
  base = base_model(run, origins)
  if base:
    meta["base_model"] = base
  if spec.name in tasks.GLUE_TASKS:
    meta["datasets"] = [GLUE_DATASET]
  meta["metrics"] = list(spec.metric_names)
  tags = ["rail_kd_jax", "regression" if spec.is_regression else "classification"]
  if config.mode == "distill":
    tags += ["knowledge-distillation", config.distill.method]
  if spec.name in tasks.GLUE_TASKS:
    tags += ["glue", spec.name]
  meta["tags"] = tags
  return meta


_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]*")


def _yaml(meta: dict) -> str:
  """`meta` ({key: str | [str]}) as YAML; a string that is not a plain word is quoted."""
  scalar = lambda s: s if _PLAIN.fullmatch(s) and s not in ("true", "false", "null") else json.dumps(s)
  lines = []
  for key, value in meta.items():
    if isinstance(value, list):
      lines += [f"{key}:"] + [f"- {scalar(str(v))}" for v in value]
    else:
      lines.append(f"{key}: {scalar(str(value))}")
  return "\n".join(lines) + "\n"


def _describe(model, mcfg, where: tuple[str, str]) -> str:
  """'bert, 4 layers, 32 wide, 12,345 parameters; from <folder> (...)' for one encoder."""
  c = model.config
  text = f"{c.model_type}, {c.num_hidden_layers} layers, {c.hidden_size} wide"
  if mcfg.init == "pretrained":
    folder, name = where
    text += f"; loaded from `{folder or mcfg.path}`"
    if name:
      text += f" (its config.json's `_name_or_path`: `{name}`)"
  elif mcfg.init == "teacher_layers":
    kept = ", ".join(str(int(x)) for x in mcfg.teacher_layers)
    text += f"; the teacher's embeddings and its layers {kept} (0-based) copied (`init=teacher_layers`)"
  else:
    text += "; randomly initialised (`init=fresh`)"
  return text


def _about(run, origins: dict) -> str:
  config, spec = run.config, run.task_spec
  title = f"student distilled with {config.distill.method}" if config.mode == "distill" else "fine-tuned model"
  head = "one output, a regression score" if spec.is_regression else f"{spec.num_labels} classes"
  labels = f": {', '.join(spec.label_names)}" if spec.label_names else ""
  lines = [
    f"# {title} (task {spec.name})",
    "",
    f"A sequence classifier ({head}{labels}) in the Hugging Face transformers format, trained with "
    f"rail_kd_jax (JAX/Flax) and exported with its tokenizer.",
    "",
  ]
  if config.mode == "distill":
    method = config.distill.method
    lines += [
      "- **mode**: distill",
      f"- **method**: `{method}`, {methods_lib.METHODS[method].title}",
      f"- **teacher** (frozen): {_describe(run.teacher, config.teacher, origins.get('teacher', ('', '')))}",
      f"- **student** (this model): {_describe(run.student, config.student, origins.get('student', ('', '')))}",
    ]
  else:
    lines += [
      "- **mode**: finetune (cross-entropy only, no teacher)",
      f"- **model**: {_describe(run.student, config.model, origins.get('model', ('', '')))}",
    ]
  lines.append(f"- **parameters**: {models.param_count(run.student_params):,}")
  return "\n".join(lines)


def _training(run) -> str:
  config = run.config
  mcfg = config.student if config.mode == "distill" else config.model
  t, o = config.train, config.optim
  epochs = run.total_steps / max(run.steps_per_epoch, 1)
  lines = [
    "## Training",
    "",
    f"- {run.total_steps} steps ({epochs:.2f} epochs of {run.steps_per_epoch} steps), global batch {t.batch_size}"
    + (f", {t.grad_accum_steps} micro-batches per step" if int(t.grad_accum_steps) > 1 else ""),
    f"- AdamW: learning rate {o.learning_rate:g}, weight decay {o.weight_decay:g}, clip norm {o.clip_norm:g}, "
    + (f"{o.warmup_steps} warmup steps" if int(o.warmup_steps) >= 0 else f"warmup ratio {o.warmup_ratio:g}"),
    f"- seed {config.seed}; compute dtype {mcfg.dtype}, parameters and exported weights float32",
    f"- texts cut to {config.data.max_length} tokens",
  ]
  if config.mode == "distill":
    lines += ["", _options(config.distill)]
  return "\n".join(lines)


def _options(dcfg) -> str:
  """The whole `distill` block, each field off its default marked with the default."""
  default = defaults.distill_config()
  lines = [
    "The run's whole `distill` block (each method reads its own fields, docs/METHODS.md; "
    f"the pooling in effect is `{methods_lib.pooling_of(dcfg)}`):",
    "",
    "```yaml",
  ]
  for key in sorted(dcfg.keys()):
    value, was = dcfg[key], default.get(key)
    note = f"  # default: {_value(was)}" if key in default and _value(was) != _value(value) else ""
    lines.append(f"{key}: {_value(value)}{note}")
  lines.append("```")
  return "\n".join(lines)


def _value(v: Any) -> str:
  """A config value as YAML shows it: 0.333333, "text", [1, 3], true."""
  if isinstance(v, bool):
    return "true" if v else "false"
  if isinstance(v, float):
    return f"{v:g}"
  if isinstance(v, (tuple, list)):
    return "[" + ", ".join(_value(x) for x in v) + "]"
  return json.dumps(v) if isinstance(v, str) else str(v)


def _data_section(run, data: list[DataFile]) -> str:
  dcfg = run.config.data
  lines = ["## Data", ""]
  if dcfg.synthetic:
    lines += [f"Generated by rail_kd_jax (`data.synthetic='{dcfg.synthetic}'`) in the run's workdir.", ""]
  limits = [f"{f}={int(dcfg[f])}" for f in ("max_train_examples", "max_eval_examples") if int(dcfg[f]) > 0]
  if limits:
    lines += [f"Only the first rows of each file were used (`data.{', data.'.join(limits)}`).", ""]
  lines += ["| split | file | bytes | sha256 |", "|---|---|---|---|"]
  for d in data:
    size = "" if d.size is None else str(d.size)
    lines.append(f"| {d.split} | `{d.path}` | {size} | {d.sha256 or 'not a local file'} |")
  return "\n".join(lines)


def _metrics_section(run, metrics: dict) -> str:
  spec = run.task_spec
  splits = [s for s, res in metrics.items() if isinstance(res, dict)]
  if not splits:
    return ""
  names = list(spec.metric_names)
  lines = [
    "## Evaluation",
    "",
    f"Measured at the last step ({run.total_steps}), whose weights are the ones exported here; the "
    f"task's main metric is `{spec.main_metric}`.",
    "",
    "| split | examples | " + " | ".join(names) + " |",
    "|---|---|" + "---|" * len(names),
  ]
  for split in splits:
    n = len(run.arrays[split]["labels"]) if split in run.arrays else ""
    cells = [f"{float(metrics[split][m]):.4f}" if m in metrics[split] else "" for m in names]
    lines.append(f"| {split} | {n} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _is_main(program: str) -> bool:
  """True for the path of rail_kd_jax/main.py (sys.argv[0] under `python -m rail_kd_jax.main`)."""
  return os.path.basename(program) == "main.py" and os.path.basename(os.path.dirname(program)) == "rail_kd_jax"


def _flag_value(args: list[str], flag: str) -> str:
  """The value of `flag` in `args` ('--flag=v' or '--flag v'); '' when absent."""
  for i, arg in enumerate(args):
    if arg.startswith(flag + "="):
      return arg.split("=", 1)[1]
    if arg == flag and i + 1 < len(args):
      return args[i + 1]
  return ""


def _cli_command(command, cwd: str, workdir: str) -> list[str]:
  """How the process was started, when it was `python -m rail_kd_jax.main`; [] otherwise."""
  if not command or not _is_main(command[0]):
    return []
  args = list(command[1:])
  where = f", run in `{cwd}`" if cwd else ""
  lines = [
    f"It was trained by this command{where}:",
    "",
    "```bash",
    "python -m rail_kd_jax.main " + shlex.join(args),
    "```",
  ]
  given = _flag_value(args, "--workdir")
  if given and workdir and os.path.abspath(os.path.join(cwd, given)) != os.path.abspath(workdir):
    lines += ["", f"That command runs several stages; this model is the one trained in `{workdir}`."]
  return lines


def _rerun(run, command, cwd: str, workdir: str) -> str:
  config = run.config
  lines = ["## Reproducing it", ""]
  cli = _cli_command(tuple(command), cwd, workdir)
  if cli:
    lines += cli + [""]
  else:
    where = f" (`{command[0]}`)" if command else ""
    lines += [f"It was trained from Python{where}, not by `python -m rail_kd_jax.main`.", ""]
  where = f"`{os.path.join(workdir, 'config.json')}`" if workdir else "the run's `config.json`"
  lines += [
    f"{where} holds the whole config that ran. `python -m rail_kd_jax.main` reads a Python config "
    "file (`--config=configs/<name>.py`), not that JSON; the fields that differ from "
    f"`rail_kd_jax/core/defaults.py` (the `{config.mode}` mode's sections) are:",
    "",
    "```yaml",
    *[f"{k}: {v}" for k, v in _changed(config)],
    "```",
    "",
    "A rerun must read the same data files (their sha256 are above) and the same starting checkpoints.",
  ]
  return "\n".join(lines)


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


# The sections a mode does not read (left out of the fields listed as changed).
_UNUSED = {"distill": ("model.",), "finetune": ("teacher.", "student.", "distill.")}


def _changed(config) -> list[tuple[str, str]]:
  """[(dotted field, value)] of `config` where it differs from `defaults.base_config()`, the
  sections its mode does not read left out."""
  ran, base = _flat(config.to_dict()), _flat(defaults.base_config().to_dict())
  unused = _UNUSED.get(config.mode, ())
  return [
    (k, _value(v))
    for k, v in sorted(ran.items())
    if not k.startswith(unused) and (k not in base or _value(base[k]) != _value(v))
  ]
