"""Tiny models on a generated dataset: the whole CLI in seconds on a CPU.

  python -m rail_kd_jax.main --config=configs/tiny.py --workdir=/tmp/tiny_teacher \
      --config.mode=finetune
  python -m rail_kd_jax.main --config=configs/tiny.py --workdir=/tmp/tiny_rail \
      --config.mode=distill --config.distill.method=rail_c \
      --config.teacher.init=pretrained --config.teacher.path=/tmp/tiny_teacher

A 4-layer teacher and a 2-layer student, both 32 wide, random init, dropout 0 (so
runs compare exactly across device counts). Without `teacher.path` the teacher is
a fresh random 4-layer model, enough to exercise every method.

arg: '' (default) or 'shard_map' to select that parallel path.
"""

from rail_kd_jax.core.defaults import base_config, model_config


def _tiny(layers: int, **kw):
  return model_config(
    init="fresh",
    hidden_size=32,
    num_hidden_layers=layers,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    dropout=0.0,
    attention_dropout=0.0,
    **kw,
  )


def get_config(arg: str = ""):
  c = base_config()
  c.mode = "finetune"
  c.parallel = "shard_map" if arg == "shard_map" else "pmap"
  c.model = _tiny(4)
  c.teacher = _tiny(4)
  c.student = _tiny(2)
  c.data.synthetic = "tiny"
  c.data.max_length = 32
  c.train.batch_size = 16
  c.train.num_epochs = 5.0
  c.train.log_every = 10
  c.train.eval_every = 0
  c.optim.learning_rate = 3e-3
  c.optim.warmup_ratio = 0.1
  c.optim.weight_decay = 0.0
  c.distill.proj_dim = 16
  c.checkpoint.every = 50
  return c
