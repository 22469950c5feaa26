"""Plots of a run (placeholder until issue 5 lands: writes nothing)."""


def write_run_plots(workdir: str) -> list[str]:
  return []
