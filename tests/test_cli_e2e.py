"""End to end through the command line: fine-tune a tiny teacher, then distil with every method."""

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
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
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
