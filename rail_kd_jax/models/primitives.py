"""The encoder's shared layers: HF's LayerNorm and the 2-D Dense with HF's initialisation.

Used by models/attention.py (SelfAttention) and models/bert.py (everything else).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rail_kd_jax.models.config import EncoderConfig

Dtype = Any


def _normal(std: float):
  return nn.initializers.normal(stddev=std)


class LayerNorm(nn.Module):
  """HF LayerNorm: statistics in float32 (two-pass variance), output in `dtype`."""

  epsilon: float
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    features = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (features,), self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (features,), self.param_dtype)
    xf = x.astype(jnp.float32)
    mean = jnp.mean(xf, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(xf - mean), axis=-1, keepdims=True)
    y = (xf - mean) * jax.lax.rsqrt(var + self.epsilon)
    y = y * scale.astype(jnp.float32) + bias.astype(jnp.float32)
    return y.astype(self.dtype)


class Dense(nn.Dense):
  """nn.Dense on the last axis, applied to the inputs flattened to 2-D ([B, T, H] -> [B*T, H]).

  Same params and the same function as nn.Dense; as one plain matrix product (and its
  gradients as plain ones) XLA CPU runs the train step 4-10% faster than with the
  batch axes kept (docs/notes/benchmark_runs.md, A/B of 2026-12-04).
  kernel_scale / bias_scale: constants the stored kernel / bias are multiplied by (in
  the param dtype) before use, x @ (kernel_scale W) + bias_scale b; the params stay HF's.
  """

  kernel_scale: float = 1.0
  bias_scale: float = 1.0

  @nn.compact
  def __call__(self, x):
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1]) if x.ndim > 2 else x
    if self.kernel_scale == 1.0 and self.bias_scale == 1.0:
      y = super().__call__(x2)
    else:
      kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), self.param_dtype)
      bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
      kernel = kernel * jnp.asarray(self.kernel_scale, kernel.dtype)
      bias = bias * jnp.asarray(self.bias_scale, bias.dtype)
      x2, kernel, bias = self.promote_dtype(x2, kernel, bias, dtype=self.dtype)
      y = jax.lax.dot_general(x2, kernel, (((1,), (0,)), ((), ())), precision=self.precision) + bias
    return y.reshape(*lead, self.features) if x.ndim > 2 else y


def hf_dense(cfg: EncoderConfig, features: int, dtype, param_dtype, name: str, **scales) -> nn.Dense:
  """A Dense named `name` with HF's init: normal(initializer_range) kernel, zero bias."""
  return Dense(
    features,
    dtype=dtype,
    param_dtype=param_dtype,
    kernel_init=_normal(cfg.initializer_range),
    bias_init=nn.initializers.zeros,
    name=name,
    **scales,
  )
