"""Which teacher layer each student layer is distilled from.

A mapping is an int32 array `[M]`: entry `j - 1` is the teacher layer (1..N,
the embedding output 0 is never used) paired with student layer `j`. It is
computed inside the jitted step from an explicit key, so it is the same on
every device and host, is replayable from (seed, counter) alone, and changing
it never recompiles.
"""

import jax
import jax.numpy as jnp
import numpy as np

# Tag folded into the run seed so that the mapping stream is independent of the
# dropout / init streams derived from the same seed. ASCII "RAIL".
SAMPLING = 0x5241494C

SAMPLINGS = ("uniform", "blockwise", "fixed")


def mapping_key(seed, counter):
  """Key for one resampling point: fold_in(fold_in(PRNGKey(seed), SAMPLING), counter).

  `seed` and `counter` (the step or the epoch) may be Python ints or traced
  int scalars.
  """
  key = jax.random.fold_in(jax.random.PRNGKey(seed), SAMPLING)
  return jax.random.fold_in(key, counter)


def sample_layers(key, num_teacher_layers: int, num_student_layers: int):
  """M distinct teacher layers from 1..N, uniform over all M-subsets, ascending.

  Args:
    key: PRNG key (may be traced).
    num_teacher_layers: N, static Python int.
    num_student_layers: M, static Python int, 1 <= M <= N.

  Returns:
    int32 `[M]`, strictly increasing, values in 1..N.
  """
  n, m = int(num_teacher_layers), int(num_student_layers)
  if not 1 <= m <= n:
    raise ValueError(f"num_student_layers={m} must be between 1 and num_teacher_layers={n}.")
  # The first M entries of a uniform random permutation are a uniform M-subset.
  chosen = jax.random.permutation(key, n)[:m]
  return jnp.sort(chosen).astype(jnp.int32) + 1


def block_bounds(num_teacher_layers: int, num_blocks: int):
  """Contiguous blocks of teacher layers 1..N, as equal as possible.

  Like `np.array_split`: the first `N % M` blocks hold one layer more.
  Returns a list of `(first, last_exclusive)` pairs of 1-based layer indices.
  Shared by `sample_blockwise` and the CKD grouping.
  """
  n, m = int(num_teacher_layers), int(num_blocks)
  if not 1 <= m <= n:
    raise ValueError(f"cannot split N={n} teacher layers into M={m} blocks.")
  base, extra = divmod(n, m)
  bounds, start = [], 1
  for b in range(m):
    size = base + (1 if b < extra else 0)
    bounds.append((start, start + size))
    start += size
  return bounds


def sample_blockwise(key, num_teacher_layers: int, num_student_layers: int):
  """One uniformly drawn teacher layer per contiguous block (see `block_bounds`).

  Returns int32 `[M]`, ascending (blocks are ordered), values in 1..N.
  """
  bounds = block_bounds(num_teacher_layers, num_student_layers)
  lo = jnp.asarray([b[0] for b in bounds], jnp.int32)
  hi = jnp.asarray([b[1] for b in bounds], jnp.int32)
  return jax.random.randint(key, (len(bounds),), lo, hi, dtype=jnp.int32)


def fixed_layers(layers, num_teacher_layers: int, num_student_layers: int):
  """The explicit mapping `layers` (M ascending ints in 1..N) as int32 `[M]`."""
  layers = parse_layers(layers)
  if len(layers) != num_student_layers:
    raise ValueError(
      f"fixed_layers={layers} has {len(layers)} entries; the student has "
      f"{num_student_layers} layers, so exactly {num_student_layers} are needed."
    )
  return jnp.asarray(layers, jnp.int32)


def parse_layers(layers) -> tuple:
  """Accepts a tuple/list of ints or a string such as '2,4,6' or '(2, 4, 6)'."""
  if isinstance(layers, str):
    text = layers.strip().strip("()[]")
    return tuple(int(x) for x in text.split(",") if x.strip())
  return tuple(int(x) for x in layers)


def make_mapping(dcfg, key, num_teacher_layers: int, num_student_layers: int):
  """The mapping for `dcfg.sampling` in {uniform, blockwise, fixed}; traceable.

  Args:
    dcfg: distillation config (`defaults.distill_config()`).
    key: PRNG key, normally `mapping_key(seed, counter)` (ignored for fixed).
    num_teacher_layers: N (static).
    num_student_layers: M (static).

  Returns:
    int32 `[M]`, ascending, values in 1..N.
  """
  sampling = dcfg.sampling
  if sampling == "uniform":
    return sample_layers(key, num_teacher_layers, num_student_layers)
  if sampling == "blockwise":
    return sample_blockwise(key, num_teacher_layers, num_student_layers)
  if sampling == "fixed":
    return fixed_layers(dcfg.fixed_layers, num_teacher_layers, num_student_layers)
  raise ValueError(f"distill.sampling={sampling!r} is not valid; choose one of {SAMPLINGS}.")


def pairing_counts(mappings, num_teacher_layers: int) -> np.ndarray:
  """How often each student layer was paired with each teacher layer (NumPy).

  Args:
    mappings: int `[S, M]`, one mapping per resampling point.
    num_teacher_layers: N.

  Returns:
    int64 `[M, N + 1]`: row `j - 1` is student layer j, column t is teacher
    layer t (column 0, the embedding output, is always 0). Ready for a heat map.
  """
  mappings = np.asarray(mappings)
  if mappings.ndim == 1:
    mappings = mappings[None]
  s, m = mappings.shape
  counts = np.zeros((m, num_teacher_layers + 1), np.int64)
  rows = np.broadcast_to(np.arange(m), (s, m))
  np.add.at(counts, (rows.ravel(), mappings.ravel()), 1)
  return counts
