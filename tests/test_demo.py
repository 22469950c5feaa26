"""The embedded demo (configs/demo.py): its stage configs, a short run on a subset with the real
MiniLM teacher, stage reuse, and the exported student in PyTorch (same labels as Flax)."""

import csv
import importlib.util
import json
import os

import numpy as np
import pytest

from rail_kd_jax.experiments import demo, stages
from rail_kd_jax.core.errors import ConfigError
from rail_kd_jax.training.validation import validate_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROW_KEYS = ("name", "method", "accuracy", "train_seconds", "export_dir")


def demo_config(arg=""):
  spec = importlib.util.spec_from_file_location("demo_cfg", os.path.join(REPO, "configs", "demo.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_stage_configs_are_ordinary_runs(minilm_path, tmp_path):
  config = demo_config()
  files = {k: str(tmp_path / f"{k}.csv") for k in ("train", "dev", "test")}
  for path in files.values():
    with open(path, "w") as f:
      f.write("text,label,movie_name\na fine film,1,x\n")
  t = stages.teacher_config(config, files, minilm_path)
  assert t.mode == "finetune" and t.model.path == minilm_path
  assert dict(t.data.eval_files) == {"dev": files["dev"], "test": files["test"]} and not t.data.test_file
  validate_config(t)
  init = {"init": "pretrained", "path": minilm_path}
  students = {m: stages.student_config(config, files, minilm_path, init, m) for m in config.demo.methods}
  for method, s in students.items():
    validate_config(s)
    assert s.mode == "distill" and s.distill.method == method
    assert s.distill.resample_every == "step"
  # The students differ in the method only (same init, data, steps, optimizer, seed).
  flat = {m: json.loads(s.to_json_best_effort()) for m, s in students.items()}
  for m in flat:
    flat[m]["distill"].pop("method")
  assert flat["none"] == flat["kd"] == flat["rail_l"]


def test_bad_demo_fields_stop_early(tmp_path):
  config = demo_config()
  with config.unlocked():
    config.demo.student_init = "random"
  with pytest.raises(ConfigError, match="demo.student_init"):
    demo.run_demo(config, str(tmp_path))
  config = demo_config()
  config.demo.methods = ("kd", "tinybert")
  with pytest.raises(ConfigError, match="tinybert"):
    demo.run_demo(config, str(tmp_path))


def _texts_and_labels(path):
  with open(path, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  return [r["text"] for r in rows], np.array([int(r["label"]) for r in rows])


def _flax_logits(export_dir, texts, max_length):
  from rail_kd_jax import models
  from rail_kd_jax.data import tokenize

  model, params = models.load_pretrained(export_dir)
  tok = tokenize.load_tokenizer(export_dir)
  out = []
  for i in range(0, len(texts), 256):
    enc = tok(texts[i : i + 256], padding="max_length", truncation=True, max_length=max_length, return_tensors="np")
    out.append(
      np.asarray(
        model.apply(
          {"params": params},
          enc["input_ids"],
          enc["attention_mask"],
          token_type_ids=enc["token_type_ids"],
          deterministic=True,
        ).logits
      )
    )
  return np.concatenate(out)


def _torch_logits(export_dir, texts, max_length):
  torch = pytest.importorskip("torch")
  from transformers import AutoModelForSequenceClassification, AutoTokenizer

  model = AutoModelForSequenceClassification.from_pretrained(export_dir).eval()
  tok = AutoTokenizer.from_pretrained(export_dir)
  out = []
  with torch.no_grad():
    for i in range(0, len(texts), 256):
      enc = tok(texts[i : i + 256], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
      out.append(model(**enc).logits.numpy())
  return np.concatenate(out), model.config


@pytest.mark.slow
def test_demo_runlocal_exports_match_pytorch(minilm_path, tmp_path):
  """A short demo on a subset: results files, stage reuse, and the exported RAIL-KD student
  predicts the same labels in PyTorch as in Flax on the whole test split."""
  config = demo_config("runlocal")
  config.demo.methods = ("rail_l",)  # one student stage keeps the test short
  config.train.plots = False
  wd = str(tmp_path / "demo")
  rows = demo.run_demo(config, wd)
  assert list(rows) == ["teacher", "student_rail_l"]
  with open(os.path.join(wd, "results.json")) as f:
    saved = json.load(f)
  assert [r["name"] for r in saved] == list(rows)
  for r in saved:
    assert all(k in r for k in ROW_KEYS), r
    assert 0.0 <= r["accuracy"] <= 1.0 and r["train_seconds"] > 0
    assert os.path.isfile(os.path.join(r["export_dir"], "model.safetensors"))
    assert os.path.isfile(os.path.join(r["export_dir"], "tokenizer.json"))
  assert saved[0]["method"] == "finetune" and saved[1]["method"] == "rail_l"
  md = open(os.path.join(wd, "results.md")).read()
  assert "RAIL-KD" in md and "| teacher" in md
  # The students start from the same weights: layers (1, 3, 5) of the pre-trained checkpoint.
  with open(os.path.join(wd, "student_init", "config.json")) as f:
    assert json.load(f)["num_hidden_layers"] == 3
  counts = json.load(open(os.path.join(wd, "student_rail_l", "mapping_counts.json")))
  assert counts["num_teacher_layers"] == 6 and counts["steps"] == config.demo.student_steps

  # A second call trains nothing: every stage is reused.
  again = demo.run_demo(config, wd)
  assert all(r["reused"] for r in again.values())
  assert [r["accuracy"] for r in again.values()] == [r["accuracy"] for r in saved]

  # The exported RAIL-KD student: transformers (PyTorch) == Flax on the test split.
  export_dir = rows["student_rail_l"]["export_dir"]
  texts, labels = _texts_and_labels(os.path.join(wd, "data", "test.csv"))
  max_length = config.data.max_length
  pt_logits, pt_config = _torch_logits(export_dir, texts, max_length)
  fx_logits = _flax_logits(export_dir, texts, max_length)
  assert pt_config.id2label == {0: "rotten", 1: "fresh"}
  agree = np.mean(pt_logits.argmax(-1) == fx_logits.argmax(-1))
  assert agree >= 0.995, agree
  np.testing.assert_allclose(pt_logits, fx_logits, atol=2e-3)
  # ... and it is the model the demo scored: same accuracy on the evaluated test subset.
  n = config.data.max_eval_examples
  acc = np.mean(fx_logits[:n].argmax(-1) == labels[:n])
  assert abs(acc - rows["student_rail_l"]["accuracy"]) <= 1.0 / n + 1e-9
