"""scan_layers and remat give the plain stack's outputs and gradients; dropout behaviour."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rail_kd_jax import models

CFG = models.EncoderConfig(
  model_type="bert",
  vocab_size=60,
  hidden_size=32,
  num_hidden_layers=3,
  num_attention_heads=4,
  intermediate_size=64,
  max_position_embeddings=16,
  num_labels=3,
  initializer_range=0.2,
)


def _inputs():
  rng = np.random.default_rng(0)
  ids = rng.integers(1, 60, size=(2, 7)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, 4:] = 0
  return jnp.asarray(ids), jnp.asarray(mask)


def _loss_and_grads(model, params):
  ids, mask = _inputs()

  def loss(p):
    out = model.apply({"params": p}, ids, mask)
    return jnp.sum(out.logits**2) + jnp.mean(out.hidden_states**2), out

  (value, out), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  return value, out, models.unstack_layers(grads)


def test_scan_and_remat_match_plain():
  cfg = CFG
  plain = models.Encoder(cfg)
  params = models.init_params(plain, jax.random.PRNGKey(0))
  ref_value, ref_out, ref_grads = _loss_and_grads(plain, params)
  assert ref_out.hidden_states.shape == (4, 2, 7, 32)
  for scan, remat in [(True, False), (False, True), (True, True)]:
    model = models.Encoder(cfg, scan_layers=scan, remat=remat)
    p = models.convert_layout(params, scan_layers=scan)
    value, out, grads = _loss_and_grads(model, p)
    np.testing.assert_allclose(out.hidden_states, ref_out.hidden_states, atol=1e-5)
    np.testing.assert_allclose(out.logits, ref_out.logits, atol=1e-5)
    np.testing.assert_allclose(value, ref_value, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), grads, ref_grads)


def test_scanned_init_has_leading_layer_axis_and_same_shapes():
  scanned = models.param_shapes(models.Encoder(CFG, scan_layers=True))
  plain = models.param_shapes(models.Encoder(CFG))
  k = scanned["encoder"]["layer"]["attention"]["self"]["query"]["kernel"]
  assert k.shape == (3, 32, 32)
  stacked = jax.eval_shape(models.stack_layers, plain)
  assert jax.tree.map(lambda x: x.shape, stacked) == jax.tree.map(lambda x: x.shape, scanned)


@pytest.mark.parametrize("scan", [False, True])
def test_dropout_only_when_not_deterministic(scan):
  model = models.Encoder(CFG, scan_layers=scan)
  params = models.init_params(model, jax.random.PRNGKey(0))
  ids, mask = _inputs()
  run = jax.jit(
    lambda k, det: model.apply({"params": params}, ids, mask, deterministic=det, rngs={"dropout": k}), static_argnums=1
  )
  det = run(jax.random.PRNGKey(1), True)
  np.testing.assert_array_equal(det.hidden_states, run(jax.random.PRNGKey(2), True).hidden_states)
  drop = lambda k: run(jax.random.PRNGKey(k), False)  # noqa: E731
  a, b, a2 = drop(1), drop(2), drop(1)
  assert not np.allclose(a.hidden_states, det.hidden_states)
  assert not np.allclose(a.hidden_states, b.hidden_states)
  np.testing.assert_array_equal(a.hidden_states, a2.hidden_states)
  if scan:  # every layer draws its own mask
    h = np.asarray(a.hidden_states)
    assert not np.allclose(h[2] - det.hidden_states[2], h[3] - det.hidden_states[3])


def test_too_long_input_names_max_position_embeddings():
  model = models.Encoder(CFG)
  shapes = models.param_shapes(model)
  ids = jnp.ones((1, CFG.max_position_embeddings + 1), jnp.int32)
  with pytest.raises(ValueError, match="max_position_embeddings=16"):
    jax.eval_shape(lambda p: model.apply({"params": p}, ids), shapes)
