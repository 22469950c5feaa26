r"""The paper's GLUE setups: teacher fine-tuning and distillation with each method.

  --config=configs/glue.py:<task>[,<mode>][,<method>][,<family>][,runlocal]

Comma-separated tokens; the task comes first, the others in any order:
  task     cola sst2 mrpc qqp stsb mnli qnli rte wnli
  mode     finetune (the default without a method) | distill (implied by a method)
  method   none kd pkd alp_kd ckd rail_l rail_c (distill only; default rail_l)
  family   bert (default): BERT-base (12 layers, 768) teacher -> 6-layer student
                          (DistilBERT, pretrained); roberta: RoBERTa-large (24, 1024)
                          teacher -> DistilRoBERTa (6, 768)
  runlocal tiny fresh models and 4 steps on the given data: checks a setup in seconds

Examples:
  configs/glue.py:sst2                      fine-tune the BERT-base teacher on SST-2
  configs/glue.py:mnli,roberta              fine-tune the RoBERTa-large teacher on MNLI
  configs/glue.py:sst2,distill,rail_l,bert  RAIL-KD (layer-wise) into the 6-layer student
  configs/glue.py:rte,kd,roberta            Hinton KD, RoBERTa-large -> DistilRoBERTa

Models and data come from local folders (nothing is downloaded):
  python -m rail_kd_jax.main --config=configs/glue.py:sst2 --workdir=runs/sst2/teacher \
      --config.model.path=/models/bert-base-uncased --config.data.data_dir=/data/glue/SST-2
  python -m rail_kd_jax.main --config=configs/glue.py:sst2,rail_l --workdir=runs/sst2/rail_l/seed_0 \
      --config.teacher.path=runs/sst2/teacher --config.student.path=/models/distilbert-base-uncased \
      --config.data.data_dir=/data/glue/SST-2 --config.seed=0
(`teacher.path` may be a finished fine-tuning workdir: its export/ is used.) With an
empty `data.data_dir` the GLUE task is read from the local Hugging Face datasets
cache, offline. Out-of-domain sets: --config.data.ood_eval_files="{'hans': '/data/hans.tsv'}".

Setup (the paper's): AdamW lr 2e-5 (warmup 10%, linear decay, weight decay 0.01), batch 32,
max length 128; teachers 3 epochs; students up to 20 epochs with an eval of every
split at each epoch's end (`python -m rail_kd_jax.sweep collect --select=best` reads
the best dev epoch); RAIL-KD resamples its layer mapping every epoch. Seeds and
methods are swept with launch/sweep.
"""

from rail_kd_jax.core.defaults import base_config, model_config
from rail_kd_jax.data.tasks import GLUE_TASKS
from rail_kd_jax.distill.methods import METHODS

MODES = ("finetune", "distill")
FAMILIES = ("bert", "roberta")
DEFAULT_METHOD = "rail_l"
# Student widths (the teachers' widths come from their checkpoints).
STUDENT_LAYERS = 6
TEACHER_EPOCHS = 3.0
STUDENT_EPOCHS = 20.0


def parse_arg(arg: str) -> dict:
  """'sst2,distill,rail_l,bert' -> {'task', 'mode', 'method', 'family', 'runlocal'}; ValueError on
  an unknown or repeated token."""
  tokens = [t.strip().lower() for t in (arg or "").split(",") if t.strip()]
  if not tokens:
    raise ValueError(
      "configs/glue.py needs an arg: <task>[,<mode>][,<method>][,<family>][,runlocal], "
      f"e.g. configs/glue.py:sst2 or configs/glue.py:sst2,distill,rail_l,bert; tasks: "
      f"{', '.join(GLUE_TASKS)}"
    )
  task = tokens[0].replace("-", "")
  if task not in GLUE_TASKS:
    raise ValueError(
      f"configs/glue.py: the first token {tokens[0]!r} is not a GLUE task; choose one of: {', '.join(GLUE_TASKS)}"
    )
  out = {"task": task, "mode": None, "method": None, "family": None, "runlocal": False}
  kinds = {"mode": MODES, "method": tuple(METHODS), "family": FAMILIES}
  for tok in tokens[1:]:
    if tok == "runlocal":
      out["runlocal"] = True
      continue
    kind = next((k for k, values in kinds.items() if tok in values), None)
    if kind is None:
      raise ValueError(
        f"configs/glue.py: token {tok!r} is not a mode ({', '.join(MODES)}), a method "
        f"({', '.join(METHODS)}), a family ({', '.join(FAMILIES)}) or 'runlocal'"
      )
    if out[kind] is not None:
      raise ValueError(f"configs/glue.py: two {kind} tokens given ({out[kind]!r} and {tok!r}); give one")
    out[kind] = tok
  if out["mode"] == "finetune" and out["method"] is not None:
    raise ValueError(f"configs/glue.py: method {out['method']!r} needs mode distill, not finetune")
  out["mode"] = out["mode"] or ("distill" if out["method"] else "finetune")
  if out["mode"] == "distill":
    out["method"] = out["method"] or DEFAULT_METHOD
  out["family"] = out["family"] or "bert"
  return out


def _tiny(layers: int):
  return model_config(
    init="fresh",
    hidden_size=32,
    num_hidden_layers=layers,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    dropout=0.0,
    attention_dropout=0.0,
  )


def get_config(arg: str = ""):
  a = parse_arg(arg)
  c = base_config()
  c.mode = a["mode"]
  c.data.task = a["task"]
  c.data.data_dir = ""
  c.data.max_length = 128
  c.data.bucket = True
  c.model = model_config(init="pretrained")
  c.teacher = model_config(init="pretrained")
  c.student = model_config(init="pretrained")
  c.student.num_hidden_layers = STUDENT_LAYERS  # documents the recipe; a pretrained student keeps its own
  if a["mode"] == "distill":
    c.distill.method = a["method"]
  c.train.batch_size = 32
  c.train.num_epochs = TEACHER_EPOCHS if a["mode"] == "finetune" else STUDENT_EPOCHS
  c.train.eval_every = 0  # every epoch
  c.train.log_every = 50
  c.optim.learning_rate = 2e-5
  c.optim.warmup_ratio = 0.1
  c.optim.weight_decay = 0.01
  c.checkpoint.every = 1000
  if a["runlocal"]:
    # Fresh tiny models: give --config.data.tokenizer=<folder> (no pretrained model to take it from).
    c.model, c.teacher, c.student = _tiny(4), _tiny(4), _tiny(2)
    for m in (c.model, c.teacher, c.student):
      m.model_type = a["family"]
    c.num_devices = 1
    c.data.max_length = 32
    c.train.batch_size = 2
    c.train.num_epochs = 0.0
    c.train.num_steps = 4
    c.train.log_every = 1
    c.distill.proj_dim = 16
    c.checkpoint.enabled = False
  return c
