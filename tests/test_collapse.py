"""Collapse of the RAIL-KD projections on fixed features, and the diagnostics that show it.

Only the distillation heads train (Adam, full batch), on fixed anisotropic features
shaped like mean-pooled BERT vectors: a large common component shared by every
example plus a few example-specific factors (teacher: 8 factors, student: 3 of them).
With both maps trainable and no guard, the loss has an exact zero that carries no
information about the example, and Adam finds it; a fixed target (student_to_teacher),
centring, or InfoNCE keep the vectors apart. The numbers are the diagnostics the train
step logs (`distill.diagnostics`).
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rail_kd_jax.training import train
from rail_kd_jax.distill import diagnostics, methods
from rail_kd_jax.distill.methods import MethodInputs

import helpers
from rail_kd_jax.core import defaults

N_EX, num_student_layers, num_teacher_layers, HS, HT = 256, 2, 4, 24, 48
COMMON, NOISE = 1.0, 0.3


def features(seed=0):
  """Student `[M+1, n, Hs]` and teacher `[N+1, n, Ht]` pooled vectors (fixed)."""
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(N_EX, 8))

  def side(width, layers, factors, noise):
    out = []
    for _ in range(layers + 1):
      common = COMMON * rng.normal(size=width)  # the large shared component
      mix = rng.normal(size=(factors, width))
      out.append(common + np.tanh(z[:, :factors]) @ mix + noise * rng.normal(size=(N_EX, width)))
    return np.stack(out).astype(np.float32)

  return side(HS, num_student_layers, 3, NOISE), side(HT, num_teacher_layers, 8, 0.05)


def train_heads(steps=2000, **options):
  """Trains only the rail_l heads; returns the diagnostics and the intermediate loss at the end."""
  s, t = features()
  d = defaults.distill_config()
  d.method = "rail_l"
  d.proj_dim = 16
  d.ce_weight, d.kd_weight, d.int_weight = 0.0, 0.0, 1.0
  for k, v in options.items():
    d[k] = v
  methods.validate(d, num_student_layers, num_teacher_layers, HS, HT)
  x = MethodInputs(
    student_logits=jnp.zeros((N_EX, 2)),
    labels=jnp.zeros((N_EX,), jnp.int32),
    teacher_logits=jnp.zeros((N_EX, 2)),
    student_pooled=jnp.asarray(s),
    teacher_pooled=jnp.asarray(t),
    mapping=jnp.array([2, 4], jnp.int32),
  )
  params = methods.METHODS["rail_l"].init_heads(
    jax.random.PRNGKey(0), d, HS, HT, num_student_layers, num_teacher_layers
  )
  tx = optax.adam(1e-2)
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    (loss, terms), g = jax.value_and_grad(lambda p: methods.rail_l_loss(p, x, d), has_aux=True)(params)
    updates, state = tx.update(g, state, params)
    return optax.apply_updates(params, updates), state, terms

  for _ in range(steps):
    params, state, terms = step(params, state)
  return {k: float(v) for k, v in terms.items()}


def test_both_without_guards_collapses():
  terms = train_heads(projection="both")
  assert terms["dir_var_teacher"] < 0.05, terms
  assert terms["int"] < 0.05, terms  # the loss went to its trivial zero


@pytest.mark.parametrize(
  "options",
  [
    {"projection": "student_to_teacher"},
    {"projection": "both", "center": True},
    {"projection": "both", "distance": "infonce"},
  ],
  ids=["student_to_teacher", "both+center", "both+infonce"],
)
def test_guarded_projections_keep_examples_apart(options):
  terms = train_heads(**options)
  assert terms["dir_var_student"] > 0.3 and terms["dir_var_teacher"] > 0.3, terms
  assert terms["own_other"] < 0.7, terms
  if options.get("center"):
    # Centring removes the one-direction minimiser but leaves another: bias-free maps that
    # split the batch into two opposite clusters (loss ~0, dir_var ~1, own_other ~0).
    # Only the rank shows it.
    assert terms["rank_student"] < 1.5 and terms["int"] < 0.05, terms
  else:
    assert terms["rank_student"] > 2.0 and terms["rank_teacher"] > 2.0, terms


def test_diagnostics_formulas_against_numpy():
  rng = np.random.default_rng(3)
  s, t = rng.normal(size=(2, 7, 5)), rng.normal(size=(2, 7, 5)) + 1.0
  w = np.array([1, 1, 1, 0, 1, 1, 1], np.float32)
  got = diagnostics.collapse_stats([(jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32))], w)
  unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)
  keep = w > 0
  su, tu = unit(s)[:, keep], unit(t)[:, keep]
  n = keep.sum()
  dv = lambda u: 1 - (u.mean(1) ** 2).sum(-1)
  d = ((su[:, :, None] - tu[:, None]) ** 2).sum(-1)  # [K, n, n]
  own = np.einsum("kii->ki", d).mean(1)
  other = (d.sum((1, 2)) - np.einsum("kii->k", d)) / (n * (n - 1))
  np.testing.assert_allclose(float(got["dir_var_student"]), dv(su).mean(), rtol=1e-5)
  np.testing.assert_allclose(float(got["dir_var_teacher"]), dv(tu).mean(), rtol=1e-5)
  np.testing.assert_allclose(float(got["own_other"]), ((own + 1e-4) / (other + 1e-4)).mean(), rtol=1e-5)
  # A total collapse: every vector the same on both sides.
  same = jnp.ones((1, 7, 5))
  got = diagnostics.collapse_stats([(same, same)], w)
  assert float(got["dir_var_student"]) < 1e-6 and float(got["own_other"]) == pytest.approx(1.0, abs=0.01)


def _watch(method, projection, threshold, patience, batch_size=32):
  """A run's watch (`methods.collapse_watch`: the row says which sides and what to advise)."""
  d = defaults.distill_config()
  d.method, d.projection, d.collapse_threshold, d.collapse_patience = method, projection, threshold, patience
  return methods.collapse_watch(d, batch_size)


def test_collapse_watch_warns_once_per_side():
  watch = _watch("rail_l", "both", threshold=0.05, patience=3)
  lines = []
  for step, v in enumerate([0.5, 0.01, 0.02, 0.4, 0.01, 0.01, 0.01, 0.01, 0.01]):
    lines += watch.update(step, {"dir_var_teacher": v, "dir_var_student": 0.5})
  assert len(lines) == 1
  assert "dir_var_teacher" in lines[0] and "rail_l" in lines[0] and "student_to_teacher" in lines[0]
  assert "step 6" in lines[0]
  assert _watch("rail_l", "both", 0.05, 0).update(0, {"dir_var_teacher": 0.0}) == []
  # A fixed target: the teacher side is the teacher's own (anisotropic) vectors, never flagged.
  fixed = _watch("rail_l", "student_to_teacher", 0.05, 1)
  assert fixed.update(0, {"dir_var_teacher": 0.0, "dir_var_student": 0.5, "rank_student": 5.0}) == []
  (line,) = fixed.update(1, {"dir_var_teacher": 0.0, "dir_var_student": 0.5, "rank_student": 1.0})
  assert "rank_student=1.00" in line
  # Two centred vectors always span one axis: no rank check on tiny batches.
  tiny = _watch("pkd", "student_to_teacher", 0.05, 1, batch_size=2)
  assert tiny.update(0, {"dir_var_student": 0.5, "rank_student": 1.0}) == []


def _read_train(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if r.get("split") == "train"]


def test_real_train_step_logs_the_diagnostics(tmp_path, caplog):
  """The tiny config through the real step: `both` collapses and is flagged; a fixed target
  with centring does not. (Without centring the tiny random teacher's own mean-pooled
  vectors already point one way, dir_var_teacher ~0.04: docs/METHODS.md, "Collapse".)"""
  runs = {}
  for name, extra in (
    ("both", {"distill.projection": "both"}),
    ("fixed", {"distill.projection": "student_to_teacher", "distill.center": True}),
  ):
    wd = str(tmp_path / name)
    cfg = helpers.tiny_config(
      **{
        "mode": "distill",
        "distill.method": "rail_l",
        "distill.int_weight": 1.0,
        "train.num_steps": 150,
        "train.log_every": 10,
        "num_devices": 1,
        "train.export": False,
        "train.plots": False,
        "checkpoint.enabled": False,
        "data.bucket": False,
        "distill.resample_every": "step",
        **extra,
      }
    )
    caplog.clear()
    train.train_and_evaluate(cfg, wd)
    runs[name] = (_read_train(wd), caplog.text)
  records, log = runs["both"]
  assert all(k in records[-1] for k in diagnostics.NAMES + diagnostics.RANK_NAMES)
  assert records[-1]["dir_var_teacher"] < 0.05 and records[-1]["int"] < 0.01, records[-1]
  assert "collapse: method rail_l (projection=both): dir_var_" in log
  records, log = runs["fixed"]
  assert records[-1]["dir_var_student"] > 0.3 and records[-1]["dir_var_teacher"] > 0.3, records[-1]
  assert records[-1]["own_other"] < 0.7, records[-1]
  assert "collapse:" not in log
