"""`python -m rail_kd_jax.predict`: a trained model applied to new text predicts what the run's
own evaluation predicts, and every bad model folder or input gets one sentence.

ERROR_CASES is also the "Applying a model" table of docs/ERRORS.md (rendered by
tests/test_validation.py).
"""

import csv
import json
import os
import shutil
import stat
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from rail_kd_jax import models, predict
from rail_kd_jax.outputs import predictions
from rail_kd_jax.training import inference, train
from rail_kd_jax.data import loader, synthetic, text_input, tokenize
from rail_kd_jax.core.errors import ConfigError

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
  "export",
  "dtype",
  "chunk_rows",
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
    "2 exports (export/model, export/student); choose one with --export=model or --export=student",
  ),
  (
    "unknown_export",
    "`--model=<tmp>/two` `--export=teacher`",
    {"model": "{tmp}/two", "export": "teacher"},
    "not an export of --model='<tmp>/two', which holds export/model, export/student",
  ),
  (
    "export_of_an_export",
    "`--export=student` (`--model` is an export folder)",
    {"export": "student"},
    "is an export folder; drop --export",
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
  (
    "late_bad_quote",
    "`--input=<tmp>/late_quote.csv` (a quote left open on line 3001)",
    {"input_path": "{tmp}/late_quote.csv"},
    "line 3001 opens a quote that is never closed",
  ),
  ("max_length", "`--max_length=2`", {"max_length": 2}, "--max_length=2"),
  ("dtype", "`--dtype=float16`", {"dtype": "float16"}, "--dtype='float16' is not valid"),
  ("chunk_rows", "`--chunk_rows=0`", {"chunk_rows": 0}, "--chunk_rows=0"),
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


def _export(folder: str, tokenizer, num_labels: int = 2, seed: int = 0) -> str:
  """A fresh 2-layer model saved as a Hugging Face folder with the tiny tokenizer."""
  model, params = _tiny_encoder(num_labels, seed)
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
  _write(os.path.join(tmp, "late_quote.csv"), "text\n" + "good film\n" * 2999 + '"bad film\nfine\nfine\n')


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


# ----------------------------------------------------------------------------- streaming

# Files the streaming reader must read as `text_input.read_texts(keep_empty=True)` does: quotes, a text
# over two lines, blank and whitespace texts, rows with too few or too many fields, a BOM, CRLF.
READER_FILES = {
  "quoted.csv": 'id,text,label\n1,"a, quoted text",0\n\n2,"two\nlines",1\n3,   ,0\n4,short\n5,"x",1,extra\n,,\n'
  '6,"He said ""hi""",0\n',
  "glue.tsv": "text\tlabel\nit's \"quoted\t1\n\t0\nplain\t1\ntoo\tmany\tfields\n",
  "rows.jsonl": '{"text": "a"}\n\n{"text": 5, "label": 1}\n{"other": "x"}\n{"text": null}\n{"text": "  "}\n',
  "bom.txt": "\ufefffirst\r\n\r\nthird\n  \nlast",
}
# Files both must refuse with the same sentence.
BAD_READER_FILES = {
  "no_column.csv": "review\nx\n",
  "empty.csv": "",
  "dups.csv": "text,text\na,b\n",
  "header_only.csv": "text,label\n",
  "array.jsonl": '{"text": "a"}\n[1]\n',
  "broken.jsonl": '{"text": "a"\n',
  "no_column.jsonl": '{"review": "a"}\n\n{"label": 1}\n',
  "open_quote.csv": 'text\n"never closed\nmore\n',
  "wide_span.csv": 'text,label\n"a\nb",1,2\n',
  "latin1.csv": b"text\ncaf\xe9\n",
}
READ = {"what": "--input", "keep_empty": True, "column_options": "--text_column / --text_pair_column"}


def _streamed(path: str, columns=("text",)) -> list:
  kw = {k: v for k, v in READ.items() if k != "keep_empty"}
  return [(line, texts) for line, texts in text_input.iter_texts(path, columns, **kw)]


@pytest.mark.parametrize("name", sorted(READER_FILES))
def test_the_stream_reads_what_read_texts_reads(tmp_path, caplog, name):
  path = _write(str(tmp_path / name), READER_FILES[name])
  caplog.set_level("WARNING")
  whole = text_input.read_texts(path, ["text"], **READ)
  warned, caplog.records[:] = [r.getMessage() for r in caplog.records], []
  kw = {k: v for k, v in READ.items() if k != "keep_empty"}
  assert text_input.scan_texts(path, ["text"], **kw) == len(whole["text"])
  assert [r.getMessage() for r in caplog.records] == warned and warned
  assert _streamed(path) == [(int(i), (t,)) for i, t in zip(whole["idx"], whole["text"])]


@pytest.mark.parametrize("name", sorted(BAD_READER_FILES))
def test_the_stream_refuses_what_read_texts_refuses(tmp_path, name):
  path = str(tmp_path / name)
  content = BAD_READER_FILES[name]
  with open(path, "wb") as f:
    f.write(content if isinstance(content, bytes) else content.encode())
  with pytest.raises(ValueError) as whole:
    text_input.read_texts(path, ["text"], **READ)
  with pytest.raises(ValueError) as streamed:
    _streamed(path)
  assert str(streamed.value) == str(whole.value)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """A fresh tiny classifier export and a CSV of 2,000 texts of 5 to 25 words, every 97th empty."""
  tmp = str(tmp_path_factory.mktemp("predict_stream"))
  data = synthetic.make_tiny_dataset(os.path.join(tmp, "data"), num_train=2000, num_eval=8)
  folder = _export(os.path.join(tmp, "classifier"), tokenize.load_tokenizer(data.tokenizer_dir))
  with open(data.train_file, encoding="utf-8", newline="") as f:
    texts = [r["text"] for r in csv.DictReader(f)]
  src = os.path.join(tmp, "texts.csv")
  with open(src, "w", encoding="utf-8", newline="") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(["text", "label"])
    writer.writerows([["" if i % 97 == 5 else t, i % 2] for i, t in enumerate(texts)])
  return folder, src


def _whole_file_logits(folder: str, path: str, batch_size: int):
  """The path predict took before it streamed: every text read and encoded at once, batched in file order."""
  classifier = inference.load_classifier(folder)
  texts = text_input.read_texts(path, ["text"], **READ)
  spec = inference.task_spec(classifier, ["text"])
  arrays = loader.encode(texts, classifier.tokenizer, spec, inference.max_length_for(classifier, 0))
  forward = inference.make_forward(classifier)
  batches = loader.batches(arrays, batch_size, seed=0, epoch=0, shuffle=False, drop_remainder=False, bucket=True)
  return texts, np.concatenate([np.asarray(forward(b))[b["example_mask"] > 0] for b in batches])


def test_streaming_predicts_what_the_whole_file_path_predicts(tiny, tmp_path):
  folder, src = tiny
  rows = _read(predict.predict_file(folder, src, str(tmp_path / "out.jsonl"), batch_size=32, chunk_rows=300))
  texts, logits = _whole_file_logits(folder, src, batch_size=32)
  assert len(rows) == 2000
  assert [r["line"] for r in rows] == texts["idx"].tolist() == list(range(2, 2002))
  assert [r["text"] for r in rows] == texts["text"]
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  np.testing.assert_allclose([[r["prob_0"], r["prob_1"]] for r in rows], probs, atol=1e-5)
  clear = np.abs(probs[:, 0] - probs[:, 1]) > 1e-4
  assert clear.mean() > 0.9
  assert [r["label"] for r, c in zip(rows, clear) if c] == [str(k) for k in probs.argmax(-1)[clear]]


def test_memory_is_bounded_by_chunk_rows_not_by_the_input(tiny, tmp_path, monkeypatch):
  folder, src = tiny
  encoded, reads, in_flight = [], [], []
  real_encode, real_iter, real_write = loader.encode, text_input.iter_texts, predictions.write_rows

  def encode(cols, *args, **kw):
    encoded.append(len(cols["text"]))
    return real_encode(cols, *args, **kw)

  def iter_texts(*args, **kw):
    reads.append(0)
    for row in real_iter(*args, **kw):
      reads[-1] += 1
      yield row

  def write_rows(path, fmt, columns, rows):
    def watched():
      for k, row in enumerate(rows):
        in_flight.append(reads[-1] - k)  # rows read and not yet written, this one included
        yield row

    real_write(path, fmt, columns, watched())

  monkeypatch.setattr(loader, "encode", encode)
  monkeypatch.setattr(text_input, "iter_texts", iter_texts)
  monkeypatch.setattr(predictions, "write_rows", write_rows)
  predict.predict_file(folder, src, str(tmp_path / "out.csv"), chunk_rows=150)
  assert reads == [2000, 2000]  # the checking pass, then the streaming one
  assert len(encoded) == 14 and max(encoded) == 150  # 2,000 rows, 13x the chunk
  assert len(in_flight) == 2000 and max(in_flight) <= 2 * 150  # a chunk written while the next runs


def test_a_failure_midway_leaves_no_output(tiny, tmp_path, monkeypatch):
  folder, src = tiny
  calls = []
  real_encode = loader.encode

  def encode(*args, **kw):
    calls.append(1)
    if len(calls) == 3:
      raise RuntimeError("the third chunk fails")
    return real_encode(*args, **kw)

  monkeypatch.setattr(loader, "encode", encode)
  out = tmp_path / "out"
  with pytest.raises(RuntimeError, match="third chunk"):
    predict.predict_file(folder, src, str(out / "predictions.csv"), chunk_rows=200)
  assert os.listdir(out) == []  # no output, no temporary sibling


def test_an_input_error_late_in_the_file_stops_before_the_model_loads(tiny, tmp_path, monkeypatch):
  folder, _ = tiny
  src = _write(str(tmp_path / "late.csv"), "text\n" + "good film\n" * 2999 + '"bad film\n')
  monkeypatch.setattr(inference, "load_classifier", lambda *a, **kw: pytest.fail("the model was loaded"))
  with pytest.raises(ConfigError, match="line 3001 opens a quote that is never closed"):
    predict.predict_file(folder, src)
  assert os.listdir(tmp_path) == ["late.csv"]


def test_export_picks_one_of_a_workdirs_exports(tiny, tmp_path):
  folder, _ = tiny
  tok = tokenize.load_tokenizer(folder)
  wd = tmp_path / "run"
  for name, seed in (("model", 0), ("student", 1)):
    _export(str(wd / "export" / name), tok, seed=seed)
  src = _write(str(tmp_path / "in.txt"), "good film\nbad film\n")
  chosen = _read(predict.predict_file(str(wd), src, str(tmp_path / "a.jsonl"), export="student"))
  direct = _read(predict.predict_file(str(wd / "export" / "student"), src, str(tmp_path / "b.jsonl")))
  other = _read(predict.predict_file(str(wd), src, str(tmp_path / "c.jsonl"), export="model"))
  assert chosen == direct != other
  with pytest.raises(ConfigError, match="2 exports .*--export=model or --export=student"):
    predict.predict_file(str(wd), src)


@pytest.mark.parametrize("mode, block", [("finetune", "model"), ("distill", "student")])
def test_a_bfloat16_run_predicts_in_bfloat16_unless_forced(tiny, tmp_path, monkeypatch, mode, block):
  folder, _ = tiny
  wd = tmp_path / "run"
  shutil.copytree(folder, wd / "export" / block)
  config = {"mode": mode, "data": {"max_length": 32}, "model": {"dtype": "float32"}, block: {"dtype": "bfloat16"}}
  _write(str(wd / "config.json"), json.dumps(config))
  src = _write(str(tmp_path / "in.txt"), "good film\nbad film\nthe plot was dull and the actor bored\n")
  seen, real_load = [], inference.load_classifier
  monkeypatch.setattr(inference, "load_classifier", lambda *a, **kw: seen.append(real_load(*a, **kw)) or seen[-1])
  runs = [
    _read(predict.predict_file(str(model), src, str(tmp_path / f"{i}.jsonl"), dtype=dtype))
    for i, (model, dtype) in enumerate([(wd, ""), (wd / "export" / block, ""), (wd, "bfloat16"), (wd, "float32")])
  ]
  assert [c.model.dtype for c in seen] == [jnp.bfloat16] * 3 + [jnp.float32]
  assert runs[0] == runs[1] == runs[2] != runs[3]  # float32 moves the probabilities' last digits


def test_the_pytorch_peer_predicts_the_same_labels(run, tmp_path):
  pytest.importorskip("torch")
  from rail_kd_jax.experiments.benchmark.peers import predict_peer

  wd, trainer_labels = run
  export, test_csv = os.path.join(wd, "export", "model"), os.path.join(wd, "data", "test.csv")
  length = inference.resolve_model(export).run_max_length
  names = [r["label"] for r in _read(predict.predict_file(export, test_csv, str(tmp_path / "out.csv")))]
  assert names == trainer_labels
  classes = ("negative", "positive")
  for precision in predict_peer.PRECISIONS:
    result = predict_peer.torch_predict(
      export, test_csv, max_length=length, batch_size=16, precision=precision, device="cpu", chunk_rows=40
    )
    agree = np.mean([classes[k] == n for k, n in zip(result["labels"], names)])
    assert len(result["labels"]) == len(names) and result["lines_per_s"] > 0
    assert agree == 1.0 if precision == "float32" else agree >= 0.9, (precision, agree)


def test_the_comparison_writes_an_input_and_reads_predicts_labels(tmp_path):
  pytest.importorskip("torch")
  from rail_kd_jax.experiments.benchmark.peers import predict_peer

  path = predict_peer.make_input(str(tmp_path / "in.txt"), 50)
  with open(path, encoding="utf-8") as f:
    lines = f.read().splitlines()
  assert len(lines) == 50 and all(4 <= len(line.split()) <= 60 for line in lines)
  out = _write(str(tmp_path / "p.csv"), "line,text,label,prob_neg,prob_pos\n1,a,pos,0.2,0.8\n2,b,neg,0.6,0.4\n")
  assert predict_peer._predict_labels(out).tolist() == [1, 0]
  table = predict_peer.table([{"runner": "predict", "precision": "float32", "lines": 50}])
  assert table.splitlines()[2].startswith("| predict | float32 | 50 |")
