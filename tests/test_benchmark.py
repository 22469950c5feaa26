"""The training-time benchmark: the tiny configuration end to end, and the peers' losses == ours."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rail_kd_jax import models
from rail_kd_jax import step as step_lib
from rail_kd_jax.benchmark import cases, report, runner, sections, shapes, timing

torch = pytest.importorskip("torch")

DOCUMENTED_KEYS = (
  "method",
  "impl",
  "teacher_cache",
  "shape",
  "compile_s",
  "step_ms_median",
  "step_ms_iqr",
  "examples_per_s",
  "flops_per_step",
  "flop_utilization",
  "peak_bytes",
)


@pytest.mark.slow
def test_tiny_benchmark_writes_table_json_and_chart(tmp_path, capsys):
  pytest.importorskip("textbrewer")
  # pkd: the one method that all three implementations (and the teacher cache) run.
  opts = sections.Options(
    methods=("pkd",),
    peers=("pytorch", "textbrewer"),
    cache_methods=("pkd",),
    warmup=1,
    windows=2,
    steps_per_window=1,
    num_devices=1,
    profile_dir=str(tmp_path / "prof"),
  )
  rows = runner.run(str(tmp_path), [shapes.SHAPES["tiny"]], opts)
  assert "benchmark device:" in capsys.readouterr().out
  for name in ("benchmark.md", "benchmark.json", "benchmark.png"):
    assert os.path.getsize(tmp_path / name) > 0
  with open(tmp_path / "benchmark.json") as f:
    loaded = json.load(f)
  assert loaded == json.loads(json.dumps(rows))
  steps = [r for r in loaded if r["kind"] == "step"]
  assert {(r["method"], r["impl"], r["teacher_cache"]) for r in steps} == {
    ("pkd", "jax", False),
    ("pkd", "jax", True),
    ("pkd", "pytorch", False),
    ("pkd", "textbrewer", False),
  }
  for r in steps:
    assert list(r)[: len(DOCUMENTED_KEYS)] == list(DOCUMENTED_KEYS)
    assert r["step_ms_median"] > 0 and r["step_ms_iqr"] >= 0 and r["examples_per_s"] > 0
    assert r["flops_per_step"] > 0 and 0 < r["flop_utilization"]
    if r["impl"] == "jax":
      assert r["compile_s"] > 0 and r["peak_bytes"] > 0
  # The cached step has no teacher forward: fewer FLOPs than the online one.
  online = report._find(steps, method="pkd", impl="jax", teacher_cache=False)
  cached = report._find(steps, method="pkd", impl="jax", teacher_cache=True)
  assert cached["flops_per_step"] < online["flops_per_step"]
  # The single-matmul section: the shape's four matmuls, timed with both libraries.
  gemm = [r for r in loaded if r["kind"] == "gemm"]
  assert [r["op"] for r in gemm] == ["dense H->H", "dense H->I", "dense I->H", "attention scores"]
  assert all(r["jax_ms"] > 0 and r["pytorch_ms"] > 0 and r["flops"] > 0 for r in gemm)
  meta = json.loads((tmp_path / "benchmark_meta.json").read_text())
  assert meta["peak_gflops"] == max(meta["peak_gflops_jax"], meta["peak_gflops_pytorch"])
  table = (tmp_path / "benchmark.md").read_text()
  assert "| pkd |" in table and "PyTorch / JAX" in table and "## Targets" in table
  assert "## Single matmuls" in table and "| tiny | dense H->I |" in table
  # --profile: a trace and an op table per JAX row; the online step has a teacher forward, the cached one not.
  assert "## Profiles" in table
  for cached in (False, True):
    p = report._find(steps, method="pkd", impl="jax", teacher_cache=cached)["profile"]
    assert os.path.isfile(os.path.join(p["dir"], "ops.md")) and p["by_kind"]["matmul"] > 0
    assert p["by_pass"]["backward"] > 0 and p["by_pass"]["forward (differentiated)"] > 0
    assert (p["by_pass"].get("forward (no gradient: teacher)", 0.0) > 0) == (not cached), p["by_pass"]


def _to_torch_heads(method, heads_jax, heads_torch):
  """Copies the JAX head params into the torch peer's Heads (kernel [in, out] -> weight [out, in])."""

  def put(linear, p):
    linear.weight.data = torch.from_numpy(np.asarray(p["kernel"]).T.copy())
    if "bias" in p:
      linear.bias.data = torch.from_numpy(np.asarray(p["bias"]).copy())

  for name, value in heads_jax.items():
    target = getattr(heads_torch, name)
    if method == "ckd":
      for j, lin in enumerate(target):
        put(lin, value[f"group_{j + 1}"])
    elif isinstance(target, torch.nn.ModuleList):
      for j, lin in enumerate(target):
        put(lin, jax.tree.map(lambda x: x[j], value))
    else:
      put(target, value)


@pytest.mark.parametrize("shape_name", ["tiny"])
def test_pytorch_peer_computes_the_same_losses(tmp_path, shape_name):
  """Same weights (saved with save_pretrained, loaded by transformers), same batch, same mapping."""
  import transformers
  from rail_kd_jax.benchmark.peers import torch_peer

  base = shapes.SHAPES[shape_name]
  # A narrower student exercises the width-changing heads (pkd, alp_kd projections).
  shape = shapes.Shape(
    "parity", base.teacher, shapes._bert(2, 16, 2, 32, vocab_size=128, max_position_embeddings=64), 4, 12
  )
  batch = shapes.make_batch(shape, seed=1)
  jbatch = {k: jnp.asarray(v) for k, v in batch.items()}
  tbatch = torch_peer.to_torch_batch(batch)
  inputs = {k: tbatch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
  kt, ks, kh = jax.random.split(jax.random.PRNGKey(2), 3)
  kh = np.asarray(kh)
  spec0 = cases.build_spec(shape, "none")
  student_params, teacher_params = models.init_params(spec0.student, ks), models.init_params(spec0.teacher, kt)
  models.save_pretrained(spec0.student, student_params, str(tmp_path / "s"))
  models.save_pretrained(spec0.teacher, teacher_params, str(tmp_path / "t"))
  load = lambda d: transformers.AutoModelForSequenceClassification.from_pretrained(str(d)).eval()
  s_model, t_model = load(tmp_path / "s"), load(tmp_path / "t")
  with torch.no_grad():
    s_out = s_model(**inputs, output_hidden_states=True)
    t_out = t_model(**inputs, output_hidden_states=True)
  # Encoders run once (their parity with transformers is tested in test_models_parity.py);
  # each method's loss then runs on the same states as in step._loss_fn.
  from rail_kd_jax.distill import methods as methods_lib, pooling

  forward = lambda model, p: jax.jit(model.apply)({"params": p}, jbatch["input_ids"], jbatch["attention_mask"])
  s_jax, t_jax = forward(spec0.student, student_params), forward(spec0.teacher, teacher_params)
  for method in cases.ALL_METHODS:
    spec = cases.build_spec(shape, method)
    heads_jax = spec.method.init_heads(
      kh,
      spec.dcfg,
      shape.student.hidden_size,
      shape.teacher.hidden_size,
      spec.num_student_layers,
      spec.num_teacher_layers,
    )
    mapping = np.asarray(jax.jit(lambda s: step_lib.current_mapping(spec, s))(jnp.int32(3)))

    @jax.jit
    def loss(heads, s_out, t_out, b, mapping):
      inputs = methods_lib.MethodInputs(
        student_logits=s_out.logits,
        labels=b["labels"],
        example_mask=b["example_mask"],
        student_pooled=pooling.pool(s_out.hidden_states, b["attention_mask"], spec.dcfg.pooling),
        student_cls=pooling.pool(s_out.hidden_states, b["attention_mask"], "cls"),
        teacher_logits=t_out.logits,
        teacher_pooled=pooling.pool(t_out.hidden_states, b["attention_mask"], spec.dcfg.pooling),
        teacher_cls=pooling.pool(t_out.hidden_states, b["attention_mask"], "cls"),
        token_mask=b["attention_mask"],
        student_hidden=s_out.hidden_states,
        teacher_hidden=t_out.hidden_states,
        mapping=mapping,
      )
      return spec.method.loss(heads, inputs, spec.dcfg)[0]

    want = loss(heads_jax, s_jax, t_jax, jbatch, mapping)
    heads = torch_peer.Heads(
      spec.dcfg.method,
      spec.dcfg,
      shape.student.hidden_size,
      shape.teacher.hidden_size,
      spec.num_student_layers,
      spec.num_teacher_layers,
    )
    _to_torch_heads(spec.dcfg.method, heads_jax, heads)
    with torch.no_grad():
      got = torch_peer.method_loss(
        spec.dcfg.method, spec.dcfg, heads, s_out, t_out, tbatch, torch.tensor(np.asarray(mapping), dtype=torch.long)
      )
    np.testing.assert_allclose(float(got), float(want), rtol=2e-5, atol=2e-6, err_msg=method)


def test_time_interleaved_reports_median_and_iqr_per_runner():
  calls = []

  def runner(name):
    return (lambda: calls.append(name) or len(calls)), (lambda x: x)

  got = timing.time_interleaved({"a": runner("a"), "b": runner("b")}, warmup=2, windows=5, steps_per_window=3)
  assert set(got) == {"a", "b"}
  for t in got.values():
    assert len(t.windows_ms) == 5 and t.step_ms_median >= 0 and t.step_ms_iqr >= 0
  # Warm-up of each runner, then their windows in turn.
  assert calls == ["a"] * 2 + ["b"] * 2 + (["a"] * 3 + ["b"] * 3) * 5


def test_targets_ratios_and_noise():
  def step(method, impl, ms, iqr, cache=False):
    return dict(
      kind="step", shape="s", method=method, impl=impl, teacher_cache=cache, step_ms_median=ms, step_ms_iqr=iqr
    )

  rows = [
    step("kd", "jax", 100.0, 2.0),
    step("rail_l", "jax", 104.0, 2.0),
    step("alp_kd", "jax", 110.0, 1.0),
    step("ckd", "jax", 103.0, 5.0),
    step("kd", "pytorch", 140.0, 0.0),
    step("kd", "jax", 60.0, 0.0, cache=True),
  ]
  got = {t["target"]: t for t in report.targets(rows)}
  t = got["rail_l step <= 1.05 x kd"]
  assert t["value"] == pytest.approx(1.04) and t["ok"]
  assert t["noise"] == pytest.approx((2 / 104 + 2 / 100) * 1.04) and t["within_noise"]  # |1.04 - 1.05| < 0.04
  t = got["rail_l step < alp_kd step"]
  assert t["ok"] and not t["within_noise"]
  t = got["rail_l step < ckd step"]
  assert not t["ok"] and t["within_noise"]
  t = got["kd: PyTorch / JAX step >= 1.3"]
  assert t["value"] == pytest.approx(1.4) and t["ok"] and t["noise"] == pytest.approx(0.02 * 1.4)
  assert got["kd: online / cached teacher step >= 1.5"]["value"] == pytest.approx(100 / 60)
  assert "rail_c step <= 1.05 x kd" not in got and "pkd: PyTorch / JAX step >= 1.3" not in got
