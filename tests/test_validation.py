"""Every invalid input a user can type or point at gets one clear sentence before anything
compiles (ConfigError in Python, exit code 2 on the command line, no traceback).

The cases below are also the table of docs/ERRORS.md: `test_errors_doc_is_current`
fails when the table and the messages drift apart; regenerate it with
  RAIL_KD_WRITE_ERRORS_DOC=1 python -m pytest tests/test_validation.py
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from rail_kd_jax.training import checkpoint as ckpt_lib
from rail_kd_jax.training import resume
from rail_kd_jax.training import train
from rail_kd_jax.data import synthetic
from rail_kd_jax.core.errors import ConfigError

import helpers
import test_data_hostile as hostile
import test_predict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, "docs", "ERRORS.md")

# (case id, overrides of the tiny distill config -- "{tmp}" is the fixture folder --, a
# substring the message must contain). Special ids: workdir_* set the workdir instead.
CASES = [
  ("mode", {"mode": "train"}, "mode='train'"),
  ("parallel", {"parallel": "vmap"}, "parallel='vmap'"),
  ("seed", {"seed": -1}, "seed=-1"),
  ("num_devices", {"num_devices": 16}, "num_devices=16"),
  ("batch_size", {"train.batch_size": 0}, "train.batch_size=0"),
  ("batch_devices", {"train.batch_size": 12, "num_devices": 8}, "divisible by the 8 devices"),
  ("no_steps", {"train.num_steps": 0, "train.num_epochs": 0.0}, "both 0"),
  ("grad_accum", {"train.grad_accum_steps": 3, "num_devices": 1}, "train.grad_accum_steps=3"),
  ("max_bad_steps", {"train.max_bad_steps": 0}, "train.max_bad_steps=0"),
  ("learning_rate", {"optim.learning_rate": -1e-3}, "optim.learning_rate=-0.001"),
  ("warmup_ratio", {"optim.warmup_ratio": 1.5}, "optim.warmup_ratio=1.5"),
  ("adam_b2", {"optim.b2": 1.0}, "optim.b2=1.0"),
  ("checkpoint_keep", {"checkpoint.keep": 0}, "checkpoint.keep=0"),
  ("checkpoint_every", {"checkpoint.every": -10}, "checkpoint.every=-10"),
  ("method", {"distill.method": "fitnets"}, "distill.method='fitnets'"),
  ("sampling", {"distill.sampling": "random"}, "distill.sampling='random'"),
  ("temperature", {"distill.temperature": 0.0}, "distill.temperature=0.0"),
  ("kd_alpha", {"distill.kd_alpha": 1.5}, "distill.kd_alpha=1.5"),
  ("fixed_layers", {"distill.sampling": "fixed", "distill.fixed_layers": (2, 9)}, "distill.fixed_layers"),
  ("projection", {"distill.projection": "shared"}, "distill.projection='shared'"),
  ("teacher_proj_renamed", {"distill.teacher_proj": "trainable"}, "replaced by distill.projection"),
  ("mse_both_maps", {"distill.projection": "both", "distill.distance": "mse"}, "exact zero"),
  ("infonce_tau", {"distill.infonce_tau": 0.0}, "distill.infonce_tau=0.0"),
  ("preset_conflict", {"distill.preset": "paper", "distill.temperature": 3.0}, "conflicts with distill.preset"),
  ("deeper_student", {"student.num_hidden_layers": 6}, "more layers"),
  ("heads", {"student.hidden_size": 30}, "not divisible"),
  ("dropout", {"student.dropout": 1.5}, "student.dropout=1.5"),
  ("teacher_path_empty", {"teacher.init": "pretrained", "teacher.path": ""}, "teacher.path is empty"),
  ("teacher_path_missing", {"teacher.init": "pretrained", "teacher.path": "/nonexistent/model"}, "does not exist"),
  ("teacher_path_no_config", {"teacher.init": "pretrained", "teacher.path": "{tmp}/empty"}, "no config.json"),
  ("teacher_path_no_weights", {"teacher.init": "pretrained", "teacher.path": "{tmp}/no_weights"}, "no weights"),
  (
    "teacher_path_bad_json",
    {"teacher.init": "pretrained", "teacher.path": "{tmp}/bad_json"},
    "not a readable JSON file",
  ),
  ("synthetic", {"data.synthetic": "huge"}, "data.synthetic='huge'"),
  ("train_file_missing", {"data.synthetic": "", "data.train_file": "{tmp}/missing.csv"}, "does not exist"),
  (
    "train_file_extension",
    {"data.synthetic": "", "data.train_file": "{tmp}/train.xlsx", "data.tokenizer": "{tmp}/tiny/tokenizer"},
    "unsupported extension",
  ),
  ("label_column", {"data.label_column": "sentiment"}, "sentiment"),
  ("max_length", {"data.max_length": 1}, "data.max_length=1"),
  ("unlabeled_finetune", {"mode": "finetune", "data.unlabeled_file": "{tmp}/unlabeled.txt"}, "only a teacher"),
  ("unlabeled_method_none", {"distill.method": "none", "data.unlabeled_file": "{tmp}/unlabeled.txt"}, "only a teacher"),
  ("unlabeled_missing", {"data.unlabeled_file": "{tmp}/missing.txt"}, "data.unlabeled_file"),
  ("unlabeled_no_text_column", {"data.unlabeled_file": "{tmp}/unlabeled_reviews.csv"}, "has no text column 'text'"),
  ("unlabeled_ratio", {"data.unlabeled_ratio": -1.0}, "data.unlabeled_ratio=-1.0"),
  ("tokenizer", {"data.tokenizer": "{tmp}/nope"}, "data.tokenizer"),
  ("workdir_is_file", {}, "is a file, not a folder"),
  ("workdir_uncreatable", {}, "cannot be created"),
  ("resume_changed_method", {"distill.method": "kd"}, "cannot be resumed"),
]
# Command-line cases: extra arguments after --config=configs/tiny.py --workdir=...
CLI_CASES = [
  ("cli_type", ["--config.train.batch_size=abc"], "--config.train.batch_size=abc"),
  ("cli_unknown_field", ["--config.train.batchsize=3"], "did you mean 'batch_size'"),
  ("cli_config_missing", ["--config=configs/nope.py"], "cannot be loaded"),
  ("cli_extra_argument", ["stray"], "unexpected arguments: stray"),
  ("cli_renamed_field", ["--config.distill.teacher_proj=none"], "replaced by --config.distill.projection"),
  (
    "cli_mse_both_maps",
    ["--config.mode=distill", "--config.distill.projection=both", "--config.distill.distance=mse"],
    "exact zero",
  ),
]
# Accepted but doubtful: the run starts and logs this one-sentence warning (docs/ERRORS.md).
WARNING_CASES = [
  ("both_maps_no_guard", {"distill.projection": "both"}, "has a trivial minimiser"),
  ("few_mappings", {"train.num_steps": 10}, "samples at most 1 distinct layer mapping(s) of the 6 possible"),
]


_TINY = {"mode": "distill", "data.bucket": False, "train.export": False, "train.plots": False}


def tiny_config(**overrides):
  return helpers.tiny_config(**{**_TINY, **overrides})


def _make_inputs(tmp):
  os.makedirs(os.path.join(tmp, "empty"))
  os.makedirs(os.path.join(tmp, "no_weights"))
  with open(os.path.join(tmp, "no_weights", "config.json"), "w") as f:
    json.dump({"model_type": "bert"}, f)
  os.makedirs(os.path.join(tmp, "bad_json"))
  with open(os.path.join(tmp, "bad_json", "config.json"), "w") as f:
    f.write("{not json")
  with open(os.path.join(tmp, "bad_json", "model.safetensors"), "wb") as f:
    f.write(b"")
  synthetic.make_tiny_dataset(os.path.join(tmp, "tiny"))
  with open(os.path.join(tmp, "train.xlsx"), "w") as f:
    f.write("text,label\n")
  with open(os.path.join(tmp, "a_file"), "w") as f:
    f.write("not a folder")
  with open(os.path.join(tmp, "unlabeled.txt"), "w") as f:
    f.write("a good fine film\n")
  with open(os.path.join(tmp, "unlabeled_reviews.csv"), "w") as f:
    f.write("review\na good fine film\n")


def _resume_workdir(tmp) -> str:
  """A workdir whose checkpoint was made by a rail_l run (its metadata is all that is read)."""
  wd = os.path.join(tmp, "resume")
  ck = ckpt_lib.Checkpointer(wd, keep=1)
  state = {"step": np.array(5, np.int32)}
  ck.save(5, state, {"config": resume.flat_config(tiny_config()), "steps_per_epoch": 32})
  ck.close()
  return wd


def _fill(value, tmp):
  return value.replace("{tmp}", tmp) if isinstance(value, str) else value


def _message_of(case_id, overrides, tmp) -> str:
  config = tiny_config(**{k: _fill(v, tmp) for k, v in overrides.items()})
  workdir = os.path.join(tmp, "runs", case_id)
  if case_id == "workdir_is_file":
    workdir = os.path.join(tmp, "a_file")
  elif case_id == "workdir_uncreatable":
    workdir = "/proc/rail_kd_jax/run"
  elif case_id == "resume_changed_method":
    workdir = _resume_workdir(tmp)
  with pytest.raises(ConfigError) as err:
    train.Trainer.create(config, workdir)
  return str(err.value)


def _cli_message(extra, tmp) -> tuple[int, str]:
  args = [a for a in extra if a.startswith("--config=")] or ["--config=configs/tiny.py"]
  cmd = [
    sys.executable,
    "-m",
    "rail_kd_jax.main",
    *args,
    f"--workdir={tmp}/cli",
    *[a for a in extra if not a.startswith("--config=")],
  ]
  proc = subprocess.run(
    cmd,
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
    env=dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1"),
  )
  assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
  lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
  assert len(lines) == 1, proc.stderr[-2000:]
  return proc.returncode, lines[0][len("error: ") :]


def _warnings_of(case_id, overrides, tmp) -> list[str]:
  import logging  # pylint: disable=g-import-not-at-top

  records = []

  class Keep(logging.Handler):
    def emit(self, record):
      if record.levelno == logging.WARNING:
        records.append(record.getMessage())

  handler = Keep()
  logging.getLogger().addHandler(handler)
  try:
    train.Trainer.create(tiny_config(**overrides, **{"checkpoint.enabled": False}), os.path.join(tmp, "warn", case_id))
  finally:
    logging.getLogger().removeHandler(handler)
  return records


@pytest.fixture(scope="module")
def warnings_seen(tmp_path_factory):
  tmp = str(tmp_path_factory.mktemp("warn"))
  return {case_id: _warnings_of(case_id, overrides, tmp) for case_id, overrides, _ in WARNING_CASES}


@pytest.mark.parametrize("case_id, needle", [(c, n) for c, _, n in WARNING_CASES])
def test_doubtful_combinations_warn_in_one_sentence(warnings_seen, case_id, needle):
  hits = [w for w in warnings_seen[case_id] if needle in w]
  assert len(hits) == 1, warnings_seen[case_id]
  assert "\n" not in hits[0] and len(hits[0]) < 400


@pytest.fixture(scope="module")
def messages(tmp_path_factory):
  tmp = str(tmp_path_factory.mktemp("inputs"))
  _make_inputs(tmp)
  out = {}
  for case_id, overrides, _ in CASES:
    out[case_id] = _message_of(case_id, overrides, tmp).replace(tmp, "<tmp>")
  for case_id, extra, _ in CLI_CASES:
    code, message = _cli_message(extra, tmp)
    assert code == 2, (case_id, code, message)
    out[case_id] = message.replace(tmp, "<tmp>")
  return out


@pytest.mark.parametrize("case_id, needle", [(c, n) for c, _, n in CASES + CLI_CASES])
def test_one_clear_sentence(messages, case_id, needle):
  message = messages[case_id]
  assert needle in message, message
  assert "\n" not in message and "Traceback" not in message
  assert len(message) < 400, message


def test_cli_config_error_exits_2_without_traceback(tmp_path):
  code, message = _cli_message(["--config.distill.method=fitnets", "--config.mode=distill"], str(tmp_path))
  assert code == 2 and "distill.method='fitnets'" in message


def _input_text(case_id, spec) -> str:
  if case_id == "workdir_is_file":
    return "`--workdir=<a file>`"
  if case_id == "workdir_uncreatable":
    return "`--workdir=/proc/rail_kd_jax/run`"
  if case_id == "resume_changed_method":
    return "`--config.distill.method=kd` on a workdir checkpointed by a `rail_l` run"
  if isinstance(spec, list):
    return " ".join(f"`{a}`" for a in spec)
  return " ".join(f"`--config.{k}={v if v != '' else repr(v)}`" for k, v in spec.items()).replace("{tmp}", "<tmp>")


@pytest.fixture(scope="module")
def predict_messages(tmp_path_factory):
  return test_predict.error_messages(str(tmp_path_factory.mktemp("predict")))


@pytest.fixture(scope="module")
def data_outcomes(tmp_path_factory):
  tmp = str(tmp_path_factory.mktemp("data"))
  return {case.id: hostile.outcome(case, tmp) for case in hostile.CASES}


def render_doc(messages, warnings_seen, data_outcomes, predict_messages) -> str:
  rows = ["| # | input | message |", "|---|---|---|"]
  for i, (case_id, spec, _) in enumerate(CASES + CLI_CASES, 1):
    message = messages[case_id].replace("|", "\\|")
    rows.append(f"| {i} | {_input_text(case_id, spec)} | {message} |")
  warn_rows = ["| input | warning |", "|---|---|"]
  for case_id, spec, needle in WARNING_CASES:
    (line,) = [w for w in warnings_seen[case_id] if needle in w]
    warn_rows.append(f"| {_input_text(case_id, spec)} | {line.replace('|', chr(92) + '|')} |")
  predict_rows = ["| input | message |", "|---|---|"]
  for case_id, shown, _, _ in test_predict.ERROR_CASES:
    predict_rows.append(f"| {shown} | {predict_messages[case_id].replace('|', chr(92) + '|')} |")
  data_rows = ["| case | file | result |", "|---|---|---|"]
  for case in hostile.CASES:
    data_rows.append(f"| `{case.id}` | {case.input} | {data_outcomes[case.id].replace('|', chr(92) + '|')} |")
  return "\n".join(
    [
      "# Errors a user can get, and their messages",
      "",
      "Every input below stops the run before anything compiles with one sentence that names",
      "the field, the value and what would be valid. On the command line it is printed as",
      "`error: <message>` and the exit code is 2; the traceback is shown only with",
      "`--verbosity=1`. In Python it is a `rail_kd_jax.core.errors.ConfigError`.",
      "",
      "Other exit codes: 0 when the run finished, or was stopped by SIGTERM/Ctrl-C after saving",
      "a checkpoint (`preempted: ...`; run the same command again to resume, see",
      "docs/CHECKPOINTS.md); 1 when training diverged (`train.max_bad_steps` consecutive",
      "non-finite steps; the message names the loss terms) or on an unexpected error.",
      "",
      "The table is generated from the cases of `tests/test_validation.py`, which checks every",
      "one of them (`<tmp>` is the test's scratch folder); regenerate it with",
      "`RAIL_KD_WRITE_ERRORS_DOC=1 python -m pytest tests/test_validation.py`.",
      "",
      *rows,
      "",
      "## Warnings",
      "",
      "These combinations are accepted (they have a use) but the run logs one warning line at",
      "the start (checked by `test_doubtful_combinations_warn_in_one_sentence`). During training,",
      "a collapse of the intermediate term is reported the same way (`collapse: ...`,",
      'docs/METHODS.md, "Collapse").',
      "",
      *warn_rows,
      "",
      "## Data files",
      "",
      "`tasks.load_task` reads every file of a task before anything is tokenized. Each hostile file of",
      "`tests/test_data_hostile.py` (checked there) gives one of: an error (a `ConfigError` from the",
      "trainer, exit code 2 on the command line), one warning that counts the rows it skipped or kept, or",
      'the rows it loads. The rules are in docs/DATA.md, "Encodings, empty cells and labels".',
      "",
      *data_rows,
      "",
      "## The study",
      "",
      "`configs/study.py` checks every grid point before anything trains (cases of",
      "`tests/test_study.py`; docs/STUDY.md):",
      "",
      "| input | message |",
      "|---|---|",
      "| `--config.study.grid='{not json'` | study.grid is neither one of default, runlocal nor a JSON object "
      "{method: [{field: value}, ...]} (...) |",
      "| `--config.study.grid='{\"kd\": [{\"temprature\": 2.0}]}'` | study.grid['kd'] point {'temprature': 2.0} "
      "sets 'temprature', which is not a distill field the grid may set (see distill_config in rail_kd_jax/core/defaults.py) |",
      "| `--config.study.grid='{\"kd\": []}'` | study.grid['kd'] must be a non-empty list of {field: value} "
      "objects, got [] |",
      '| `--config.study.grid=\'{"kd": [{"temperature": 2.0}]}\'` | study.grid gives the methods unequal numbers '
      "of points {...}; every method with a design space gets the same number (equal freedom, docs/STUDY.md) |",
      "| `--config.study.tune_seeds='(0, 100)'` | study.tune_seeds=[0, 100] and study.seeds=[0, 1, 2, 3, 4] share "
      "[0]; a seed that selects a point is never reported (docs/STUDY.md), so keep them apart |",
      "| `--config=configs/study.py:local/mine` without `mine/test.csv` | study.local_dir='mine' has no test file: "
      "the study needs train, dev and a labelled test file (test{.csv,.tsv,.jsonl}) |",
      "| `--config.study.ood=/data/no_such.csv` | study.ood='/data/no_such.csv': no such file (give a labelled "
      "CSV/TSV/JSONL with the task's columns, 'tweets', or '' for no out-of-domain split) |",
      "| `--config.distill.ckd_granularity=token` | study.methods has 'ckd' at grid point 'paper', which the "
      "teacher cache cannot serve: ... |",
      "| `--config=configs/study.py:glue/sst2` without `study.teacher_path` | study.task='glue' needs "
      "study.teacher_path: a BERT-base (12-layer) Hugging Face folder, e.g. "
      "--config.study.teacher_path=/models/bert-base-uncased |",
      "| `--config=configs/study.py:glue/stsb` with `study.teacher_path` and `data.data_dir` set | GLUE task 'stsb' is a regression task; the study compares "
      "accuracies, so give a classification task (e.g. sst2, mnli, qnli, rte, mrpc) |",
      "",
      "## Disks, workdirs and the teacher cache",
      "",
      "A write that fails (a full disk, a quota, an I/O error) stops the run with one sentence",
      "(`rail_kd_jax.core.errors.StorageError`, a `ConfigError`: exit code 2) and leaves the previous",
      "file or folder in place, except a checkpoint, whose failure only warns (training goes on;",
      "docs/CHECKPOINTS.md). A second run on a busy workdir is refused. A damaged teacher cache is",
      "moved aside and rebuilt with a warning. Checked by `tests/test_checkpoint.py`,",
      "`tests/test_storage_faults.py`, `tests/test_teacher_cache.py`, `tests/test_workdir_lock.py`",
      "and `tests/test_resume_cli.py`:",
      "",
      "| situation | kind | message |",
      "|---|---|---|",
      "| a second `main` on a workdir in use | error | --workdir='<wd>' is in use by another run (pid N on <host>, "
      "started <time>); wait for it to end, stop it, or choose another --workdir |",
      "| the lock of a run killed -9 | warning | <wd>/.run.lock: the previous run (pid N on <host>, started <time>) "
      "ended without releasing its lock (killed?); taking it over |",
      "| a checkpoint write fails | warning | checkpoint at step 15 could not be written (OSError: [Errno 28] No "
      "space left on device); training continues, and the newest complete checkpoint (step 10) is intact |",
      "| `metrics.jsonl` cannot be appended | error | could not append to '<wd>/metrics.jsonl' at step N (OSError: "
      "[Errno 28] No space left on device); free space and run the same command again: it resumes from the newest "
      "checkpoint |",
      "| an export fails | error | the export to '<wd>/export/student' could not be written (No space left on device "
      "(ENOSPC) writing model.safetensors); the partial folder was removed and a previous export there, if any, is "
      "unchanged, so free space there and rerun |",
      "| building the teacher cache fails | error | teacher cache '<dir>' could not be written (No space left on device "
      "(ENOSPC) writing teacher_pooled.npy); the partial files were removed and nothing was cached, so free space "
      "there or set data.cache_dir to another disk and rerun |",
      "| a teacher cache file is truncated | warning | teacher cache file '<dir>/teacher_pooled.npy' is N bytes, "
      "expected M (truncated?); moving the cache aside to '<root>/corrupt/teacher-<key>-<time>' and rebuilding it |",
      "| a teacher cache file's bytes changed | warning | teacher cache file '<file>' has the recorded size but "
      "sha256 <12 hex>..., expected <12 hex>... (bytes altered); moving the cache aside to ... and rebuilding it |",
      "| a teacher cache file is missing or unreadable | warning | teacher cache file '<file>' is missing (or: cannot "
      "be read (<error>), or meta.json is not valid JSON (truncated?)); moving the cache aside to ... and "
      "rebuilding it |",
      "| a damaged cache cannot be moved aside | error | teacher cache '<dir>' is unusable (<problem>) and cannot be "
      "moved aside to '<aside>' (<cause>); move or delete it and rerun |",
      "",
      "## Applying a model",
      "",
      '`python -m rail_kd_jax.predict` (docs/DATA.md, "Applying a model to new text") checks its model',
      "folder and input before anything compiles; each case of `tests/test_predict.py` (checked there)",
      "gets one sentence (`error: ...` on stderr, exit code 2; a `ConfigError` in Python). The other",
      "flags are the defaults: `--model=<tmp>/classifier` (an export), `--input=<tmp>/texts.csv`.",
      "",
      *predict_rows,
      "",
    ]
  )


def test_errors_doc_is_current(messages, warnings_seen, data_outcomes, predict_messages):
  text = render_doc(messages, warnings_seen, data_outcomes, predict_messages)
  if os.environ.get("RAIL_KD_WRITE_ERRORS_DOC"):
    with open(DOC, "w") as f:
      f.write(text)
  assert os.path.isfile(DOC), "docs/ERRORS.md is missing; regenerate it (see this module's docstring)"
  with open(DOC) as f:
    current = f.read()
  assert current == text, "docs/ERRORS.md is out of date; regenerate it (see this module's docstring)"
  assert len(CASES) + len(CLI_CASES) >= 15
  assert len(re.findall(r"^\| \d+ \|", current, flags=re.M)) == len(CASES) + len(CLI_CASES)
