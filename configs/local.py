"""Your own data: a folder with train / dev (/ test) .csv, .tsv or .jsonl files.

  python -m rail_kd_jax.main --config=configs/local.py:my_data --workdir=runs/teacher \
      --config.mode=finetune --config.model.path=/path/to/hf_model
  python -m rail_kd_jax.main --config=configs/local.py:my_data --workdir=runs/rail \
      --config.mode=distill --config.teacher.path=runs/teacher --config.distill.method=rail_l

arg: the data folder (columns `text` and `label` by default; change with
--config.data.text_column / text_pair_column / label_column).
The student copies teacher layers (1, 3, 5) by default (the DistilBERT recipe);
use --config.student.init=fresh plus shape fields, or init=pretrained + path.
"""

from rail_kd_jax.core.defaults import base_config, model_config


def get_config(arg: str = ""):
  c = base_config()
  c.mode = "finetune"
  c.data.task = "local"
  c.data.data_dir = arg
  c.data.max_length = 128
  c.model = model_config(init="pretrained")
  c.teacher = model_config(init="pretrained")
  c.student = model_config(init="teacher_layers", teacher_layers=(1, 3, 5))
  c.train.batch_size = 32
  c.train.num_epochs = 3.0
  c.train.log_every = 20
  c.optim.learning_rate = 5e-5
  c.checkpoint.every = 500
  return c
