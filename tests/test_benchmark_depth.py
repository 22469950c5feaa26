"""The depth section on tiny shapes: every method at every depth, online, cached and PyTorch, and
the intermediate term's rows (the step minus the kd step timed beside it)."""

import os

import pytest

from rail_kd_jax.experiments.benchmark import depth, report, sections

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def rows():
  opts = sections.Options(
    peers=("pytorch", "textbrewer"),  # the section keeps only the PyTorch eager peer
    precisions=("float32",),
    warmup=0,
    windows=2,
    gemm=False,
    num_devices=1,
  )
  return depth.bench_depth(opts, 1e12, depths=(2, 4), width=32, heads=4, ff=64, batch=4, length=16, vocab=128)


def test_every_method_at_every_depth_with_its_term(rows):
  steps = [r for r in rows if r["kind"] == "depth_step"]
  assert {(r["teacher_layers"], r["student_layers"]) for r in steps} == {(2, 1), (4, 2)}
  for n in (2, 4):
    for m in depth.METHODS:
      at = {(r["impl"], r["teacher_cache"]) for r in steps if r["method"] == m and r["teacher_layers"] == n}
      want = {("jax", False), ("pytorch", False)}
      if sections.cacheable(m):
        want.add(("jax", True))
      assert at == want, (n, m, at)
  assert not any(r["impl"] == "textbrewer" for r in steps)
  terms = [r for r in rows if r["kind"] == "depth_term"]
  by = {(r["method"], r["teacher_layers"], r["impl"], r["teacher_cache"]): r for r in terms}
  for r in steps:
    k = (r["method"], r["teacher_layers"], r["impl"], r["teacher_cache"])
    if r["method"] in depth.INTERMEDIATE:
      kd = next(
        x for x in steps if x["method"] == "kd" and (x["teacher_layers"], x["impl"], x["teacher_cache"]) == k[1:]
      )
      t = by[k]
      assert t["term_ms"] == pytest.approx(r["step_ms_median"] - kd["step_ms_median"])
      assert t["term_share"] == pytest.approx(t["term_ms"] / r["step_ms_median"])
      if r["impl"] == "jax":  # XLA's count: the term adds work to the program
        assert t["term_flops"] == pytest.approx(r["flops_per_step"] - kd["flops_per_step"]) and t["term_flops"] > 0
    else:
      assert k not in by


def test_depth_tables_and_chart(rows, tmp_path):
  md = "\n".join(depth.markdown(rows))
  for n in (2, 4):
    assert f"### Teacher {n} layers, student {n // 2}" in md
  for m in depth.METHODS:
    assert f"| {m} |" in md
  path = depth.write_chart(str(tmp_path / "depth.png"), rows)
  assert path and os.path.getsize(path) > 0
  meta = dict(
    device="cpu",
    peak_gflops=1.0,
    peak_gflops_jax=1.0,
    peak_gflops_pytorch=None,
    load_start=0.0,
    load_end=0.0,
    versions="",
    options=dict(warmup=0, windows=2, steps_per_window=1),
    wall_s=1.0,
    shape_labels={},
  )
  report.write_markdown(str(tmp_path / "benchmark.md"), rows, meta)
  text = open(tmp_path / "benchmark.md").read()
  assert "## Training time as the teacher deepens (float32)" in text
  assert "## depth-2" not in text  # depth rows stay out of the fixed-shape tables


def test_student_layers_rule():
  assert [depth.student_layers(n) for n in (2, 4, 6, 12, 24)] == [1, 2, 3, 6, 6]
