"""Run plots (loss terms, eval metrics, layer-pairing heat map), the demo chart, and the
layer-pairing counts of RAIL-KD runs: every teacher layer is used."""

import json
import os
import sys
import types

import numpy as np
import pytest

from rail_kd_jax.outputs import plots
from rail_kd_jax.training import train
from rail_kd_jax.distill import layer_sampling
from rail_kd_jax.distill import methods as methods_lib

import helpers
from rail_kd_jax.core import defaults

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
  with open(path, "rb") as f:
    return f.read(8) == PNG_MAGIC and os.path.getsize(path) > 1000


def _write_run(workdir, with_counts=True):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    for step in range(10, 110, 10):
      f.write(
        json.dumps(
          {
            "step": step,
            "split": "train",
            "loss": 1.0 / step,
            "ce": 0.5,
            "kd": 0.3,
            "int": 0.2,
            "grad_norm": 1.0,
            "mapping": [1, 3, 6],
            "learning_rate": 1e-4,
          }
        )
        + "\n"
      )
      if step % 50 == 0:
        for split in ("dev", "test"):
          f.write(
            json.dumps({"step": step, "split": split, "accuracy": 0.5 + step / 400, "macro_f1": 0.5, "loss": 0.6})
            + "\n"
          )
    f.write(json.dumps({"step": 100, "split": "summary", "train_seconds": 12.0, "steps": 100}) + "\n")
    f.write('{"step": 100, "split": "tra')  # a run killed mid-write
  if with_counts:
    counts = np.zeros((3, 7), int)
    counts[:, 1:] = np.arange(18).reshape(3, 6)
    with open(os.path.join(workdir, "mapping_counts.json"), "w") as f:
      json.dump({"counts": counts.tolist(), "steps": 100, "num_teacher_layers": 6, "num_student_layers": 3}, f)


def test_write_run_plots_writes_three_pngs(tmp_path):
  wd = str(tmp_path / "run")
  _write_run(wd)
  paths = plots.write_run_plots(wd)
  names = sorted(os.path.basename(p) for p in paths)
  assert names == sorted([plots.LOSS_FILE, plots.EVAL_FILE, plots.PAIRING_FILE])
  assert all(_is_png(p) for p in paths)


def test_write_run_plots_without_mapping_or_metrics(tmp_path):
  wd = str(tmp_path / "kd")
  _write_run(wd, with_counts=False)
  assert sorted(os.path.basename(p) for p in plots.write_run_plots(wd)) == sorted([plots.LOSS_FILE, plots.EVAL_FILE])
  empty = str(tmp_path / "empty")
  os.makedirs(empty)
  assert plots.write_run_plots(empty) == []


def test_demo_chart(tmp_path):
  rows = [
    {"name": "teacher", "label": "teacher", "accuracy": 0.8, "train_seconds": 120.0},
    {"name": "student_none", "label": "3-layer student, student without KD", "accuracy": 0.75, "train_seconds": 60.0},
    {"name": "student_rail_l", "label": "3-layer student, RAIL-KD", "accuracy": 0.77, "train_seconds": 80.0},
  ]
  path = plots.write_demo_chart(rows, str(tmp_path / "demo.png"))
  assert path and _is_png(path)
  assert plots.write_demo_chart([], str(tmp_path / "none.png")) is None


def _spec(resample_every, steps_per_epoch, n=6, m=3, seed=0):
  dcfg = defaults.distill_config()
  dcfg.resample_every = resample_every
  return types.SimpleNamespace(
    method=methods_lib.METHODS["rail_l"],
    dcfg=dcfg,
    seed=seed,
    num_teacher_layers=n,
    num_student_layers=m,
    steps_per_epoch=steps_per_epoch,
  )


def test_demo_rail_counts_use_every_teacher_layer():
  """The demo's RAIL-KD setting (6 -> 3 layers, a new mapping every step, ~300 steps): every teacher
  layer is paired, each student layer's row sums to the steps, and the counts replay exactly."""
  sys.path.insert(0, os.path.join(REPO, "configs"))
  try:
    import demo as demo_config  # configs/demo.py
  finally:
    sys.path.pop(0)
  cfg = demo_config.get_config()
  steps = 100
  spec = _spec(cfg.distill.resample_every, steps_per_epoch=318)
  counts = train.pairing_counts_for(spec, steps)
  assert counts.shape == (3, 7)
  assert (counts[:, 0] == 0).all()  # the embedding output is never drawn
  assert (counts[:, 1:].sum(axis=0) > 0).all(), counts  # every teacher layer used
  assert (counts.sum(axis=1) == steps).all()
  # Sorted distinct draws: student 1 never meets teacher 5 or 6, student 3 never teacher 1 or 2.
  assert counts[0, 5:].sum() == 0 and counts[2, 1:3].sum() == 0
  np.testing.assert_array_equal(counts, train.pairing_counts_for(spec, steps))
  # Per-epoch resampling over less than one epoch keeps a single mapping: M of the N layers.
  one = train.pairing_counts_for(_spec("epoch", steps_per_epoch=318), steps)
  assert (one[:, 1:].sum(axis=0) > 0).sum() == 3


@pytest.mark.slow
def test_rail_run_writes_counts_and_heat_map(tmp_path):
  """A tiny RAIL-KD run end to end: mapping_counts.json uses every teacher layer, and the heat map
  is drawn from it."""
  config = helpers.tiny_config()
  config.mode = "distill"
  config.distill.method = "rail_l"
  config.distill.resample_every = "step"
  config.data.bucket = False
  config.train.num_steps = 24
  config.train.export = False
  config.checkpoint.enabled = False
  config.num_devices = 1
  wd = str(tmp_path / "rail")
  train.Trainer.create(config, wd).fit()
  with open(os.path.join(wd, "mapping_counts.json")) as f:
    saved = json.load(f)
  counts = np.asarray(saved["counts"])
  n, m = saved["num_teacher_layers"], saved["num_student_layers"]
  assert counts.shape == (m, n + 1) == (2, 5)
  assert (counts[:, 1:].sum(axis=0) > 0).all(), counts
  assert (counts.sum(axis=1) == 24).all()
  # The counts are those of the mappings the steps logged.
  logged = [r["mapping"] for r in map(json.loads, open(os.path.join(wd, "metrics.jsonl"))) if r["split"] == "train"]
  assert all(len(mp) == m and mp == sorted(mp) for mp in logged)
  manual = layer_sampling.pairing_counts(
    np.asarray([np.asarray(train.current_mapping(_spec("step", 1, n, m, config.seed), s)) for s in range(24)]), n
  )
  np.testing.assert_array_equal(counts, manual)
  assert os.path.isfile(os.path.join(wd, plots.PAIRING_FILE)) and _is_png(os.path.join(wd, plots.PAIRING_FILE))
  assert plots.load_pairing_counts(wd).tolist() == counts.tolist()
