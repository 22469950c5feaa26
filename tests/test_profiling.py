"""profiling: trace a compiled program and attribute time to its instructions."""

import jax
import jax.numpy as jnp
import numpy as np

from rail_kd_jax.experiments.benchmark import profiling


def test_profile_step_attributes_matmul_and_passes(tmp_path):
  w = jnp.asarray(np.random.default_rng(0).standard_normal((256, 256), np.float32))
  x = jnp.ones((512, 256), jnp.float32)

  def loss(w, x):
    return jnp.sum(jnp.tanh(x @ w) ** 2)

  f = jax.jit(jax.grad(loss))
  compiled = f.lower(w, x).compile()
  meta = profiling.instruction_metadata(compiled.as_text())
  assert any(m["matmul"] for m in meta.values())
  assert any("transpose(jvp(" in m["op_name"] for m in meta.values())
  summary = profiling.profile_step(lambda: compiled(w, x), jax.block_until_ready, compiled, str(tmp_path), steps=2)
  assert summary["by_kind"]["matmul"] > 0
  assert summary["by_pass"]["backward"] > 0 and summary["by_pass"]["forward (differentiated)"] > 0
  assert abs(sum(summary["by_kind"].values()) - summary["total_ms_per_step"]) < 1e-6
  md = (tmp_path / "ops.md").read_text()
  assert "| matmul |" in md and "| backward |" in md
  assert (tmp_path / "ops.json").is_file()
