"""Training: building a run, the jitted step, the loop, checkpoints, the teacher cache, parallelism, applying an export."""
