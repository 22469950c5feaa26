r"""The study: does RAIL-KD beat KD, PKD, ALP-KD and CKD, by a reviewer's rules (configs/study.py).

Every method tuned alike on dev, at tuning seeds apart from the reported ones, scored per
example on test and out-of-domain splits, with paired statistics and a Holm correction
(docs/STUDY.md).

  python -m rail_kd_jax.main --config=configs/study.py --workdir=DIR              # task 1
  python -m rail_kd_jax.main --config=configs/study.py:tweets --workdir=DIR       # task 2
  python -m rail_kd_jax.main --config=configs/study.py:local/<folder> --workdir=DIR

  plan     each method's grid from its own design space, the checks, every run's config
  data     the task's files, label names, out-of-domain split and example clusters
  run      the runs: teacher, grid, reported seeds, longer runs; each run's facts
  claims   the claims (two-level bootstrap, paired t, Holm, verdicts), seed-level differences
  summary  the study's JSON object: summaries over seeds, grid, claims, longer runs, time
  report   study.md/.json/.csv/.png and the per-example predictions
"""

from rail_kd_jax.experiments.study.plan import draw_points, grid_for, point_name
from rail_kd_jax.experiments.study.report import headline, to_markdown
from rail_kd_jax.experiments.study.run import run_facts, run_study

__all__ = ["draw_points", "grid_for", "headline", "point_name", "run_facts", "run_study", "to_markdown"]
