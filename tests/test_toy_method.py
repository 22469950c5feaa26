"""A method from one file outside the package (tests/toy_method.py) runs everywhere a method runs:
the command line (found through $RAIL_KD_METHODS), the study, and the PyTorch peer's loss parity."""

import contextlib
import io
import json
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import toy_method
from rail_kd_jax.experiments import study
from rail_kd_jax.core.defaults import base_config
from rail_kd_jax.distill import methods, pooling

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, "tests")


def _unregister():
  """Takes the toy row out of the process-wide registry: importing toy_method registered it at
  collection, and no other test (docs/ERRORS.md lists the valid methods) may see it."""
  methods.METHODS.pop(toy_method.NAME, None)
  methods.PAPER_PRESETS.pop(toy_method.NAME, None)


_unregister()


@pytest.fixture(autouse=True, scope="module")
def _toy_registered():
  """The row is registered for this module's tests only."""
  methods.register(toy_method.ROW)
  yield
  _unregister()


def _cli(workdir, plugins, *overrides):
  pythonpath = os.pathsep.join([TESTS, REPO, os.environ.get("PYTHONPATH", "")])
  env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=pythonpath, RAIL_KD_METHODS=plugins)
  cmd = [sys.executable, "-m", "rail_kd_jax.main", "--config=configs/tiny.py", f"--workdir={workdir}", *overrides]
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_the_row_is_registered_and_refuses_another_under_its_name():
  assert methods.get_method(toy_method.NAME) is toy_method.ROW
  methods.register(toy_method.ROW)  # the same row again: nothing happens
  with pytest.raises(ValueError, match="already registered"):
    methods.register(toy_method.ROW._replace(title="another"))
  assert methods.PAPER_PRESETS[toy_method.NAME] == toy_method.ROW.preset


def test_command_line_runs_the_toy_method(tmp_path):
  proc = _cli(
    tmp_path / "wd",
    "toy_method",
    "--config.mode=distill",
    f"--config.distill.method={toy_method.NAME}",
    "--config.train.num_steps=4",
    "--config.train.log_every=2",
    "--config.train.plots=False",
    "--config.data.cache_dir=off",
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / "wd" / "metrics.jsonl") as f:
    train = [r for r in map(json.loads, f) if r["split"] == "train"]
  assert train[-1]["step"] == 4 and {"ce", "kd", "int", "loss"} <= set(train[-1])
  assert 0 < train[-1]["int"] < 2 and np.isfinite(train[-1]["loss"])


def test_command_line_names_a_plugin_it_cannot_import(tmp_path):
  proc = _cli(tmp_path / "wd", "no_such_module", "--config.mode=distill")
  assert proc.returncode == 2
  assert "$RAIL_KD_METHODS names the module 'no_such_module', which cannot be imported" in proc.stderr


@pytest.mark.slow
def test_runlocal_study_runs_the_toy_method(tmp_path):
  from test_study import study_config

  config = study_config()
  config.study.methods = ("kd", toy_method.NAME)
  config.study.long_factor = 0
  with contextlib.redirect_stdout(io.StringIO()):
    result = study.run_study(config, str(tmp_path / "wd"))
  row = result["methods"][toy_method.NAME]
  assert row["test"]["n"] == len(config.study.seeds) and row["train_seconds"]["n"] == len(config.study.seeds)
  points = result["grid"][toy_method.NAME]
  assert len(points) == len(result["grid"]["kd"]) == 2 and points[0]["name"] == "paper"
  assert row["selected"] in [p["name"] for p in points]


def _outputs(rng, layers, batch, length, width, classes, torch):
  """Random logits and hidden states, as a transformers output: (numpy, torch namespace)."""
  logits = rng.normal(size=(batch, classes)).astype(np.float32)
  hidden = rng.normal(size=(layers + 1, batch, length, width)).astype(np.float32)
  out = types.SimpleNamespace(logits=torch.tensor(logits), hidden_states=tuple(torch.tensor(h) for h in hidden))
  return (logits, hidden), out


def test_pytorch_peer_computes_the_same_toy_loss():
  torch = pytest.importorskip("torch")
  from rail_kd_jax.experiments.benchmark.peers import torch_peer

  rng = np.random.default_rng(0)
  (zs, hs), s_out = _outputs(rng, 2, 5, 7, 8, 3, torch)
  (zt, ht), t_out = _outputs(rng, 4, 5, 7, 8, 3, torch)
  mask = np.ones((5, 7), np.int64)
  mask[1, 4:] = 0
  labels, em = np.array([0, 2, 1, 1, 0]), np.array([1, 1, 1, 1, 0], np.float32)
  dcfg = base_config().distill
  dcfg.method = toy_method.NAME
  dcfg.temperature, dcfg.ce_weight, dcfg.int_weight = 3.0, 0.4, 2.0
  cls = lambda h: pooling.pool(jnp.asarray(h), jnp.asarray(mask), "cls")
  inputs = methods.MethodInputs(
    student_logits=zs,
    labels=labels,
    example_mask=em,
    teacher_logits=zt,
    student_cls=cls(hs),
    teacher_cls=cls(ht),
    student_pooled=cls(hs),
    teacher_pooled=cls(ht),
    token_mask=mask,
  )
  want, terms = jax.jit(lambda x: toy_method.ROW.loss({}, x, dcfg))(inputs)
  assert float(terms["int"]) > 0
  batch = {"labels": torch.tensor(labels), "example_mask": torch.tensor(em), "attention_mask": torch.tensor(mask)}
  heads = torch_peer.Heads(toy_method.NAME, dcfg, 8, 8, 2, 4)
  with torch.no_grad():
    got = torch_peer.method_loss(toy_method.NAME, dcfg, heads, s_out, t_out, batch, None)
  np.testing.assert_allclose(float(got), float(want), rtol=2e-5, atol=2e-6)


def test_pytorch_peer_trains_the_toy_method():
  pytest.importorskip("torch")
  pytest.importorskip("transformers")
  from rail_kd_jax.experiments.benchmark import shapes
  from rail_kd_jax.experiments.benchmark.peers import torch_peer

  shape = shapes.SHAPES["tiny"]
  dcfg = base_config().distill
  dcfg.method = toy_method.NAME
  peer = torch_peer.TorchPeer(shape, toy_method.NAME, dcfg, base_config().optim, shapes.make_batch(shape, seed=1))
  losses = [float(peer.step()) for _ in range(2)]
  assert all(np.isfinite(losses))
