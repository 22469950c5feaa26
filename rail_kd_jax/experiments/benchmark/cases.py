"""The JAX rows' train step: one method on one shape, built, compiled and run."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rail_kd_jax import models
from rail_kd_jax.core.defaults import base_config
from rail_kd_jax.distill import methods as methods_lib
from rail_kd_jax.experiments.benchmark.analysis import cost_flops
from rail_kd_jax.experiments.benchmark.shapes import Shape
from rail_kd_jax.training import builders
from rail_kd_jax.training import parallel as parallel_lib
from rail_kd_jax.training.step import AXIS, StepSpec, make_train_step, teacher_outputs
from rail_kd_jax.training.train_state import TrainState

METHODS = tuple(methods_lib.METHODS)  # none, kd, pkd, alp_kd, ckd, rail_l, rail_c
# Benchmark-only variants: name -> (method, distill overrides). The plain `ckd` row is CKD
# on every token's hidden states (ckd_granularity='token', the authors' form and the
# default); ckd_pooled distils pooled vectors like RAIL-KD (and can use the teacher cache).
VARIANTS = {"ckd_pooled": ("ckd", {"ckd_granularity": "pooled"})}
ALL_METHODS = METHODS + tuple(VARIANTS)


def distill_config(method: str, **overrides):
  """config.distill for `method` (a name of METHODS or VARIANTS) with defaults + overrides."""
  dcfg = base_config().distill
  if method in VARIANTS:
    method, extra = VARIANTS[method]
    overrides = {**extra, **overrides}
  dcfg.method = method
  for k, v in overrides.items():
    dcfg[k] = v
  return dcfg


@dataclasses.dataclass
class JaxCase:
  """One method on one shape: the placed (or abstract) inputs of the train step and its compiled program."""

  state: Any  # placed (replicated) TrainState, or shapes when abstract
  teacher_params: Any
  batch: dict  # placed
  compiled: Any
  compile_s: float


def build_spec(
  shape: Shape,
  method: str,
  *,
  dtype=jnp.float32,
  scan_layers: bool = False,
  remat: bool = False,
  cached_teacher: bool = False,
  dcfg=None,
  attention: str = "auto",
):
  """The real StepSpec for `shape` and `method` (random-init modules); no params materialised.

  `attention`: the encoders' attention implementation (models.Encoder's `attention`).
  """
  dcfg = dcfg if dcfg is not None else distill_config(method)
  module_kw = dict(dtype=dtype, scan_layers=scan_layers, remat=remat)
  if attention != "auto":
    module_kw["attention"] = attention
  student = models.Encoder(shape.student, **module_kw)
  teacher = models.Encoder(shape.teacher, **module_kw)
  methods_lib.validate(
    dcfg,
    shape.student.num_hidden_layers,
    shape.teacher.num_hidden_layers,
    shape.student.hidden_size,
    shape.teacher.hidden_size,
  )
  config = base_config()
  config.distill = dcfg
  return builders.make_step_spec(
    config,
    student,
    teacher,
    methods_lib.get_method(dcfg.method),
    steps_per_epoch=100,
    total_steps=10_000,
    cached_teacher=cached_teacher,
  )


def init_state(spec: StepSpec, shape: Shape, rng: jax.Array, *, abstract: bool = False):
  """(TrainState, teacher params): materialised with HF-style init, or ShapeDtypeStructs."""
  k_s, k_t, k_h = jax.random.split(rng, 3)
  head = lambda k: spec.method.init_heads(
    k, spec.dcfg, shape.student.hidden_size, shape.teacher.hidden_size, spec.num_student_layers, spec.num_teacher_layers
  )
  if abstract:
    student_params = models.param_shapes(spec.student)
    teacher_params = None if spec.cached_teacher else models.param_shapes(spec.teacher)
    head_params = jax.eval_shape(head, k_h)
    state = jax.eval_shape(lambda p: TrainState.create(p, spec.tx), {"student": student_params, "heads": head_params})
    return state, teacher_params
  student_params = models.init_params(spec.student, k_s)
  teacher_params = None if spec.cached_teacher else models.init_params(spec.teacher, k_t)
  state = TrainState.create({"student": student_params, "heads": head(k_h)}, spec.tx)
  return state, teacher_params


def cached_teacher_arrays(spec: StepSpec, teacher_params: Any, batch: dict, dtype=jnp.bfloat16) -> dict:
  """The teacher-cache entries of one batch (what `teacher_cache` stores per example)."""
  out = jax.jit(lambda p, b: teacher_outputs(dataclasses.replace(spec, cached_teacher=False), p, b))(
    teacher_params, {k: jnp.asarray(v) for k, v in batch.items()}
  )
  return {
    "teacher_logits": np.asarray(out["logits"].astype(dtype)),
    "teacher_pooled": np.asarray(jnp.swapaxes(out["pooled"], 0, 1).astype(dtype)),
    "teacher_cls": np.asarray(jnp.swapaxes(out["cls"], 0, 1).astype(dtype)),
  }


def _abstract(par: parallel_lib.DataParallel, tree: Any, spec: P) -> Any:
  """ShapeDtypeStructs with the shardings `DataParallel(shard_map)` would give the values."""
  sharding = NamedSharding(par.mesh, spec)
  return jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(
      np.shape(x), np.asarray(x).dtype if isinstance(x, np.ndarray) else x.dtype, sharding=sharding
    ),
    tree,
  )


def compile_case(
  spec: StepSpec,
  shape: Shape,
  batch: dict,
  *,
  parallel: str = "shard_map",
  num_devices: int = 0,
  abstract: bool = False,
  teacher_params: Any = None,
  state: Any = None,
) -> JaxCase:
  """Places (or only describes, `abstract=True`) the inputs and compiles the train step.

  `compile_s` is the wall time of `lower(...).compile()` (tracing included).
  Abstract compilation needs parallel='shard_map' (it lowers with ShapeDtypeStructs).
  """
  par = parallel_lib.DataParallel(parallel, num_devices)
  if abstract and parallel != "shard_map":
    raise ValueError("abstract (compile-only) cases need parallel='shard_map'")
  if state is None:
    state, teacher_params = init_state(spec, shape, jax.random.PRNGKey(0), abstract=abstract)
  step_fn = par.compile_train(make_train_step(spec))
  if abstract:
    args = (_abstract(par, state, P()), _abstract(par, teacher_params, P()), _abstract(par, batch, P(AXIS)))
  else:
    args = (
      par.replicate(state),
      par.replicate(teacher_params) if teacher_params is not None else None,
      par.shard_batch(batch),
    )
  t0 = time.perf_counter()
  compiled = step_fn.lower(*args).compile()
  compile_s = time.perf_counter() - t0
  return JaxCase(state=args[0], teacher_params=args[1], batch=args[2], compiled=compiled, compile_s=compile_s)


def unrolled_flops(
  shape: Shape,
  method: str,
  batch: dict,
  *,
  dtype=jnp.float32,
  cached_teacher: bool = False,
  parallel: str = "shard_map",
) -> float | None:
  """FLOPs of the step with unrolled layers, from the lowered (unoptimised) HLO; no compile.

  XLA's cost analysis counts a while loop's body once, so a `scan_layers` step reports
  about one layer's FLOPs per stack; this gives the real count for those rows.
  """
  spec = build_spec(shape, method, dtype=dtype, cached_teacher=cached_teacher)
  par = parallel_lib.DataParallel(parallel, 0)
  state, teacher_params = init_state(spec, shape, jax.random.PRNGKey(0), abstract=True)
  args = (_abstract(par, state, P()), _abstract(par, teacher_params, P()), _abstract(par, batch, P(AXIS)))
  try:
    lowered = par.compile_train(make_train_step(spec)).lower(*args)
  except Exception:  # a step that does not lower has no count
    return None
  return cost_flops(lowered)


def jax_runner(case: JaxCase):
  """`(step, block)` for `timing.time_interleaved`: each `step()` runs one update of the case's state."""
  holder = {"state": case.state}

  def step():
    holder["state"], metrics = case.compiled(holder["state"], case.teacher_params, case.batch)
    return metrics["loss"]

  return step, jax.block_until_ready
