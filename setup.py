"""rail_kd_jax: RAIL-KD and distillation baselines for BERT-family encoders in JAX/Flax."""

from setuptools import find_packages, setup

setup(
  name="rail_kd_jax",
  version="0.1.0",
  description="Random intermediate-layer knowledge distillation (RAIL-KD) for BERT-family models in JAX/Flax",
  packages=find_packages(include=["rail_kd_jax", "rail_kd_jax.*"]),
  python_requires=">=3.10",
  install_requires=[
    "jax>=0.6",
    "flax>=0.10",
    "optax>=0.2",
    "orbax-checkpoint>=0.11",
    "ml_collections>=1.0",
    "transformers>=4.40",
    "tokenizers>=0.19",
    "datasets>=2.18",
    "safetensors>=0.4",
    "numpy>=1.26",
    "absl-py>=2.0",
    "matplotlib>=3.7",
    "tensorboardX>=2.6",
    "scipy>=1.10",
  ],
  extras_require={
    # torch is pinned to the CPU build that this project's machines carry on disk;
    # an unpinned torch pulls several GB of CUDA wheels.
    "test": ["pytest>=7", "pytest-xdist>=3.5", "torch==2.13.0", "scikit-learn>=1.3", "ruff==0.17.6"],
    "peers": ["torch==2.13.0"],
  },
)
