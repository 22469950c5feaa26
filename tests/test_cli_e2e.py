"""End to end through the command line: fine-tune a tiny teacher, then distil with every method."""

import csv
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("none", "kd", "pkd", "alp_kd", "ckd", "rail_l", "rail_c")
TERMS = {
  "none": ("ce",),
  "kd": ("ce", "kd"),
  "pkd": ("ce", "kd", "int"),
  "alp_kd": ("ce", "kd", "int"),
  "ckd": ("ce", "kd", "int"),
  "rail_l": ("ce", "kd", "int"),
  "rail_c": ("ce", "kd", "int"),
}


def _cli(workdir, *overrides):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", HF_HUB_OFFLINE="1")
  cmd = [
    sys.executable,
    "-m",
    "rail_kd_jax.main",
    "--config=configs/tiny.py",
    f"--workdir={workdir}",
    "--config.train.plots=False",
    *overrides,
  ]
  # umask 022, as on a shared machine (the child inherits it): every file the run writes must
  # come out 0644 (see below).
  umask = os.umask(0o022)
  try:
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  finally:
    os.umask(umask)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _train(records):
  return [r for r in records if r["split"] == "train"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("cli_teacher"))
  records = _cli(wd, "--config.mode=finetune")
  assert os.path.isfile(os.path.join(wd, "export", "model", "model.safetensors"))
  with open(os.path.join(wd, "config.json")) as f:
    assert json.load(f)["mode"] == "finetune"
  train = _train(records)
  assert train[-1]["loss"] < train[0]["loss"]
  dev = [r for r in records if r["split"] == "dev"]
  assert dev and dev[-1]["accuracy"] > 0.7, dev
  return wd


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_distill_cli_every_method(teacher, tmp_path, method):
  records = _cli(
    str(tmp_path),
    "--config.mode=distill",
    f"--config.distill.method={method}",
    "--config.teacher.init=pretrained",
    f"--config.teacher.path={teacher}",
  )
  train = _train(records)
  assert len(train) >= 5
  for r in train:
    assert r["split"] == "train" and isinstance(r["step"], int) and "loss" in r
    for term in TERMS[method]:
      assert term in r, (method, term, sorted(r))
    for k in ("grad_norm", "learning_rate", "param_norm"):
      assert k in r
  steps = [r["step"] for r in train]
  assert steps == sorted(steps)
  first = sum(r["loss"] for r in train[:2]) / 2
  last = sum(r["loss"] for r in train[-2:]) / 2
  assert last < first, f"{method}: training loss did not go down ({first:.4f} -> {last:.4f})"
  assert any(r["split"] == "dev" and "accuracy" in r for r in records)
  assert os.path.isfile(os.path.join(tmp_path, "export", "student", "config.json"))


def _modes(folder):
  """{path relative to folder: permission bits} of every file and folder under it."""
  out = {}
  for root, dirs, names in os.walk(folder):
    for name in dirs + names:
      path = os.path.join(root, name)
      out[os.path.relpath(path, folder)] = os.stat(path).st_mode & 0o777
  return out


def test_labelled_test_file_is_scored_and_every_written_file_is_readable(teacher):
  """The tiny data's test.csv carries labels: it is evaluated like dev (metrics.jsonl, the summary)
  and still predicted; under umask 022 every file and folder the run wrote is 0644 / 0755."""
  with open(os.path.join(teacher, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  test = [r for r in records if r["split"] == "test"]
  assert test, sorted({r["split"] for r in records})
  for key in ("accuracy", "macro_f1", "loss", "majority_accuracy", "recall/negative", "f1/positive"):
    assert key in test[-1], (key, sorted(test[-1]))
  summary = [r for r in records if r["split"] == "summary"][-1]
  assert summary["test/accuracy"] == test[-1]["accuracy"] and "dev/accuracy" in summary
  assert os.path.isfile(os.path.join(teacher, "predictions", "local-test.tsv"))
  modes = _modes(teacher)
  assert "predictions/local-test.tsv" in modes and "export/model/model.safetensors" in modes
  wrong = {p: oct(m) for p, m in modes.items() if m != (0o755 if os.path.isdir(os.path.join(teacher, p)) else 0o644)}
  assert not wrong, wrong


def test_unlabelled_test_file_is_only_predicted(teacher, tmp_path):
  data = tmp_path / "data"
  data.mkdir()
  src = os.path.join(teacher, "data")
  for name in ("train.csv", "dev.csv"):
    with open(os.path.join(src, name), encoding="utf-8") as f:
      (data / name).write_text(f.read(), encoding="utf-8")
  with open(os.path.join(src, "test.csv"), encoding="utf-8") as f:
    texts = [row["text"] for row in csv.DictReader(f)]
  with open(data / "test.csv", "w", encoding="utf-8", newline="") as f:
    csv.writer(f).writerows([["text"]] + [[t] for t in texts])
  records = _cli(
    str(tmp_path / "run"),
    "--config.mode=finetune",
    "--config.data.synthetic=",
    f"--config.data.data_dir={data}",
    f"--config.data.tokenizer={os.path.join(src, 'tokenizer')}",
    "--config.train.num_steps=4",
    "--config.checkpoint.enabled=False",
    "--config.train.export=False",
  )
  assert {r["split"] for r in records} == {"train", "validation", "summary"}  # no "test" record
  with open(tmp_path / "run" / "predictions" / "local-test.tsv", encoding="utf-8") as f:
    assert len(f.read().splitlines()) == len(texts) + 1
