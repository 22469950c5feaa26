"""The `attention` option: 'dot_product' (jax.nn.dot_product_attention) gives the 'matmul'
form's outputs and gradients, matches transformers, and 'auto' picks by backend.

Tolerances (float32, XLA CPU): outputs absolute 1e-5. Gradients per param leaf, relative
to that leaf's largest entry: max|g - g_ref| / max|g_ref| <= 1e-5; the attention key
biases are the exception: their gradient is analytically zero (softmax is invariant to a
per-query shift of the scores), so both sides are float32 noise, and their difference is
taken relative to the largest gradient entry of the model instead.
Set RAIL_KD_PRINT_ATTENTION_DIFFS=1 (with pytest -s) to print the measured differences.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from rail_kd_jax import models
from rail_kd_jax.training import train
from rail_kd_jax.core.errors import ConfigError
from rail_kd_jax.models.attention import SelfAttention, resolve_attention
from rail_kd_jax.models.dropout import Dropout
from rail_kd_jax.models.primitives import hf_dense

import helpers

TOL = 1e-5
B, T, VOCAB = 3, 12, 97
PRINT = os.environ.get("RAIL_KD_PRINT_ATTENTION_DIFFS")


def _config(family: str, **kw) -> models.EncoderConfig:
  return models.EncoderConfig(
    model_type=family,
    vocab_size=VOCAB,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=40,
    initializer_range=0.2,
    num_labels=3,
    pad_token_id=1 if family == "roberta" else 0,
    **kw,
  )


def _batch(pad_id: int):
  """[B, T] ids and mask: one full row, one right-padded row, one non-contiguous mask."""
  rng = np.random.default_rng(0)
  ids = rng.integers(3, VOCAB, size=(B, T)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, 7:] = 0
  mask[2, [1, 4, 5, 9, 10, 11]] = 0
  ids[mask == 0] = pad_id
  return ids, mask


def _rel(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def _forward(model, deterministic=True):
  """A jitted (params, ids, mask, dropout key) -> (hidden [L+1, B, T, H], logits [B, C]) as numpy."""

  @jax.jit
  def fn(params, ids, mask, key):
    out = model.apply({"params": params}, ids, mask, deterministic=deterministic, rngs={"dropout": key})
    return out.hidden_states, out.logits

  return lambda *args: tuple(np.asarray(x) for x in fn(*args))


def _loss_fn(model, ids, mask):
  w = jax.random.normal(jax.random.PRNGKey(1), (B, model.config.num_labels))

  def loss(p):
    out = model.apply({"params": p}, ids, mask)
    return jnp.sum(out.logits * w) + jnp.mean(out.hidden_states**2), out

  return loss


def _run(model, params, ids, mask):
  """(hidden [L+1, B, T, H], logits [B, C], grads in the plain layout) of a scalar loss of every output."""
  (_, out), grads = jax.jit(jax.value_and_grad(_loss_fn(model, ids, mask), has_aux=True))(params)
  return np.asarray(out.hidden_states), np.asarray(out.logits), models.unstack_layers(grads)


def _grad_errors(grads, ref_grads) -> dict[str, float]:
  """{param path: error} as the module docstring defines it."""
  flat = {"/".join(str(k.key) for k in path): np.asarray(g) for path, g in jax.tree_util.tree_leaves_with_path(grads)}
  ref = {
    "/".join(str(k.key) for k in path): np.asarray(g) for path, g in jax.tree_util.tree_leaves_with_path(ref_grads)
  }
  assert flat.keys() == ref.keys()
  largest = max(np.abs(g).max() for g in ref.values())
  out = {}
  for name, g in ref.items():
    scale = largest if name.endswith("self/key/bias") else np.abs(g).max()
    out[name] = float(np.abs(flat[name].astype(np.float64) - g).max() / scale)
  return out


def _report(name, hidden_err, logits_err, grad_err):
  if PRINT:
    print(f"{name}: hidden max-abs {hidden_err:.2e}, logits max-abs {logits_err:.2e}, grads max-rel {grad_err:.2e}")


# Both families and both layouts; the unrolled/scanned equivalence itself is
# tests/test_models_scan.py's.
@pytest.mark.parametrize("family, scan", [("bert", False), ("roberta", True)])
def test_dot_product_matches_matmul(family, scan):
  model = models.Encoder(_config(family), scan_layers=scan)
  params = models.init_params(model, jax.random.PRNGKey(0))
  ids, mask = _batch(model.config.pad_token_id)
  h_mm, l_mm, g_mm = _run(model.clone(attention="matmul"), params, ids, mask)
  h_dp, l_dp, g_dp = _run(model.clone(attention="dot_product"), params, ids, mask)
  hidden_err, logits_err = np.abs(h_dp - h_mm).max(), np.abs(l_dp - l_mm).max()
  grad_err = _grad_errors(g_dp, g_mm)
  _report(f"dot_product vs matmul, {family}, scan={scan}", hidden_err, logits_err, max(grad_err.values()))
  assert hidden_err < TOL and logits_err < TOL, (hidden_err, logits_err)
  assert max(grad_err.values()) < TOL, {k: v for k, v in grad_err.items() if v >= TOL}
  assert np.abs(l_mm).max() > 1e-2  # not a comparison of near-zeros


def test_dot_product_trains_with_hidden_dropout():
  # Attention dropout 0: dot_product runs in training calls, and the hidden dropout
  # masks are the same as matmul's (same rng, same module paths).
  model = models.Encoder(_config("bert", hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.0))
  params = models.init_params(model, jax.random.PRNGKey(0))
  ids, mask = _batch(0)
  matmul = _forward(model.clone(attention="matmul"), deterministic=False)
  dot_product = _forward(model.clone(attention="dot_product"), deterministic=False)
  h_mm, l_mm = matmul(params, ids, mask, jax.random.PRNGKey(2))
  h_dp, l_dp = dot_product(params, ids, mask, jax.random.PRNGKey(2))
  h_other, _ = dot_product(params, ids, mask, jax.random.PRNGKey(3))
  assert np.abs(h_dp - h_other).max() > 1e-2  # dropout is active
  assert np.abs(h_dp - h_mm).max() < TOL and np.abs(l_dp - l_mm).max() < TOL


class _TextbookAttention(SelfAttention):
  """softmax(q k^T / sqrt(D) + mask) -> dropout -> @ v, written out (the reference form)."""

  @nn.compact
  def __call__(self, x, mask_bias):
    cfg = self.config
    b, t, _ = x.shape
    h, d = cfg.num_attention_heads, cfg.head_dim
    q, k, v = (
      hf_dense(cfg, cfg.hidden_size, self.dtype, self.param_dtype, name)(x).reshape(b, t, h, d).transpose(0, 2, 1, 3)
      for name in ("query", "key", "value")
    )
    probs = jax.nn.softmax(q @ k.transpose(0, 1, 3, 2) / np.sqrt(d) + mask_bias, axis=-1)
    probs = Dropout(cfg.attention_probs_dropout_prob)(probs, deterministic=self.deterministic)
    return (probs @ v).transpose(0, 2, 1, 3).reshape(b, t, h * d)


@pytest.mark.parametrize("deterministic", [True, False])
def test_matmul_form_is_the_textbook_softmax_with_dropout(deterministic):
  # The matmul form defers the softmax's normalisation to the output and drops out the
  # unnormalised weights: the same function, the same dropout mask, outputs and input
  # gradients within float32 rounding of the textbook form.
  cfg = _config("bert", attention_probs_dropout_prob=0.3)
  x = jax.random.normal(jax.random.PRNGKey(0), (B, T, cfg.hidden_size))
  _, mask = _batch(0)
  mask_bias = jnp.where(jnp.asarray(mask)[:, None, None, :] > 0, 0.0, jnp.finfo(jnp.float32).min)
  ours = SelfAttention(cfg, deterministic=deterministic, attention="matmul")
  ref = _TextbookAttention(cfg, deterministic=deterministic, attention="matmul")
  params = ours.init({"params": jax.random.PRNGKey(1), "dropout": jax.random.PRNGKey(2)}, x, mask_bias)
  rngs = {"dropout": jax.random.PRNGKey(2)}
  w = jax.random.normal(jax.random.PRNGKey(3), x.shape)
  run = lambda m: jax.jit(jax.value_and_grad(lambda x: jnp.sum(m.apply(params, x, mask_bias, rngs=rngs) * w)))(x)
  (l_ours, g_ours), (l_ref, g_ref) = run(ours), run(ref)
  y_ours, y_ref = ours.apply(params, x, mask_bias, rngs=rngs), ref.apply(params, x, mask_bias, rngs=rngs)
  assert np.abs(np.asarray(y_ours) - np.asarray(y_ref)).max() < TOL
  assert _rel(g_ours, g_ref) < TOL and abs(float(l_ours - l_ref)) < 1e-3
  if not deterministic:  # dropout is active, and it is the same mask on both sides
    y_det = ours.clone(deterministic=True).apply(params, x, mask_bias)
    assert np.abs(np.asarray(y_ours) - np.asarray(y_det)).max() > 1e-2


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_training_call_without_dropout_is_the_evaluation_function(family):
  # Training calls fold the exact GELU's 1/sqrt(2) into the intermediate and output
  # kernels ('gelu' only; roberta here is 'gelu_new', the unfolded control): with every
  # dropout rate 0 they compute the evaluation call's function, outputs and gradients.
  act = "gelu" if family == "bert" else "gelu_new"
  model = models.Encoder(_config(family, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, hidden_act=act))
  params = models.init_params(model, jax.random.PRNGKey(0))
  ids, mask = _batch(model.config.pad_token_id)
  w = jax.random.normal(jax.random.PRNGKey(1), (B, model.config.num_labels))

  def run(deterministic):
    def loss(p):
      out = model.apply({"params": p}, ids, mask, deterministic=deterministic, rngs={"dropout": jax.random.PRNGKey(2)})
      return jnp.sum(out.logits * w) + jnp.mean(out.hidden_states**2), out

    (_, out), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    return np.asarray(out.hidden_states), np.asarray(out.logits), grads

  h_train, l_train, g_train = run(False)
  h_eval, l_eval, g_eval = run(True)
  assert np.abs(h_train - h_eval).max() < TOL and np.abs(l_train - l_eval).max() < TOL
  assert max(_grad_errors(g_train, g_eval).values()) < TOL
  assert np.abs(l_eval).max() > 1e-2


def test_auto_on_cpu_is_matmul_bitwise():
  model = models.Encoder(_config("roberta", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1))
  assert model.attention == "auto"
  ids, mask = _batch(1)
  # The same program, training step included, in both layouts...
  for scan in (False, True):
    m = model.clone(scan_layers=scan)
    shapes = models.param_shapes(m)
    programs = [
      str(jax.make_jaxpr(jax.grad(lambda p, a=a: _loss_fn(a, ids, mask)(p)[0]))(shapes))
      for a in (m, m.clone(attention="matmul"))
    ]
    assert programs[0] == programs[1]
  # ...and the same bits from a training-mode forward.
  params = models.init_params(model, jax.random.PRNGKey(0))
  key = jax.random.PRNGKey(2)
  auto = _forward(model, deterministic=False)(params, ids, mask, key)
  matmul = _forward(model.clone(attention="matmul"), deterministic=False)(params, ids, mask, key)
  for a, b in zip(auto, matmul):
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- PyTorch


def _torch_model(family: str):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  torch.manual_seed(0)
  common = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=40,
    initializer_range=0.2,
    num_labels=3,
    attn_implementation="eager",
  )
  if family == "bert":
    return transformers.BertForSequenceClassification(transformers.BertConfig(**common)).eval()
  cfg = transformers.RobertaConfig(hidden_act="gelu_new", **common)
  return transformers.RobertaForSequenceClassification(cfg).eval()


# (our param path, HF state-dict key without the family prefix, transposed)
_GRAD_PARAMS = [
  (("embeddings", "word_embeddings", "embedding"), "embeddings.word_embeddings.weight", False),
  (("encoder", "layer_0", "attention", "self", "query", "kernel"), "encoder.layer.0.attention.self.query.weight", True),
  (("encoder", "layer_0", "attention", "self", "query", "bias"), "encoder.layer.0.attention.self.query.bias", False),
  (
    ("encoder", "layer_0", "attention", "output", "dense", "kernel"),
    "encoder.layer.0.attention.output.dense.weight",
    True,
  ),
  (("encoder", "layer_1", "attention", "self", "value", "kernel"), "encoder.layer.1.attention.self.value.weight", True),
  (("encoder", "layer_1", "output", "LayerNorm", "scale"), "encoder.layer.1.output.LayerNorm.weight", False),
]


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_dot_product_matches_pytorch(tmp_path, family):
  torch = pytest.importorskip("torch")
  ref = _torch_model(family)
  ref.save_pretrained(tmp_path)
  ids, mask = _batch(ref.config.pad_token_id)
  w = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (B, 3)))

  out = ref(
    input_ids=torch.tensor(ids, dtype=torch.long),
    attention_mask=torch.tensor(mask, dtype=torch.long),
    output_hidden_states=True,
  )
  ref_hidden = torch.stack(out.hidden_states)
  ref_loss = (out.logits * torch.tensor(w)).sum() + (ref_hidden**2).mean()
  ref_loss.backward()
  named = dict(ref.named_parameters())

  model, params = models.load_pretrained(tmp_path, attention="dot_product")
  assert model.attention == "dot_product"
  hidden, logits, grads = _run(model, params, ids, mask)
  hidden_err = np.abs(hidden - ref_hidden.detach().numpy()).max()
  logits_err = np.abs(logits - out.logits.detach().numpy()).max()
  grad_err = {}
  for path, key, transpose in _GRAD_PARAMS:
    g = grads
    for k in path:
      g = g[k]
    g_ref = named[f"{family}.{key}"].grad.numpy()
    grad_err[key] = _rel(np.asarray(g), g_ref.T if transpose else g_ref)
  _report(f"dot_product vs PyTorch eager, {family}", hidden_err, logits_err, max(grad_err.values()))
  assert hidden_err < TOL and logits_err < TOL, (hidden_err, logits_err)
  assert max(grad_err.values()) < TOL, grad_err
  assert np.abs(logits).max() > 1e-2


# ----------------------------------------------------------------------------- the rule


def test_resolve_attention_rule():
  bf16, f32 = jnp.bfloat16, jnp.float32
  for backend in ("cpu", "tpu"):
    for dtype in (bf16, f32):
      assert resolve_attention("auto", dtype, True, 0.1, backend=backend) == "matmul"
  assert resolve_attention("auto", bf16, True, 0.1, backend="gpu") == "dot_product"
  assert resolve_attention("auto", jnp.float16, True, 0.1, backend="gpu") == "dot_product"
  assert resolve_attention("auto", bf16, False, 0.0, backend="gpu") == "dot_product"
  assert resolve_attention("auto", bf16, False, 0.1, backend="gpu") == "matmul"
  assert resolve_attention("auto", f32, True, 0.0, backend="gpu") == "matmul"
  for backend in ("cpu", "gpu"):
    assert resolve_attention("matmul", bf16, False, 0.1, backend=backend) == "matmul"
    assert resolve_attention("dot_product", f32, True, 0.1, backend=backend) == "dot_product"
    assert resolve_attention("dot_product", f32, False, 0.0, backend=backend) == "dot_product"
  assert resolve_attention("auto", f32, True, 0.0) == "matmul"  # this test runs on CPU
  with pytest.raises(ValueError, match="set model.attention_dropout=0 or use attention='matmul'"):
    resolve_attention("dot_product", f32, False, 0.1)
  with pytest.raises(ValueError, match="choose one of: auto, matmul, dot_product"):
    resolve_attention("flash", f32, True, 0.0)
  assert models.ATTENTION_IMPLS == ("auto", "matmul", "dot_product")


def test_dot_product_training_call_with_attention_dropout_raises():
  model = models.Encoder(_config("bert", attention_probs_dropout_prob=0.1), attention="dot_product")
  params = models.param_shapes(model)
  ids, mask = _batch(0)
  jax.eval_shape(lambda p: model.apply({"params": p}, ids, mask), params)  # deterministic: fine
  with pytest.raises(ValueError, match="applies no attention dropout"):
    jax.eval_shape(
      lambda p: model.apply({"params": p}, ids, mask, deterministic=False, rngs={"dropout": jax.random.PRNGKey(0)}),
      params,
    )


def _config_error(tmp_path, **overrides) -> str:
  config = helpers.tiny_config(**{"mode": "finetune", "train.export": False, "train.plots": False, **overrides})
  with pytest.raises(ConfigError) as err:
    train.Trainer.create(config, str(tmp_path / "run"))
  return str(err.value)


def test_config_refuses_unknown_attention(tmp_path):
  message = _config_error(tmp_path, **{"model.attention": "flash"})
  assert message == "model.attention='flash' is not valid; choose one of: auto, matmul, dot_product"


def test_config_refuses_dot_product_with_attention_dropout(tmp_path):
  message = _config_error(tmp_path, **{"model.attention": "dot_product", "model.attention_dropout": 0.1})
  assert "model.attention='dot_product' applies no attention dropout" in message
  assert "--config.model.attention_dropout=0" in message and "\n" not in message


def test_sdpa_implementation_asks_for_cudnn_only_where_it_applies():
  from rail_kd_jax.models.attention import sdpa_implementation

  assert sdpa_implementation(jnp.bfloat16, 64, 128, backend="gpu") == "cudnn"
  assert sdpa_implementation(jnp.float16, 128, 48, backend="gpu") == "cudnn"
  assert sdpa_implementation(jnp.float32, 64, 128, backend="gpu") is None  # cuDNN's kernel is half precision only
  assert sdpa_implementation(jnp.bfloat16, 36, 128, backend="gpu") is None  # head dim not a multiple of 8
  assert sdpa_implementation(jnp.bfloat16, 256, 128, backend="gpu") is None
  assert sdpa_implementation(jnp.bfloat16, 64, 127, backend="gpu") is None  # odd length
  assert sdpa_implementation(jnp.bfloat16, 64, 128, backend="cpu") is None
  assert sdpa_implementation(jnp.bfloat16, 64, 128, backend="tpu") is None
