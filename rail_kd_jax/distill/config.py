"""Distillation options with their documented defaults (see docs/METHODS.md)."""

from __future__ import annotations

import ml_collections

# Fields that were renamed: an old config naming one gets an error naming the new one.
RENAMED = {"teacher_proj": "projection"}
_RENAME_HINT = {"teacher_proj": "the old 'trainable' is 'both'"}


def renamed_field_message(dcfg) -> str | None:
  """The one-sentence error for a distill config that still sets a renamed field, or None."""
  from rail_kd_jax.distill.methods import PROJECTIONS  # pylint: disable=g-import-not-at-top

  for old, new in RENAMED.items():
    if old in dcfg:
      return (
        f"distill.{old} was replaced by distill.{new} (one of {', '.join(PROJECTIONS)}; "
        f"{_RENAME_HINT[old]}); set distill.{new} instead"
      )
  return None


def renamed_flag_message(key: str) -> str | None:
  """The same for a command-line override `--config.distill.<key>=...`, or None."""
  if key not in RENAMED:
    return None
  return f"--config.distill.{key} was replaced by --config.distill.{RENAMED[key]} ({_RENAME_HINT[key]})"


def default_distill_config() -> ml_collections.ConfigDict:
  """Every distillation option, with its default. Check with `methods.validate`."""
  c = ml_collections.ConfigDict()
  # Which method of `methods.METHODS`: none | kd | pkd | alp_kd | ckd | rail_l | rail_c.
  # rail_l (layer-wise RAIL-KD, SPEC §1.3 first variant) is the default.
  c.method = "rail_l"
  # Softmax temperature T of the KD term T^2 KL(softmax(z_T/T) || softmax(z_S/T)).
  c.temperature = 1.0
  # Weights of CE, KD and the intermediate term for alp_kd, ckd, rail_l, rail_c:
  # L = ce_weight*CE + kd_weight*KD + int_weight*L_int (SPEC §1.4: 1/3 each).
  c.ce_weight = 1.0 / 3.0
  c.kd_weight = 1.0 / 3.0
  c.int_weight = 1.0 / 3.0
  # kd and pkd only: L = (1 - kd_alpha)*CE + kd_alpha*KD (+ pkd_beta*L_PT). In [0, 1].
  c.kd_alpha = 0.5
  # pkd only: weight beta of the patient term, the mean over the M-1 pairs and the H
  # features of the squared difference of the unit first-token vectors, as the PKD
  # authors' code (their grid: 10, 100, 500, 1000). 100 here.
  c.pkd_beta = 100.0
  # pkd only: 'skip' (student j <-> teacher floor(j*N/M): 2,4,..,10 for 12->6)
  # or 'last' (student j <-> teacher N-M+j: 7..11 for 12->6), j = 1..M-1.
  c.pkd_mapping = "skip"
  # rail_*: how teacher layers are chosen: 'uniform' (paper: M distinct of 1..N,
  # sorted), 'blockwise' (one per contiguous block, N split as np.array_split),
  # 'fixed' (fixed_layers).
  c.sampling = "uniform"
  # rail_*: resample the mapping every 'step' or every 'epoch' (read by the trainer,
  # which uses the step or epoch number as the counter of mapping_key). A run shorter
  # than two epochs with 'epoch' gets a warning naming how few mappings it will see.
  c.resample_every = "epoch"
  # rail_*: > 0 resamples every k steps instead (counter = step // k; overrides
  # resample_every); 0 = off.
  c.resample_every_steps = 0
  # sampling='fixed' only: M ascending distinct teacher layers in 1..N, e.g. (2, 4, 6).
  c.fixed_layers = ()
  # Pooling of the hidden states into one vector per example for ckd (pooled) and rail_*:
  # 'mean' (masked mean over real tokens) or 'cls' (first token). pkd and
  # alp_kd always use the first token, as published.
  c.pooling = "mean"
  # rail_*: how the student and teacher vectors are brought together (docs/METHODS.md):
  # 'student_to_teacher' (a linear map of the student vector to the teacher's width,
  #   compared with the raw teacher vector: a fixed target, no trivial minimiser),
  # 'both' (the paper's literal form: one trainable map per side to proj_dim; it has a
  #   trivial minimiser, so use it with center=True or distance='infonce'),
  # 'frozen_random' (as 'both', the teacher's map drawn once and never trained; lives
  #   under a 'frozen_' key, see methods.trainable_mask), or
  # 'none' (raw vectors on both sides; needs equal widths).
  # Replaces the old field teacher_proj ('trainable' is now 'both').
  c.projection = "student_to_teacher"
  # rail_*: width u of the maps of projection='both'/'frozen_random'.
  c.proj_dim = 128
  # rail_*: subtract each side's stop-gradient mean over the global batch (every
  # device) before projecting, and use bias-free maps.
  c.center = False
  # rail_l: the maps of pair j belong to student slot j ('slot', the paper: M maps) or
  # to the teacher layer paired with it ('teacher_layer': N maps, each sees one space).
  c.proj_index = "slot"
  # rail_*: 'sq_l2' (squared L2 between L2-normalised vectors, the paper), 'cosine'
  # (1 - cosine similarity), 'mse' (mean over the features of the squared difference of
  # the unnormalised vectors), 'infonce' (contrastive: each example's student vector
  # must pick its own teacher vector among the global batch's, temperature infonce_tau).
  c.distance = "sq_l2"
  c.infonce_tau = 0.1
  # ckd only: 'token' (every real token's states, the authors' code) or 'pooled' (one
  # vector per example, pooled by `pooling`; cacheable).
  c.ckd_granularity = "token"
  # 'uniform': the weights and temperature above as given; 'paper': each method's
  # published values replace them (docs/METHODS.md, "Presets"; methods.PAPER_PRESETS).
  c.preset = "uniform"
  # Collapse warning: one line when dir_var_student or dir_var_teacher stays under
  # collapse_threshold for collapse_patience consecutive logs (0 = never warn).
  c.collapse_threshold = 0.05
  c.collapse_patience = 3
  # Teacher-output cache (beyond the paper; rail_kd_jax/teacher_cache.py): run the
  # frozen teacher once over the train split, store its logits and every layer's
  # pooled/first-token vectors on disk (memory-mapped), and train without the
  # teacher forward. Not for ckd with ckd_granularity='token'.
  c.cache_teacher = False
  # 'bfloat16' (half the disk; values rounded to 8 significant bits) or 'float32'
  # (bit-for-bit the online teacher when data.bucket=False).
  c.cache_dtype = "bfloat16"
  return c
