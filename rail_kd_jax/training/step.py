"""The per-device train and eval steps: pure functions, one XLA program each.

`make_train_step` returns `train_step(state, teacher_params, batch) -> (state, metrics)`
for ONE device's share of the batch. `parallel.py` wraps it with `jax.pmap` or
`jax.jit(jax.shard_map(...))`; the gradient all-reduce is the `lax.pmean` over
`AXIS` inside it. Everything in one step -- the mapping sample, the frozen
teacher's forward, the gather of the sampled teacher layers, the student's
forward and backward, every loss term and the AdamW update -- is traced into
the same program, and the mapping is a traced int array, so a new mapping never
recompiles.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax

from rail_kd_jax.distill import diagnostics, layer_sampling, pooling
from rail_kd_jax.distill import methods as methods_lib
from rail_kd_jax.training.train_state import TrainState

AXIS = "batch"
# Tags folded into the run seed so that the streams never collide.
DROPOUT_TAG = 0x44524F50  # "DROP"


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """Everything static about the step (hashable closures, ints, strings)."""

  student: nn.Module
  teacher: nn.Module | None
  method: methods_lib.Method
  dcfg: Any  # the `config.distill` ConfigDict (read only)
  tx: optax.GradientTransformation
  schedule: Callable[[Any], Any]
  seed: int
  num_student_layers: int
  num_teacher_layers: int
  steps_per_epoch: int
  is_regression: bool
  grad_accum_steps: int = 1
  # When True the batch carries the teacher's outputs (teacher cache) and the
  # teacher forward is skipped.
  cached_teacher: bool = False


def mapping_counter(spec: StepSpec, step: jax.Array) -> jax.Array:
  """The counter of `mapping_key`: step // k (resample_every_steps=k > 0), the step, or the epoch."""
  every = int(spec.dcfg.resample_every_steps)
  if every > 0:
    return step // every
  if spec.dcfg.resample_every == "step":
    return step
  return step // max(1, spec.steps_per_epoch)


def current_mapping(spec: StepSpec, step: jax.Array) -> jax.Array:
  """int32 [M]: teacher layer paired with student layers 1..M at `step`."""
  if not spec.method.uses_mapping:
    return jnp.zeros((max(spec.num_student_layers, 1),), jnp.int32)
  key = layer_sampling.mapping_key(spec.seed, mapping_counter(spec, step))
  return methods_lib.mapping_for(spec.dcfg, key, spec.num_teacher_layers, spec.num_student_layers)


def dropout_key(seed: int, step: jax.Array, device_index: jax.Array) -> jax.Array:
  """Folded from (seed, step, device index): replayable, distinct per device."""
  key = jax.random.fold_in(jax.random.PRNGKey(seed), DROPOUT_TAG)
  return jax.random.fold_in(jax.random.fold_in(key, step), device_index)


def teacher_outputs(spec: StepSpec, teacher_params: Any, batch: dict) -> dict:
  """Frozen, deterministic teacher: logits and pooled states of every layer (float32)."""
  if spec.cached_teacher:
    # Cached arrays are example-major, [b, L+1, H], so that they split over devices
    # like every batch array (teacher_cache.py); methods want [L+1, b, H].
    # The cache holds the mean and the first token (teacher_cache); pooled is the run's pooling.
    pooled = batch["teacher_cls"] if methods_lib.pooling_of(spec.dcfg) == "cls" else batch["teacher_pooled"]
    return {
      "logits": batch["teacher_logits"].astype(jnp.float32),
      "pooled": jnp.swapaxes(pooled, 0, 1).astype(jnp.float32),
      "cls": jnp.swapaxes(batch["teacher_cls"], 0, 1).astype(jnp.float32),
      "hidden": None,
    }
  out = spec.teacher.apply(
    {"params": teacher_params},
    batch["input_ids"],
    batch["attention_mask"],
    token_type_ids=batch.get("token_type_ids"),
    deterministic=True,
  )
  hidden = lax.stop_gradient(out.hidden_states)
  logits = lax.stop_gradient(out.logits).astype(jnp.float32)
  mask = batch["attention_mask"]
  return {
    "logits": logits,
    "pooled": pooling.pool(hidden, mask, methods_lib.pooling_of(spec.dcfg)),
    "cls": pooling.pool(hidden, mask, "cls"),
    "hidden": hidden if spec.method.needs_token_states else None,
  }


def _loss_fn(spec: StepSpec, params: Any, teacher: dict | None, batch: dict, mapping: jax.Array, rng: jax.Array | None):
  deterministic = rng is None
  out = spec.student.apply(
    {"params": params["student"]},
    batch["input_ids"],
    batch["attention_mask"],
    token_type_ids=batch.get("token_type_ids"),
    deterministic=deterministic,
    rngs=None if deterministic else {"dropout": rng},
  )
  mask = batch["attention_mask"]
  hidden = out.hidden_states
  inputs = methods_lib.MethodInputs(
    student_logits=out.logits.astype(jnp.float32),
    labels=batch["labels"],
    example_mask=batch["example_mask"].astype(jnp.float32),
    label_mask=batch.get("label_mask"),
    student_pooled=pooling.pool(hidden, mask, methods_lib.pooling_of(spec.dcfg)),
    student_cls=pooling.pool(hidden, mask, "cls"),
    teacher_logits=None if teacher is None else teacher["logits"],
    teacher_pooled=None if teacher is None else teacher["pooled"],
    teacher_cls=None if teacher is None else teacher["cls"],
    student_hidden=hidden if spec.method.needs_token_states else None,
    teacher_hidden=None if teacher is None else teacher["hidden"],
    token_mask=mask,
    mapping=mapping,
    is_regression=spec.is_regression,
    axis_name=AXIS,
  )
  loss, terms = spec.method.loss(params["heads"], inputs, spec.dcfg)
  return loss, terms


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def make_train_step(spec: StepSpec) -> Callable:
  """Returns the per-device `train_step(state, teacher_params, batch) -> (state, metrics)`.

  `batch` holds this device's examples: input_ids/attention_mask/token_type_ids
  int32 [b, T], labels [b], example_mask float32 [b], label_mask float32 [b] when the
  train split holds unlabelled text (0 there: no cross-entropy), plus teacher_* arrays
  when the teacher is cached. Must run inside a named axis `AXIS` (pmap/shard_map).
  """
  needs_teacher = spec.method.needs_teacher
  k = spec.grad_accum_steps

  def train_step(state: TrainState, teacher_params: Any, batch: dict):
    step = state.step
    mapping = current_mapping(spec, step)
    rng = dropout_key(spec.seed, step, lax.axis_index(AXIS))
    grad_fn = jax.value_and_grad(lambda p, t, b, r: _loss_fn(spec, p, t, b, mapping, r), has_aux=True)

    def micro(b, r):
      teacher = teacher_outputs(spec, teacher_params, b) if needs_teacher else None
      (_, terms), grads = grad_fn(state.params, teacher, b, r)
      return terms, grads

    if k == 1:
      terms, grads = micro(batch, rng)
    else:
      micro_batches = jax.tree.map(lambda x: x.reshape((k, x.shape[0] // k) + x.shape[1:]), batch)

      def body(carry, xs):
        i, b = xs
        terms, grads = micro(b, jax.random.fold_in(rng, i))
        return jax.tree.map(jnp.add, carry, (terms, grads)), None

      zeros = jax.eval_shape(lambda: micro(jax.tree.map(lambda x: x[0], micro_batches), rng))
      zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zeros)
      (terms, grads), _ = lax.scan(body, zeros, (jnp.arange(k), micro_batches))
      terms, grads = jax.tree.map(lambda x: x / k, (terms, grads))

    grads = lax.pmean(grads, AXIS)
    terms = lax.pmean(terms, AXIS)
    # The collapse diagnostics are read-outs, not terms: they never decide a skip.
    loss_terms = {k: v for k, v in terms.items() if k not in diagnostics.ALL_NAMES}
    finite = jnp.logical_and(_all_finite(grads), _all_finite(loss_terms))

    # A non-finite loss or gradient skips the update entirely (params and optimizer
    # moments unchanged) and is counted. A cond rather than a select over old and new
    # trees: the select kept one more copy of the params alive (XLA memory analysis,
    # docs/notes/benchmark_runs.md, "The non-finite guard").
    def update(grads, opt_state, params):
      updates, new_opt_state = spec.tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), new_opt_state

    def keep(grads, opt_state, params):
      del grads
      return params, opt_state

    new_params, new_opt_state = lax.cond(finite, update, keep, grads, state.opt_state, state.params)
    new_state = state.replace(
      step=step + 1,
      params=new_params,
      opt_state=new_opt_state,
      skipped=state.skipped + jnp.where(finite, 0, 1).astype(jnp.int32),
    )
    metrics = dict(terms)
    metrics.update(
      grad_norm=optax.tree.norm(grads),
      param_norm=optax.tree.norm(state.params["student"]),
      learning_rate=jnp.asarray(spec.schedule(step), jnp.float32),
      mapping=mapping,
      skipped=new_state.skipped,
      finite=finite.astype(jnp.int32),
    )
    return new_state, metrics

  return train_step


def make_eval_step(spec: StepSpec) -> Callable:
  """Per-device `eval_step(params, batch) -> {"logits": [b, C], "mask": [b], "loss_sum", "count"}`.

  The eval loss is the student's task loss (cross-entropy, MSE for regression),
  summed over real examples so that hosts and devices can be reduced exactly.
  """

  def eval_step(params: Any, batch: dict):
    out = spec.student.apply(
      {"params": params["student"]},
      batch["input_ids"],
      batch["attention_mask"],
      token_type_ids=batch.get("token_type_ids"),
      deterministic=True,
    )
    logits = out.logits.astype(jnp.float32)
    mask = batch["example_mask"].astype(jnp.float32)
    if spec.is_regression:
      per_example = jnp.square(logits[:, 0] - batch["labels"].astype(jnp.float32))
    else:
      per_example = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"].astype(jnp.int32))
    loss_sum = lax.psum(jnp.sum(per_example * mask), AXIS)
    count = lax.psum(jnp.sum(mask), AXIS)
    return {"logits": logits, "mask": mask, "loss_sum": loss_sum, "count": count}

  return eval_step
