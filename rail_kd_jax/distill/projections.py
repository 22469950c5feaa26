"""Tiny functional linear layers on plain pytrees (the distillation heads).

Parameters are dicts {"kernel": [din, dout], "bias": [dout]}; a stack of K
layers with the same widths is the same dict with a leading axis K (built with
`init_linear_stack`, applied with `linear` under `jax.vmap`). Leaf names follow
Flax's Dense so the optimizer's weight-decay mask (no decay on 'bias') applies.
"""

import jax
import jax.numpy as jnp

# Kernel init: normal(0.02), BERT's `initializer_range`, the init of every
# Dense in the encoders these heads sit on. Bias: zeros.
INIT_STDDEV = 0.02


# How a map starts (`distill.map_init`): 'random' N(0, stddev^2) with zero bias (BERT's
# Dense); 'identity' the identity-like kernel of `identity_like` with zero bias; 'xavier'
# Xavier (Glorot) normal, std sqrt(2 / (din + dout)), zero bias: how aitsc/GLMKD's RAIL-KD
# starts its maps (mpu.ColumnParallelLinear with init.xavier_normal_, bias zeroed).
INITS = ("random", "identity", "xavier")


def identity_like(din: int, dout: int):
  """float32 [din, dout] with kernel[i, j] = 1 where i == j mod din: the identity when
  din == dout, its first dout columns when dout < din, and the identity stacked side by
  side (`[I I .. I]`, CKD's up-projection to k * din) when dout > din."""
  cols = jnp.arange(dout) % din
  return (jnp.arange(din)[:, None] == cols[None, :]).astype(jnp.float32)


def init_linear(key, din: int, dout: int, stddev: float = INIT_STDDEV, bias: bool = True, init: str = "random"):
  """{"kernel": float32 [din, dout], "bias": [dout]} started by `init` (INITS; no "bias"
  when `bias=False`)."""
  if init == "random":
    kernel = stddev * jax.random.normal(key, (din, dout), jnp.float32)
  elif init == "identity":
    kernel = identity_like(din, dout)
  elif init == "xavier":
    kernel = (2.0 / (din + dout)) ** 0.5 * jax.random.normal(key, (din, dout), jnp.float32)
  else:
    raise ValueError(f"distill.map_init={init!r} is not valid; choose one of {INITS}.")
  if not bias:
    return {"kernel": kernel}
  return {"kernel": kernel, "bias": jnp.zeros((dout,), jnp.float32)}


def init_linear_stack(
  key, num: int, din: int, dout: int, stddev: float = INIT_STDDEV, bias: bool = True, init: str = "random"
):
  """`num` independent linear layers stacked: kernel [num, din, dout], bias [num, dout]."""
  keys = jax.random.split(key, num)
  return jax.vmap(lambda k: init_linear(k, din, dout, stddev, bias, init))(keys)


def linear(p, x):
  """`x @ kernel (+ bias)`; x `[..., din]` -> float32 `[..., dout]`."""
  y = jnp.dot(x.astype(jnp.float32), p["kernel"])
  return y + p["bias"] if "bias" in p else y


def take(p, index):
  """Layers `index [K]` of a stack (traced indices are fine): a stack of K layers."""
  return jax.tree.map(lambda leaf: jnp.take(leaf, index, axis=0), p)


def linear_stack(p, x):
  """Applies a stack of K layers to `x [K, ..., din]` -> `[K, ..., dout]`."""
  return jax.vmap(linear)(p, x)
