"""What a run writes: metric records and progress, task metrics, plots, statistics, model cards, predictions files."""
