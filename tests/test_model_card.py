"""Every export carries a model card (README.md) that Hugging Face tools parse, and the export
itself loads in a transformers pipeline that labels texts as `rail_kd_jax.predict` does."""

import csv
import json
import os

import pytest

from rail_kd_jax import predict
from rail_kd_jax.outputs import model_card
from rail_kd_jax.training import train

import helpers

TEACHER_NAME = "tiny-org/tiny-teacher"  # the `_name_or_path` written into the teacher's config.json
RUN = {"train.plots": False, "num_devices": 1, "checkpoint.enabled": False}


def _name_teacher(folder: str) -> None:
  """Writes TEACHER_NAME as `_name_or_path` into the config.json of the export `folder`."""
  cfg_file = os.path.join(folder, "config.json")
  with open(cfg_file) as f:
    cfg = json.load(f)
  with open(cfg_file, "w") as f:
    json.dump({**cfg, "_name_or_path": TEACHER_NAME}, f)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """A tiny finetuned teacher, then a tiny rail_l student of its layers 1 and 3:
  {'teacher' | 'student': (workdir, final metrics)}."""
  root = tmp_path_factory.mktemp("card")
  out = {}
  config = helpers.tiny_config(**RUN, **{"train.num_steps": 128})
  out["teacher"] = (str(root / "teacher"), train.train_and_evaluate(config, str(root / "teacher")))
  _name_teacher(os.path.join(out["teacher"][0], "export", "model"))
  overrides = {
    "mode": "distill",
    "distill.method": "rail_l",
    "teacher.init": "pretrained",
    "teacher.path": out["teacher"][0],
    "student.init": "teacher_layers",
    "student.teacher_layers": (1, 3),
    "train.num_steps": 96,
  }
  config = helpers.tiny_config(**RUN, **overrides)
  out["student"] = (str(root / "student"), train.train_and_evaluate(config, str(root / "student")))
  return out


def _card(workdir: str, name: str):
  from huggingface_hub import ModelCard

  return ModelCard.load(os.path.join(workdir, "export", name, "README.md"))


def test_the_students_card_parses_and_states_the_run(runs):
  (teacher_wd, _), (wd, final) = runs["teacher"], runs["student"]
  teacher = os.path.join(teacher_wd, "export", "model")
  card = _card(wd, "student")
  data = card.data.to_dict()
  assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-classification"
  assert data["base_model"] == teacher  # the student copies the teacher's layers
  assert {"knowledge-distillation", "rail_l"} <= set(data["tags"])
  assert data["metrics"] == ["accuracy", "macro_f1"] and "datasets" not in data  # local files: no hub dataset
  text = card.text
  for needle in ("`rail_l`, RAIL-KD (rail_l)", teacher, TEACHER_NAME, "layers 1, 3", "trained with rail_kd_jax"):
    assert needle in text, needle
  for split in ("dev", "test"):
    assert f"| {split} | 128 | {final[split]['accuracy']:.4f} | {final[split]['macro_f1']:.4f} |" in text
  for name in ("train.csv", "dev.csv", "test.csv"):
    path = os.path.join(wd, "data", name)
    assert f"`{path}` | {os.path.getsize(path)} | {model_card.files.sha256(path)} |" in text
  assert "data.synthetic='tiny'" in text  # generated data, said so
  assert "student.teacher_layers: [1, 3]" in text and "model.hidden_size" not in text  # distill's sections
  assert "It was trained from Python" in text  # not by the command line: no command is claimed


def test_the_finetuned_teachers_card_has_no_teacher_and_no_invented_base(runs):
  wd, final = runs["teacher"]
  card = _card(wd, "model")
  data = card.data.to_dict()
  assert "base_model" not in data and "knowledge-distillation" not in data["tags"]  # a fresh model
  text = card.text
  assert "**mode**: finetune" in text and "**teacher**" not in text and "distill" not in text
  assert "randomly initialised (`init=fresh`)" in text
  assert f"| test | 128 | {final['test']['accuracy']:.4f} |" in text


def test_the_export_labels_texts_in_a_transformers_pipeline_as_predict_does(runs, tmp_path):
  import torch
  from transformers import pipeline

  wd, _ = runs["student"]
  export = os.path.join(wd, "export", "student")
  with open(os.path.join(wd, "data", "test.csv"), encoding="utf-8", newline="") as f:
    texts = [r["text"] for r in csv.DictReader(f)][:16]
  src = tmp_path / "texts.txt"
  src.write_text("\n".join(texts) + "\n", encoding="utf-8")
  with open(predict.predict_file(export, str(src), str(tmp_path / "out.csv")), encoding="utf-8") as f:
    ours = list(csv.DictReader(f))
  torch.set_num_threads(1)
  classify = pipeline("text-classification", model=export, device="cpu")
  theirs = classify(texts, truncation=True, max_length=32)
  assert [r["label"] for r in theirs] == [r["label"] for r in ours]
  for a, b in zip(theirs, ours):
    assert abs(a["score"] - float(b[f"prob_{b['label']}"])) < 1e-4
  assert len({r["label"] for r in ours}) == 2, "the tiny student should predict both classes"


def test_the_command_line_is_recorded_when_the_run_came_from_main():
  argv = ("/repo/rail_kd_jax/main.py", "--config=configs/demo.py", "--workdir", "runs/demo")
  lines = "\n".join(model_card._cli_command(argv, "/repo", "/repo/runs/demo/student_kd"))
  assert "python -m rail_kd_jax.main --config=configs/demo.py --workdir runs/demo" in lines
  assert "this model is the one trained in `/repo/runs/demo/student_kd`" in lines
  assert "stages" not in "\n".join(model_card._cli_command(argv, "/repo", "/repo/runs/demo"))  # the run itself
  assert model_card._cli_command(("/usr/bin/pytest", "-q"), "/repo", "/x") == []
