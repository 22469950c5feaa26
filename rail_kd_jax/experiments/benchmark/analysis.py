"""FLOPs and peak bytes of a compiled program, from XLA's cost and memory analyses."""

from __future__ import annotations


def cost_flops(compiled) -> float | None:
  """FLOPs of one call of a compiled (or lowered) program from XLA's cost analysis, or None."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # some backends have none
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  if not cost or "flops" not in cost:
    return None
  return float(cost["flops"])


def peak_bytes(compiled) -> int | None:
  """Peak device memory of a compiled program: arguments + outputs + temporaries - aliased."""
  m = memory_fields(compiled)
  keys = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes", "alias_size_in_bytes")
  if not m or not all(k in m for k in keys):
    return None
  return m["argument_size_in_bytes"] + m["output_size_in_bytes"] + m["temp_size_in_bytes"] - m["alias_size_in_bytes"]


def memory_fields(compiled) -> dict | None:
  """The byte counts of XLA's memory analysis of a compiled program (arguments, outputs, ...), or None."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # some backends have none
    return None
  if m is None:
    return None
  return {
    k: int(getattr(m, k))
    for k in (
      "argument_size_in_bytes",
      "output_size_in_bytes",
      "temp_size_in_bytes",
      "alias_size_in_bytes",
      "generated_code_size_in_bytes",
    )
    if hasattr(m, k)
  }
