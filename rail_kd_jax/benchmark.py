"""`python -m rail_kd_jax.benchmark`: the training-time benchmark's command (code: experiments/benchmark/).

A command, like `main` and `predict`, so it sits at the package root; everything it runs lives
in `rail_kd_jax.experiments.benchmark`.
"""

from absl import app

from rail_kd_jax.experiments import benchmark as _benchmark
from rail_kd_jax.experiments.benchmark import command

__doc__ = _benchmark.__doc__  # absl's --help prints the main module's docstring

if __name__ == "__main__":
  command.define_flags()
  app.run(command.main)
