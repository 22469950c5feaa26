"""`python -m rail_kd_jax.sweep run|collect`: methods x seeds sweeps (code: experiments/sweep.py).

A command, like `main` and `predict`, so it sits at the package root.
"""

import sys

from rail_kd_jax.experiments import sweep

if __name__ == "__main__":
  sys.exit(sweep.main())
