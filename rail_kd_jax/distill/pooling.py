"""One vector per example from token-level hidden states."""

import jax.numpy as jnp

POOLINGS = ("mean", "cls")


def pool(hidden, mask, kind: str = "mean"):
  """Pools the token axis.

  Args:
    hidden: `[L+1, B, T, H]` stacked hidden states, or `[B, T, H]`; any float
      dtype (a bfloat16 teacher is fine).
    mask: `[B, T]`, 1 for real tokens, 0 for padding (bool or numeric).
    kind: 'mean' (masked mean over real tokens; an all-padding row gives zeros,
      never NaN) or 'cls' (the first token).

  Returns:
    float32 `[L+1, B, H]` (or `[B, H]`).
  """
  hidden = hidden.astype(jnp.float32)
  if kind == "cls":
    return hidden[..., 0, :]
  if kind == "mean":
    m = jnp.asarray(mask).astype(jnp.float32)[..., None]  # [B, T, 1]
    total = jnp.sum(hidden * m, axis=-2)
    count = jnp.maximum(jnp.sum(m, axis=-2), 1.0)  # [B, 1]
    return total / count
  raise ValueError(f"distill.pooling={kind!r} is not valid; choose one of {POOLINGS}.")
