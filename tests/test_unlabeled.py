"""data.unlabeled_file: unlabelled text feeds the teacher-driven terms and never the cross-entropy."""

import csv
import os

import jax
import numpy as np
import pytest

from rail_kd_jax.training import train
from rail_kd_jax.data import loader, synthetic

import helpers

_LABELED = 32  # labelled train examples the students keep (data.max_train_examples)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
  """A tiny teacher fine-tuned on the whole tiny train split, and the unlabelled texts: the same
  split's examples past the first _LABELED, one text a line, labels dropped."""
  wd = str(tmp_path_factory.mktemp("teacher"))
  config = helpers.tiny_config(**{"train.num_steps": 160, "train.plots": False, "num_devices": 1})
  result = train.train_and_evaluate(config, wd)
  assert result["dev"]["accuracy"] > 0.85, result["dev"]
  tiny = synthetic.make_tiny_dataset(os.path.join(wd, "data"))
  with open(tiny.train_file, encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  texts = os.path.join(wd, "unlabeled.txt")
  with open(texts, "w", encoding="utf-8") as f:
    f.writelines(r["text"] + "\n" for r in rows[_LABELED:])
  return wd, texts, len(rows) - _LABELED


def _student(teacher, unlabeled: str = "", **kw):
  wd, _, _ = teacher
  overrides = {
    "mode": "distill",
    "distill.method": "kd",
    "teacher.init": "pretrained",
    "teacher.path": wd,
    "data.max_train_examples": _LABELED,
    "data.unlabeled_file": unlabeled,
    "data.bucket": False,  # one batch shape: one program
    "train.export": False,
    "train.plots": False,
    "num_devices": 2,
  }
  overrides.update(kw)
  return helpers.tiny_config(**overrides)


def _count_compiles(fn):
  events = []

  def listener(name, *args, **kwargs):
    if "backend_compile" in name:
      events.append(name)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    fn()
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  return len(events)


def test_unlabeled_rows_join_the_train_split_with_a_label_mask(teacher, tmp_path):
  _, texts, num_texts = teacher
  trainer = train.Trainer.create(_student(teacher, texts), str(tmp_path / "all"))
  arrays = trainer.run.arrays["train"]
  np.testing.assert_array_equal(arrays["label_mask"], [1.0] * _LABELED + [0.0] * num_texts)
  assert (arrays["labels"][_LABELED:] == -1).all() and (arrays["labels"][:_LABELED] >= 0).all()
  assert trainer.run.steps_per_epoch == (_LABELED + num_texts) // 16
  # data.unlabeled_ratio: at most ratio x labelled texts, the same subset on every run.
  subsets = [
    train.Trainer.create(
      _student(teacher, texts, **{"data.unlabeled_ratio": 2.0, "seed": seed}), str(tmp_path / f"r{seed}")
    )
    for seed in (0, 1)
  ]
  for t in subsets:
    assert len(t.run.arrays["train"]["labels"]) == 3 * _LABELED
  np.testing.assert_array_equal(subsets[0].run.arrays["train"]["idx"], subsets[1].run.arrays["train"]["idx"])


def test_all_unlabeled_batch_has_no_cross_entropy_and_one_program(teacher, tmp_path):
  _, texts, _ = teacher
  trainer = train.Trainer.create(_student(teacher, texts), str(tmp_path))
  arrays = trainer.run.arrays["train"]
  unlabeled = {k: v[arrays["label_mask"] == 0] for k, v in arrays.items()}
  labeled = {k: v[arrays["label_mask"] == 1] for k, v in arrays.items()}

  def batch(part):
    return next(loader.batches(part, 16, seed=0, epoch=0, shuffle=True, drop_remainder=True, bucket=False))

  mixed = next(trainer.train_batches(0))
  metrics = []

  def three_steps():
    for b in (batch(unlabeled), batch(labeled), mixed):
      metrics.append(trainer.par.unreplicate(trainer.train_on(b)))

  assert _count_compiles(three_steps) == 1
  only_unlabeled, only_labeled, _ = metrics
  assert float(only_unlabeled["ce"]) == 0.0
  assert float(only_unlabeled["kd"]) > 0.0 and float(only_unlabeled["grad_norm"]) > 0.0
  assert float(only_labeled["ce"]) > 0.0 and float(only_labeled["kd"]) > 0.0


def test_cross_entropy_is_the_mean_over_labelled_examples_on_any_device_count(teacher, tmp_path):
  """Devices hold different numbers of labelled examples; the step's ce is still their mean over
  the whole batch, so 1 and 2 devices train alike."""
  _, texts, _ = teacher

  def five_steps(num_devices, name):
    trainer = train.Trainer.create(_student(teacher, texts, num_devices=num_devices), str(tmp_path / name))
    out = []
    for b, _ in zip(trainer.train_batches(0), range(5)):
      m = trainer.par.unreplicate(trainer.train_on(b))
      out.append((float(m["ce"]), float(m["loss"])))
    return np.array(out), trainer.host_params(), trainer

  one, params_one, trainer = five_steps(1, "one")
  two, params_two, _ = five_steps(2, "two")
  # What makes the comparison bite: the two devices' halves of some batch hold different
  # numbers of labelled examples (a per-device mean would then weigh them unequally).
  halves = [(b["label_mask"][:8].sum(), b["label_mask"][8:].sum()) for b, _ in zip(trainer.train_batches(0), range(5))]
  assert any(a != b and a + b > 0 for a, b in halves), halves
  np.testing.assert_allclose(two, one, atol=1e-5, rtol=0)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0), params_two, params_one)


def test_teacher_cache_covers_the_unlabeled_text(teacher, tmp_path):
  _, texts, num_texts = teacher

  def five_losses(name, **kw):
    trainer = train.Trainer.create(_student(teacher, texts, **kw), str(tmp_path / name))
    if kw:
      assert len(trainer.run.arrays["train"]["teacher_logits"]) == _LABELED + num_texts
    return [
      float(trainer.par.unreplicate(trainer.train_on(b))["loss"]) for b, _ in zip(trainer.train_batches(0), range(5))
    ]

  cached = five_losses("cached", **{"distill.cache_teacher": True, "distill.cache_dtype": "float32"})
  np.testing.assert_allclose(cached, five_losses("online"), atol=1e-5, rtol=0)


def test_teacher_labelled_text_helps_a_student_with_few_labels(teacher, tmp_path, method="rail_l"):
  """The same number of steps with and without the unlabelled text (32 labels): the student
  that also learns from the teacher on the unlabelled text scores at least as well on dev."""
  _, texts, _ = teacher
  accuracy = {}
  for name, unlabeled in (("without", ""), ("with", texts)):
    config = _student(teacher, unlabeled, **{"distill.method": method, "train.num_steps": 160, "num_devices": 1})
    accuracy[name] = train.train_and_evaluate(config, str(tmp_path / name))["dev"]["accuracy"]
  print(f"{method}: dev accuracy without {accuracy['without']:.4f}, with {accuracy['with']:.4f}")
  assert accuracy["with"] >= accuracy["without"], accuracy
