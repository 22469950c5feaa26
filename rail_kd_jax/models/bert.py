"""The Flax linen encoder family: BERT, RoBERTa, DistilBERT (and MiniLM-style BERT).

All three families share one post-LayerNorm block and one parameter tree whose names
mirror the HF BERT checkpoint (DistilBERT's names are mapped in convert.py):

    embeddings/{word_embeddings,position_embeddings,token_type_embeddings}/embedding
    embeddings/LayerNorm/{scale,bias}
    encoder/layer_{i}/attention/self/{query,key,value}/{kernel,bias}
    encoder/layer_{i}/attention/output/{dense,LayerNorm}
    encoder/layer_{i}/intermediate/dense
    encoder/layer_{i}/output/{dense,LayerNorm}
    (scan_layers=True: encoder/layer/... with a leading [num_layers] axis)

SelfAttention (attention/self) is in models/attention.py; LayerNorm and the 2-D Dense
in models/primitives.py.

Family differences: RoBERTa positions start after padding_idx and skip pads; DistilBERT
has no token-type embeddings; each family keeps its own task head
(BERT: pooler/dense + classifier; RoBERTa: classifier/{dense,out_proj};
DistilBERT: pre_classifier + classifier).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from flax.traverse_util import flatten_dict, unflatten_dict

from rail_kd_jax.models.attention import SelfAttention
from rail_kd_jax.models.config import EncoderConfig

# Hash-based dropout masks: ~35x cheaper than threefry on XLA CPU (models/dropout.py).
from rail_kd_jax.models.dropout import Dropout
from rail_kd_jax.models.primitives import Dtype, LayerNorm, hf_dense


@struct.dataclass
class EncoderOutput:
  """hidden_states: [num_layers + 1, B, T, H] (embedding output first), in the compute dtype.
  logits: [B, num_labels] float32, or None when the model has no task head."""

  hidden_states: jax.Array
  logits: jax.Array | None = None


def _gelu_erf(x: jax.Array) -> jax.Array:
  """Exact GELU as PyTorch writes it, 0.5 x (1 + erf(x / sqrt 2)): on XLA CPU 2-3x faster
  than jax.nn.gelu(approximate=False), whose erfc form has two polynomial branches;
  max error vs float64 1.1e-6 (PyTorch float32: 1.3e-6)."""
  return 0.5 * x * (1.0 + jax.lax.erf(x * jnp.asarray(1.0 / math.sqrt(2.0), x.dtype)))


def activation_fn(name: str) -> Callable[[jax.Array], jax.Array]:
  """HF activation names: 'gelu' is the exact erf GELU; the 'gelu_*' variants are tanh."""
  if name == "gelu":
    return _gelu_erf
  if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
    return functools.partial(jax.nn.gelu, approximate=True)
  if name == "relu":
    return jax.nn.relu
  raise ValueError(f"hidden_act={name!r} is not supported.")


def _embed_init(std: float, zero_row: int | None):
  """normal(std), with the padding row zeroed as HF's nn.Embedding(padding_idx=...) does."""

  def init(key, shape, dtype=jnp.float32):
    table = jax.random.normal(key, shape, dtype) * jnp.asarray(std, dtype)
    if zero_row is not None:
      table = table.at[zero_row].set(0)
    return table

  return init


def _sinusoidal_init(key, shape, dtype=jnp.float32):
  """DistilBERT's sinusoidal position table (sinusoidal_pos_embds=True)."""
  del key
  n_pos, dim = shape
  pos = np.arange(n_pos)[:, None]
  j = np.arange(dim)[None, :]
  angle = pos / np.power(10000, 2 * (j // 2) / dim)
  table = np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
  return jnp.asarray(table, dtype)


def position_ids_for(config: EncoderConfig, input_ids: jax.Array) -> jax.Array:
  """[B, T] int32 position ids: 0..T-1, or RoBERTa's cumsum(non-pad) + padding_idx
  (HF create_position_ids_from_input_ids: pads keep padding_idx)."""
  if config.model_type == "roberta":
    mask = (input_ids != config.pad_token_id).astype(jnp.int32)
    return jnp.cumsum(mask, axis=1) * mask + config.pad_token_id
  return jnp.broadcast_to(jnp.arange(input_ids.shape[1], dtype=jnp.int32), input_ids.shape)


class Embeddings(nn.Module):
  config: EncoderConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  deterministic: bool = True

  @nn.compact
  def __call__(self, input_ids, token_type_ids):
    """input_ids, token_type_ids: [B, T] int -> [B, T, H] in dtype."""
    cfg = self.config
    pad_row = cfg.pad_token_id
    word = nn.Embed(
      cfg.vocab_size,
      cfg.hidden_size,
      param_dtype=self.param_dtype,
      embedding_init=_embed_init(cfg.initializer_range, pad_row),
      name="word_embeddings",
    )
    if cfg.sinusoidal_pos_embds:
      pos_init = _sinusoidal_init
    else:
      pos_init = _embed_init(cfg.initializer_range, pad_row if cfg.model_type == "roberta" else None)
    pos = nn.Embed(
      cfg.max_position_embeddings,
      cfg.hidden_size,
      param_dtype=self.param_dtype,
      embedding_init=pos_init,
      name="position_embeddings",
    )
    # Gathers stay in float32 (param dtype) and the sum is cast once, as HF does.
    x = word(input_ids).astype(jnp.float32)
    if cfg.type_vocab_size > 0:
      tok = nn.Embed(
        cfg.type_vocab_size,
        cfg.hidden_size,
        param_dtype=self.param_dtype,
        embedding_init=_embed_init(cfg.initializer_range, None),
        name="token_type_embeddings",
      )
      x = x + tok(token_type_ids).astype(jnp.float32)
    x = x + pos(position_ids_for(cfg, input_ids)).astype(jnp.float32)
    x = LayerNorm(cfg.layer_norm_eps, self.dtype, self.param_dtype, name="LayerNorm")(x)
    return Dropout(cfg.hidden_dropout_prob)(x, deterministic=self.deterministic)


# In training calls the exact GELU inside a layer, 0.5 y (1 + erf(y / sqrt 2)) @ W2, is
# computed as (z + z erf(z)) @ (W2 / sqrt 2) with z = y / sqrt 2 = x @ (W1 / sqrt 2) + b1 / sqrt 2:
# the same function with no scalar constant left in the activation (XLA CPU materialises
# such constants as full [tokens, intermediate] arrays). The train step runs 1.5-3% faster
# on XLA CPU; a forward-only call (frozen teacher, evaluation) runs faster unfolded
# (docs/notes/benchmark_runs.md, 2026-12-05).
_FOLDED_GELU_SCALE = 1.0 / math.sqrt(2.0)


def _folds_gelu(cfg: EncoderConfig, deterministic: bool) -> bool:
  return cfg.hidden_act == "gelu" and not deterministic


class DenseLayerNorm(nn.Module):
  """HF *Output block: dense -> dropout -> LayerNorm(x + residual)."""

  config: EncoderConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  deterministic: bool = True
  kernel_scale: float = 1.0

  @nn.compact
  def __call__(self, x, residual):
    cfg = self.config
    y = hf_dense(cfg, cfg.hidden_size, self.dtype, self.param_dtype, "dense", kernel_scale=self.kernel_scale)(x)
    y = Dropout(cfg.hidden_dropout_prob)(y, deterministic=self.deterministic)
    return LayerNorm(cfg.layer_norm_eps, self.dtype, self.param_dtype, name="LayerNorm")(y + residual)


class Attention(nn.Module):
  config: EncoderConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  deterministic: bool = True
  attention: str = "auto"

  @nn.compact
  def __call__(self, x, mask_bias):
    kw = dict(config=self.config, dtype=self.dtype, param_dtype=self.param_dtype, deterministic=self.deterministic)
    ctx = SelfAttention(**kw, attention=self.attention, name="self")(x, mask_bias)
    return DenseLayerNorm(**kw, name="output")(ctx, x)


class Intermediate(nn.Module):
  config: EncoderConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  deterministic: bool = True

  @nn.compact
  def __call__(self, x):
    """[B, T, H] -> [B, T, intermediate_size]; for 'gelu', sqrt 2 x GELU (see _FOLDED_GELU_SCALE)."""
    cfg = self.config
    folds = _folds_gelu(cfg, self.deterministic)
    c = _FOLDED_GELU_SCALE if folds else 1.0
    y = hf_dense(cfg, cfg.intermediate_size, self.dtype, self.param_dtype, "dense", kernel_scale=c, bias_scale=c)(x)
    return y + y * jax.lax.erf(y) if folds else activation_fn(cfg.hidden_act)(y)


class Layer(nn.Module):
  """One post-LN transformer block: [B, T, H] -> [B, T, H].

  carry_output=True returns (y, y), the (carry, per-step output) form nn.scan wants.
  """

  config: EncoderConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  deterministic: bool = True
  carry_output: bool = False
  attention: str = "auto"

  @nn.compact
  def __call__(self, x, mask_bias):
    kw = dict(config=self.config, dtype=self.dtype, param_dtype=self.param_dtype, deterministic=self.deterministic)
    h = Attention(**kw, attention=self.attention, name="attention")(x, mask_bias)
    y = Intermediate(**kw, name="intermediate")(h)
    scale = _FOLDED_GELU_SCALE if _folds_gelu(self.config, self.deterministic) else 1.0
    y = DenseLayerNorm(**kw, kernel_scale=scale, name="output")(y, h)
    return (y, y) if self.carry_output else y


class LayerStack(nn.Module):
  """The layer stack: [B, T, H] -> every layer's output, stacked [num_layers, B, T, H].

  scan_layers=True runs one nn.scan over the layers (compile time independent of depth;
  params under `layer` with a leading [num_layers] axis); otherwise params are `layer_{i}`.
  remat=True recomputes each layer's activations in the backward pass (nn.remat).
  attention: the SelfAttention form (resolve_attention).
  """

  config: EncoderConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  deterministic: bool = True
  scan_layers: bool = False
  remat: bool = False
  attention: str = "auto"

  @nn.compact
  def __call__(self, x, mask_bias):
    cfg = self.config
    if self.scan_layers:
      cls = nn.remat(Layer, prevent_cse=False) if self.remat else Layer
      scanned = nn.scan(
        cls,
        variable_axes={"params": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=nn.broadcast,
        length=cfg.num_hidden_layers,
      )
      _, ys = scanned(
        cfg, self.dtype, self.param_dtype, self.deterministic, True, attention=self.attention, name="layer"
      )(x, mask_bias)
      return ys
    cls = nn.remat(Layer) if self.remat else Layer
    outs = []
    for i in range(cfg.num_hidden_layers):
      x = cls(cfg, self.dtype, self.param_dtype, self.deterministic, attention=self.attention, name=f"layer_{i}")(
        x, mask_bias
      )
      outs.append(x)
    return jnp.stack(outs)


class Pooler(nn.Module):
  """BERT pooler: tanh(dense(first token)), [B, T, H] -> [B, H]."""

  config: EncoderConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    cfg = self.config
    return jnp.tanh(hf_dense(cfg, cfg.hidden_size, self.dtype, self.param_dtype, "dense")(x[:, 0]))


class RobertaClassificationHead(nn.Module):
  """RoBERTa head on the <s> token: dropout, dense, tanh, dropout, out_proj. [B, T, H] -> [B, C]."""

  config: EncoderConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  deterministic: bool = True

  @nn.compact
  def __call__(self, x):
    cfg = self.config
    rate = cfg.classifier_dropout if cfg.classifier_dropout is not None else cfg.hidden_dropout_prob
    y = Dropout(rate)(x[:, 0], deterministic=self.deterministic)
    y = jnp.tanh(hf_dense(cfg, cfg.hidden_size, self.dtype, self.param_dtype, "dense")(y))
    y = Dropout(rate)(y, deterministic=self.deterministic)
    return hf_dense(cfg, cfg.num_labels, self.dtype, self.param_dtype, "out_proj")(y)


class Encoder(nn.Module):
  """A BERT-family encoder with an optional sequence-classification/regression head.

  Attributes:
    config: the architecture (EncoderConfig); config.num_labels = 0 means no head.
    dtype: compute dtype (float32 or bfloat16); softmax and LayerNorm statistics stay float32.
    param_dtype: dtype the params are created in.
    scan_layers: one nn.scan over the layers (params carry a leading layer axis).
    remat: activation checkpointing of each layer.
    attention: 'auto' | 'matmul' | 'dot_product', how attention is computed
      (resolve_attention; 'auto' is 'dot_product' only for a bf16/fp16 call on GPU
      without attention dropout).
  """

  config: EncoderConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  scan_layers: bool = False
  remat: bool = False
  attention: str = "auto"

  @nn.compact
  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, deterministic=True):
    """input_ids, attention_mask, token_type_ids: [B, T] ints (mask 1 = real token).

    Returns EncoderOutput(hidden_states [L + 1, B, T, H] in `dtype`, logits [B, C] float32
    or None). token_type_ids default to zeros and are ignored by DistilBERT. Dropout draws
    from the "dropout" rng collection when deterministic=False.
    """
    cfg = self.config
    input_ids = jnp.asarray(input_ids, jnp.int32)
    if input_ids.ndim != 2:
      raise ValueError(f"input_ids must be [B, T]; got shape {input_ids.shape}.")
    # RoBERTa's positions run from pad_token_id + 1 to pad_token_id + T.
    last_pos = input_ids.shape[1] - 1 + (cfg.pad_token_id + 1 if cfg.model_type == "roberta" else 0)
    if last_pos >= cfg.max_position_embeddings:
      raise ValueError(
        f"input length T={input_ids.shape[1]} needs position {last_pos}, but "
        f"max_position_embeddings={cfg.max_position_embeddings}; truncate the inputs."
      )
    if attention_mask is None:
      attention_mask = jnp.ones_like(input_ids)
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)
    token_type_ids = jnp.asarray(token_type_ids, jnp.int32)
    kw = dict(config=cfg, dtype=self.dtype, param_dtype=self.param_dtype)

    emb = Embeddings(**kw, deterministic=deterministic, name="embeddings")(input_ids, token_type_ids)
    # Additive key mask [B, 1, 1, T] in float32, like HF's eager path (finfo.min).
    mask_bias = jnp.where(jnp.asarray(attention_mask)[:, None, None, :] > 0, 0.0, jnp.finfo(jnp.float32).min).astype(
      jnp.float32
    )
    layers = LayerStack(
      **kw,
      deterministic=deterministic,
      scan_layers=self.scan_layers,
      remat=self.remat,
      attention=self.attention,
      name="encoder",
    )(emb, mask_bias)
    hidden_states = jnp.concatenate([emb[None], layers], axis=0)
    last = layers[-1]

    logits = None
    if cfg.model_type == "bert":
      # BertModel and BertFor* both carry the pooler, so it always exists.
      pooled = Pooler(**kw, name="pooler")(last)
      if cfg.num_labels > 0:
        rate = cfg.classifier_dropout if cfg.classifier_dropout is not None else cfg.hidden_dropout_prob
        pooled = Dropout(rate)(pooled, deterministic=deterministic)
        logits = hf_dense(cfg, cfg.num_labels, self.dtype, self.param_dtype, "classifier")(pooled)
    elif cfg.num_labels > 0 and cfg.model_type == "roberta":
      logits = RobertaClassificationHead(**kw, deterministic=deterministic, name="classifier")(last)
    elif cfg.num_labels > 0:  # distilbert
      rate = cfg.classifier_dropout if cfg.classifier_dropout is not None else 0.2
      y = hf_dense(cfg, cfg.hidden_size, self.dtype, self.param_dtype, "pre_classifier")(last[:, 0])
      y = Dropout(rate)(jax.nn.relu(y), deterministic=deterministic)
      logits = hf_dense(cfg, cfg.num_labels, self.dtype, self.param_dtype, "classifier")(y)
    if logits is not None:
      logits = logits.astype(jnp.float32)
    return EncoderOutput(hidden_states=hidden_states, logits=logits)


def dummy_inputs(batch: int = 1, length: int = 2):
  """Smallest inputs that create every param: (input_ids, attention_mask) [B, T] int32."""
  return jnp.ones((batch, length), jnp.int32), jnp.ones((batch, length), jnp.int32)


def param_shapes(model: Encoder):
  """The params tree as jax.ShapeDtypeStruct leaves (nothing materialised); a fresh tree each
  call (the tracing behind it, ~0.1 s, runs once per distinct module)."""
  return jax.tree.map(lambda x: x, _param_shapes(model))


@functools.lru_cache(maxsize=64)
def _param_shapes(model: Encoder):
  ids, mask = dummy_inputs()
  return jax.eval_shape(lambda r: model.init(r, ids, mask)["params"], jax.random.PRNGKey(0))


def hf_init(model: Encoder, rng: jax.Array, paths=None) -> dict:
  """HF-style random values for the params of `model` (or only the leaves in `paths`, a
  list of path tuples), as a flat {path: array} dict.

  normal(initializer_range) for kernels and embeddings (padding rows zeroed, DistilBERT's
  sinusoidal table when asked), zero biases, LayerNorm scale 1 -- the same distribution as
  the modules' own initializers, but drawn as ONE normal vector: XLA compiles every
  threefry call separately (~50 ms each on CPU), which made a per-leaf init of even a tiny
  model cost seconds.
  """
  cfg = model.config
  shapes = flatten_dict(param_shapes(model))
  paths = list(shapes) if paths is None else [tuple(p) for p in paths]
  random_paths = [p for p in paths if p[-1] in ("kernel", "embedding")]
  sizes = [int(np.prod(shapes[p].shape)) for p in random_paths]
  offsets = np.cumsum([0] + sizes)

  def make(key):
    noise = jax.random.normal(key, (max(int(offsets[-1]), 1),), jnp.float32)
    noise = noise * cfg.initializer_range
    out = {}
    for p, start, size in zip(random_paths, offsets[:-1], sizes):
      out[p] = noise[start : start + size].reshape(shapes[p].shape)
    for p in paths:
      if p in out:
        continue
      if p[-1] == "scale":
        out[p] = jnp.ones(shapes[p].shape, jnp.float32)
      elif p[-1] == "bias":
        out[p] = jnp.zeros(shapes[p].shape, jnp.float32)
      else:
        raise AssertionError(f"no init rule for param {'/'.join(p)}")
    word = ("embeddings", "word_embeddings", "embedding")
    pos = ("embeddings", "position_embeddings", "embedding")
    if word in out:
      out[word] = out[word].at[cfg.pad_token_id].set(0)
    if pos in out and cfg.sinusoidal_pos_embds:
      out[pos] = _sinusoidal_init(None, shapes[pos].shape)
    elif pos in out and cfg.model_type == "roberta":
      out[pos] = out[pos].at[cfg.pad_token_id].set(0)
    return {p: v.astype(shapes[p].dtype) for p, v in out.items()}

  return jax.jit(make)(rng)


def init_params(model: Encoder, rng: jax.Array) -> dict:
  """HF-style random params for `model` (see hf_init), in the model's layout.

  Shapes come from jax.eval_shape (nothing materialised, no compile of the model); the
  tree is then materialised once by one small jitted program."""
  return unflatten_dict(hf_init(model, rng))
