"""The full run config with every field and its default; configs/*.py start from here.

Sections: top level (mode, seed, parallel, ...), `model` (finetune), `teacher` and
`student` (distill), `data`, `train`, `optim`, `distill`, `checkpoint`,
`distributed`. Every field is documented in README.md ("Configuration").
"""

from __future__ import annotations

import ml_collections

MODES = ("finetune", "distill", "demo", "study")
MODEL_INITS = ("pretrained", "fresh", "teacher_layers")
DTYPES = ("float32", "bfloat16")


def model_config(**overrides) -> ml_collections.ConfigDict:
  """How to build one encoder (used for `model`, `teacher` and `student`)."""
  c = ml_collections.ConfigDict()
  # pretrained: load `path` (a Hugging Face folder, or a previous run's workdir whose
  #   export/ holds one). fresh: random init from the shape fields below.
  # teacher_layers: (student only) copy the teacher's embeddings and the layers in
  #   `teacher_layers` (0-based), the DistilBERT recipe.
  c.init = "pretrained"
  c.path = ""
  c.teacher_layers = ()
  # Shape of a fresh model (ignored for pretrained). vocab_size 0 = the tokenizer's.
  c.model_type = "bert"
  c.vocab_size = 0
  c.hidden_size = 384
  c.num_hidden_layers = 3
  c.num_attention_heads = 12
  c.intermediate_size = 1536
  c.max_position_embeddings = 512
  c.hidden_act = "gelu"
  c.initializer_range = 0.02  # std of the normal init of a fresh model
  # Dropout; -1 keeps the checkpoint's (or 0.1 for fresh models).
  c.dropout = -1.0
  c.attention_dropout = -1.0
  # Compute dtype (params stay float32), nn.scan over layers, activation checkpointing.
  c.dtype = "float32"
  c.scan_layers = False
  c.remat = False
  c.update(overrides)
  return c


def base_config() -> ml_collections.ConfigDict:
  from rail_kd_jax.data import default_data_config
  from rail_kd_jax.distill.config import default_distill_config

  c = ml_collections.ConfigDict()
  c.mode = "distill"  # finetune | distill | demo (configs/demo.py) | study (configs/study.py)
  c.seed = 0
  c.parallel = "pmap"  # pmap | shard_map
  c.num_devices = 0  # 0 = every visible device
  c.model = model_config()  # the model trained in finetune mode
  c.teacher = model_config()  # the frozen teacher in distill mode
  c.student = model_config(init="teacher_layers", teacher_layers=(0, 2, 4))
  c.data = default_data_config()
  # '' = use data.* as given; 'tiny' = generate the tiny learnable dataset and its
  # tokenizer under the workdir (tests and configs/tiny.py).
  c.data.synthetic = ""

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 32  # global batch, split over every device of every host
  c.train.eval_batch_size = 0  # 0 = train.batch_size
  c.train.num_epochs = 3.0
  c.train.num_steps = 0  # > 0 overrides num_epochs
  c.train.grad_accum_steps = 1  # micro-batches per device per update
  c.train.log_every = 50
  c.train.eval_every = 0  # 0 = at the end of every epoch
  c.train.export = True  # save_pretrained the trained model under workdir/export/
  c.train.plots = True  # PNG plots of losses, eval metrics and layer pairings in the workdir
  # Stop after this many consecutive steps whose loss or gradient is not finite (each
  # such step is skipped: no update). Test hook: debug_nan_steps lists steps (as logged,
  # 1-based) whose teacher outputs are made NaN (distill mode); leave it empty.
  c.train.max_bad_steps = 10
  c.train.debug_nan_steps = ()

  c.optim = ml_collections.ConfigDict()
  c.optim.learning_rate = 2e-5
  c.optim.warmup_ratio = 0.1
  c.optim.warmup_steps = -1  # >= 0 overrides warmup_ratio
  c.optim.weight_decay = 0.01  # not applied to biases and LayerNorm
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-6
  c.optim.clip_norm = 1.0  # global-norm clipping; 0 disables

  c.distill = default_distill_config()

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 0  # steps; 0 = only at the end
  c.checkpoint.keep = 2  # the newest N (resume uses the newest good one)
  c.checkpoint.enabled = True
  c.checkpoint.keep_best = True  # also keep the checkpoint with the best main eval metric
  c.checkpoint.async_save = True  # write in the background while training continues

  c.distributed = ml_collections.ConfigDict()
  c.distributed.enabled = False  # call jax.distributed.initialize()
  c.distributed.coordinator = ""  # host:port; '' = auto-detect (TPU pods, SLURM)
  c.distributed.num_processes = 0
  c.distributed.process_id = -1
  return c
