"""rail_kd_jax: RAIL-KD and distillation baselines for BERT-family encoders in JAX/Flax."""

__version__ = "0.1.0"
