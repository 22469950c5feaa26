"""Self-attention: the SelfAttention module and the rule that picks its form (matmul or dot_product).

Its params are attention/self/{query,key,value}/{kernel,bias} of each layer (models/bert.py
builds the layer around it); the forms compute the same function from the same params.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from rail_kd_jax.models.config import EncoderConfig

# Hash-based dropout masks: ~35x cheaper than threefry on XLA CPU (models/dropout.py).
from rail_kd_jax.models.dropout import Dropout
from rail_kd_jax.models.primitives import Dtype, hf_dense

# Model option `attention`: how SelfAttention computes (see resolve_attention).
ATTENTION_IMPLS = ("auto", "matmul", "dot_product")


def resolve_attention(
  name: str, dtype: Dtype, deterministic: bool, dropout_prob: float, backend: str | None = None
) -> str:
  """The attention form a call computes, 'matmul' or 'dot_product', for option `name`.

  'matmul': q/k/v as [B, heads, T, D], batched jnp.matmul, attention dropout supported.
  'dot_product': jax.nn.dot_product_attention on [B, T, heads, D]; it has no dropout.
  'auto': 'dot_product' when `backend` is 'gpu', the compute dtype is bfloat16 or float16
  and no attention dropout applies (deterministic, or dropout_prob == 0); else 'matmul'.
  backend: a jax platform name; None is jax.default_backend().

  Raises ValueError for an unknown name, and for 'dot_product' in a call with dropout.
  """
  if name not in ATTENTION_IMPLS:
    raise ValueError(f"attention={name!r} is not valid; choose one of: {', '.join(ATTENTION_IMPLS)}.")
  drops = not deterministic and dropout_prob > 0
  if name == "auto":
    backend = jax.default_backend() if backend is None else backend
    half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
    return "dot_product" if backend == "gpu" and half and not drops else "matmul"
  if name == "dot_product" and drops:
    raise ValueError(
      f"attention='dot_product' applies no attention dropout, but attention_probs_dropout_prob={dropout_prob} "
      "in a training call; set model.attention_dropout=0 or use attention='matmul'."
    )
  return name


def sdpa_implementation(dtype, head_dim: int, length: int, backend: str | None = None) -> str | None:
  """The `implementation` argument 'dot_product' passes to jax.nn.dot_product_attention.

  'cudnn' (flash attention) on a GPU for bfloat16/float16 with a head dim that is a
  multiple of 8 and at most 128 and an even length (what cuDNN's fused kernel accepts
  with a mask); None (XLA) otherwise. jax's own None never picks cuDNN, so it is asked
  for by name where it applies.
  """
  backend = jax.default_backend() if backend is None else backend
  half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
  if backend == "gpu" and half and head_dim % 8 == 0 and head_dim <= 128 and length % 2 == 0:
    return "cudnn"
  return None


class SelfAttention(nn.Module):
  """Multi-head self-attention in the form `attention` resolves to (resolve_attention).

  matmul: q/k/v transposed to [B, heads, T, D] and batched matmul (fast on XLA CPU), the
  additive mask, float32 softmax with its normalisation applied to the output, dropout on
  the probabilities.
  dot_product: jax.nn.dot_product_attention on [B, T, heads, D] (its native layout) with a
  boolean key mask [B, 1, T, T]; float32 logits and softmax; no dropout.
  """

  config: EncoderConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  deterministic: bool = True
  attention: str = "auto"

  @nn.compact
  def __call__(self, x, mask_bias):
    """x: [B, T, H]; mask_bias: [B, 1, 1, T] float32 additive (0 keep, finfo.min pad) -> [B, T, H] in dtype."""
    cfg = self.config
    impl = resolve_attention(self.attention, self.dtype, self.deterministic, cfg.attention_probs_dropout_prob)
    b, t, _ = x.shape
    h, d = cfg.num_attention_heads, cfg.head_dim

    def heads(name):
      y = hf_dense(cfg, cfg.hidden_size, self.dtype, self.param_dtype, name)(x)
      return y.reshape(b, t, h, d)  # [B, T, h, D]

    q, k, v = heads("query"), heads("key"), heads("value")
    if impl == "dot_product":
      # A boolean key mask with the full [T, S] trailing dims suits both jax paths: XLA
      # applies it with a where on the float32 logits; cuDNN turns it into an additive bias,
      # which must be [B|1, N|1, T, S]. Exact for any 0/1 mask, where key_value_seq_lengths
      # would assume right padding.
      keep = jnp.broadcast_to(mask_bias == 0, (b, 1, t, t))
      ctx = jax.nn.dot_product_attention(
        q, k, v, mask=keep, scale=1.0 / math.sqrt(d), implementation=sdpa_implementation(self.dtype, d, t)
      )
      return ctx.reshape(b, t, h * d)
    q, k, v = (y.transpose(0, 2, 1, 3) for y in (q, k, v))  # [B, h, T, D]
    scale = 1.0 / math.sqrt(d)
    # Scaling q costs a pass over [B, h, T, D], scaling the scores one over [B, h, T, T]
    # (in half precision the float32 scores keep the scale exact).
    scale_q = jnp.dtype(self.dtype) == jnp.float32
    if scale_q:
      q = q * jnp.float32(scale)
    # Scores accumulate and leave the matmul in float32 even for bf16 inputs.
    scores = jnp.matmul(q, k.transpose(0, 1, 3, 2), preferred_element_type=jnp.float32)  # [B, h, T, T]
    if not scale_q:
      scores = scores * scale
    scores = scores + mask_bias
    # softmax(scores) @ v with the normalisation deferred: exp(s - max) @ v / sum(exp(s - max)).
    # The same function (dropout on the probabilities commutes with each row's 1 / sum, and
    # draws the same mask), but the division runs over [B, h, T, D] instead of [B, h, T, T]:
    # the attention's forward 2.5x faster on XLA CPU (docs/notes/benchmark_runs.md).
    e = jnp.exp(scores - jax.lax.stop_gradient(jnp.max(scores, axis=-1, keepdims=True)))
    denom = jnp.sum(e, axis=-1, keepdims=True)
    e = Dropout(cfg.attention_probs_dropout_prob)(e, deterministic=self.deterministic)
    ctx = jnp.matmul(e.astype(self.dtype), v, preferred_element_type=jnp.float32) / denom  # [B, h, T, D]
    return ctx.astype(self.dtype).transpose(0, 2, 1, 3).reshape(b, t, h * d)
