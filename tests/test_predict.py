"""`python -m rail_kd_jax.predict`: a trained model applied to new text predicts what the run's
own evaluation predicts, and every bad model folder or input gets one sentence.

ERROR_CASES is also the "Applying a model" table of docs/ERRORS.md (rendered by
tests/test_validation.py).
"""

import csv
import json
import os
import stat
import subprocess
import sys

import jax
import pytest
from safetensors.numpy import load_file, save_file

from rail_kd_jax import models, predict, train
from rail_kd_jax.data import synthetic, tokenize
from rail_kd_jax.errors import ConfigError

import helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = (
  "model",
  "input",
  "output",
  "format",
  "text_column",
  "text_pair_column",
  "max_length",
  "batch_size",
  "log_every",
)

# (case id, the input as docs/ERRORS.md shows it, `predict_file` arguments over the defaults
# model={tmp}/classifier, input={tmp}/texts.csv -- "{tmp}" is the scratch folder --, a
# substring the message must contain).
ERROR_CASES = [
  ("not_a_model", "`--model=<tmp>/empty` (no config.json, no export/)", {"model": "{tmp}/empty"}, "neither a model"),
  ("bare_encoder", "`--model=<tmp>/bare` (an encoder without a task head)", {"model": "{tmp}/bare"}, "bare encoder"),
  (
    "no_head_weights",
    "`--model=<tmp>/headless` (a classifier's config.json, weights without `classifier.*`)",
    {"model": "{tmp}/headless"},
    "without its classifier head",
  ),
  (
    "no_weights",
    "`--model=<tmp>/no_weights` (a config.json, no weights)",
    {"model": "{tmp}/no_weights"},
    "no weights",
  ),
  (
    "two_exports",
    "`--model=<tmp>/two` (a workdir with export/model and export/student)",
    {"model": "{tmp}/two"},
    "2 exports",
  ),
  (
    "unfinished_run",
    "`--model=<tmp>/unfinished` (a run's workdir without export/)",
    {"model": "{tmp}/unfinished"},
    "without an exported model",
  ),
  (
    "no_text_column",
    "`--input=<tmp>/reviews.csv` (columns review, label)",
    {"input_path": "{tmp}/reviews.csv"},
    "has no text column 'text'",
  ),
  ("input_missing", "`--input=<tmp>/nope.csv`", {"input_path": "{tmp}/nope.csv"}, "does not exist"),
  (
    "pairs_from_txt",
    "`--input=<tmp>/texts.txt` `--text_pair_column=sentence2`",
    {"input_path": "{tmp}/texts.txt", "text_pair_column": "sentence2"},
    "plain text",
  ),
  ("input_extension", "`--input=<tmp>/texts.xlsx`", {"input_path": "{tmp}/texts.xlsx"}, "unsupported extension"),
  ("output_extension", "`--output=<tmp>/out.tsv`", {"output": "{tmp}/out.tsv"}, "neither .csv nor .jsonl"),
  ("max_length", "`--max_length=2`", {"max_length": 2}, "--max_length=2"),
]


def _tiny_encoder(num_labels: int, seed: int = 0):
  config = models.EncoderConfig(
    model_type="bert",
    vocab_size=88,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    num_labels=num_labels,
  )
  return models.student.fresh(config, jax.random.PRNGKey(seed))


def _export(folder: str, tokenizer, num_labels: int = 2) -> str:
  """A fresh 2-layer model saved as a Hugging Face folder with the tiny tokenizer."""
  model, params = _tiny_encoder(num_labels)
  return models.save_pretrained(model, params, folder, tokenizer=tokenizer)


def _write(path: str, text: str) -> str:
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)
  return path


def make_error_inputs(tmp: str) -> None:
  """The folders and files ERROR_CASES point at."""
  tiny = synthetic.make_tiny_dataset(os.path.join(tmp, "tiny"), num_train=32, num_eval=8)
  tok = tokenize.load_tokenizer(tiny.tokenizer_dir)
  _export(os.path.join(tmp, "classifier"), tok)
  _export(os.path.join(tmp, "bare"), tok, num_labels=0)
  headless = _export(os.path.join(tmp, "headless"), tok)
  weights = os.path.join(headless, "model.safetensors")
  save_file({k: v for k, v in load_file(weights).items() if not k.startswith("classifier.")}, weights)
  os.makedirs(os.path.join(tmp, "empty"))
  os.makedirs(os.path.join(tmp, "no_weights"))
  _write(os.path.join(tmp, "no_weights", "config.json"), json.dumps({"model_type": "bert"}))
  for name in ("model", "student"):
    _export(os.path.join(tmp, "two", "export", name), tok)
  os.makedirs(os.path.join(tmp, "unfinished"))
  _write(os.path.join(tmp, "unfinished", "config.json"), json.dumps({"mode": "finetune", "data": {"max_length": 32}}))
  _write(os.path.join(tmp, "texts.csv"), "text\ngood film\nbad film\n")
  _write(os.path.join(tmp, "reviews.csv"), "review,label\ngood film,1\n")
  _write(os.path.join(tmp, "texts.txt"), "good film\nbad film\n")
  _write(os.path.join(tmp, "texts.xlsx"), "text\ngood film\n")


def error_messages(tmp: str) -> dict:
  """{case id: the message of its ConfigError}, the scratch folder shown as <tmp>."""
  make_error_inputs(tmp)
  out = {}
  for case_id, _, overrides, _ in ERROR_CASES:
    kw = {"model": "{tmp}/classifier", "input_path": "{tmp}/texts.csv", **overrides}
    kw = {k: v.replace("{tmp}", tmp) if isinstance(v, str) else v for k, v in kw.items()}
    with pytest.raises(ConfigError) as err:
      predict.predict_file(**kw)
    out[case_id] = str(err.value).replace(tmp, "<tmp>")
  return out


def _cli(*args):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", HF_HUB_OFFLINE="1")
  cmd = [sys.executable, "-m", "rail_kd_jax.predict", *args]
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _read(path: str) -> list[dict]:
  if path.endswith(".jsonl"):
    with open(path, encoding="utf-8") as f:
      return [json.loads(line) for line in f]
  with open(path, encoding="utf-8", newline="") as f:
    return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A tiny finetune run: export/model, and predictions/local-test.tsv written by the trainer."""
  wd = str(tmp_path_factory.mktemp("predict_run"))
  overrides = {"train.plots": False, "num_devices": 1, "checkpoint.enabled": False, "train.num_epochs": 2.0}
  train.train_and_evaluate(helpers.tiny_config(**overrides), wd)
  with open(os.path.join(wd, "predictions", "local-test.tsv"), encoding="utf-8") as f:
    trainer_labels = [r["prediction"] for r in csv.DictReader(f, delimiter="\t")]
  assert len(set(trainer_labels)) == 2, "the tiny model should predict both classes"
  return wd, trainer_labels


@pytest.fixture(scope="module")
def messages(tmp_path_factory):
  return error_messages(str(tmp_path_factory.mktemp("predict_errors")))


@pytest.mark.parametrize("model, output", [("export/model", "out.csv"), ("", "out.jsonl")])
def test_predictions_equal_the_runs_own(run, tmp_path, model, output):
  wd, trainer_labels = run
  test_csv = os.path.join(wd, "data", "test.csv")
  path = predict.predict_file(os.path.join(wd, model), test_csv, str(tmp_path / output), batch_size=48)
  rows = _read(path)
  assert [r["label"] for r in rows] == trainer_labels
  with open(test_csv, encoding="utf-8", newline="") as f:
    assert [r["text"] for r in rows] == [r["text"] for r in csv.DictReader(f)]
  assert [int(r["line"]) for r in rows] == list(range(2, len(rows) + 2))  # line 1 is the header
  for r in rows:
    probs = {name: float(r[f"prob_{name}"]) for name in ("negative", "positive")}
    assert abs(sum(probs.values()) - 1.0) < 1e-5
    assert r["label"] == max(probs, key=probs.get)
  assert list(rows[0]) == ["line", "text", "label", "prob_negative", "prob_positive"]


def test_txt_input_one_text_a_line_and_the_default_output(run, tmp_path):
  wd, trainer_labels = run
  with open(os.path.join(wd, "data", "test.csv"), encoding="utf-8", newline="") as f:
    texts = [r["text"] for r in csv.DictReader(f)][:5]
  src = _write(str(tmp_path / "reviews.txt"), "\n".join(texts[:2] + [""] + texts[2:]) + "\n")
  path = predict.predict_file(wd, src)
  assert path == str(tmp_path / "reviews.predictions.csv")
  rows = _read(path)
  assert [r["text"] for r in rows] == texts[:2] + [""] + texts[2:]  # the empty line keeps its row
  assert [int(r["line"]) for r in rows] == [1, 2, 3, 4, 5, 6]
  labels = [r["label"] for r in rows]
  assert labels[:2] + labels[3:] == trainer_labels[:5]


def test_output_file_gets_the_umask_permissions(run, tmp_path):
  wd, _ = run
  old = os.umask(0o022)
  try:
    path = predict.predict_file(wd, os.path.join(wd, "data", "test.csv"), str(tmp_path / "out.jsonl"))
  finally:
    os.umask(old)
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
  assert os.listdir(tmp_path) == ["out.jsonl"]  # no temporary sibling left behind


def test_a_regression_export_writes_a_score(tmp_path):
  tiny = synthetic.make_tiny_dataset(str(tmp_path / "tiny"), num_train=32, num_eval=8)
  folder = _export(str(tmp_path / "regressor"), tokenize.load_tokenizer(tiny.tokenizer_dir), num_labels=1)
  src = _write(str(tmp_path / "in.jsonl"), '{"text": "good film"}\n{"text": "bad film", "label": 1}\n')
  rows = _read(predict.predict_file(folder, src, fmt="jsonl"))
  assert [list(r) for r in rows] == [["line", "text", "score"]] * 2
  assert all(isinstance(r["score"], float) for r in rows)


@pytest.mark.parametrize("case_id, needle", [(c, n) for c, _, _, n in ERROR_CASES])
def test_each_bad_input_gets_one_sentence(messages, case_id, needle):
  message = messages[case_id]
  assert needle in message, message
  assert "\n" not in message and len(message) < 400, message


def test_cli_lists_every_flag_and_reports_an_error_in_one_line(run, tmp_path):
  wd, _ = run
  help_text = _cli("--help").stdout
  for name in FLAGS:
    assert f"--{name}:" in help_text, name
  reviews = _write(str(tmp_path / "reviews.csv"), "review,label\ngood film,1\n")
  proc = _cli(f"--model={wd}", f"--input={reviews}")
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
  assert errors == [
    f"error: --input={reviews!r} has no text column 'text'; its columns are ['review', 'label'] "
    "(name the text column with --text_column / --text_pair_column)."
  ], proc.stderr[-2000:]
  assert not os.path.exists(str(tmp_path / "reviews.predictions.csv"))
