"""Distillation: layer mappings, pooling, projection heads, and the method table.

Pure functions on arrays; no model code and no trainer (see docs/METHODS.md).
"""

from rail_kd_jax.distill import layer_sampling, methods, pooling, projections

__all__ = ["layer_sampling", "methods", "pooling", "projections"]
