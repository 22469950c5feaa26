"""Data: task definitions (GLUE + local files), tokenizers, tokenized arrays and batches.

Typical use:

  task = tasks.load_task(config.data)                    # Task(spec, splits, sources)
  tok = tokenize.load_tokenizer(model_dir)
  arrays = loader.encode(task.splits["train"], tok, task.spec, config.data.max_length,
                         cache_dir=loader.cache_folder(config.data.cache_dir))
  for batch in loader.batches(arrays, 32, seed=0, epoch=e, shuffle=True,
                              drop_remainder=True, host_id=jax.process_index(),
                              num_hosts=jax.process_count()): ...
"""

from rail_kd_jax.data import loader, tasks, tokenize
from rail_kd_jax.data.loader import batches, encode, steps_per_epoch
from rail_kd_jax.data.tasks import GLUE_TASKS, Task, TaskSpec, load_task
from rail_kd_jax.data.tokenize import load_tokenizer

__all__ = [
  "loader",
  "tasks",
  "tokenize",
  "batches",
  "encode",
  "steps_per_epoch",
  "GLUE_TASKS",
  "Task",
  "TaskSpec",
  "load_task",
  "load_tokenizer",
]
