"""Distillation options with their documented defaults (see docs/METHODS.md)."""

import ml_collections


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
  # pkd only: weight of the patient term, a *sum* over the M-1 pairs of squared L2
  # distances between unit vectors. The PKD reference code averages over the
  # M-1 pairs and the H features instead; its beta_code = pkd_beta*(M-1)*H
  # (0.1 here ~ beta_code 384 for 12->6 layers, H=768, inside the paper's grid).
  c.pkd_beta = 0.1
  # pkd only: 'skip' (student j <-> teacher floor(j*N/M): 2,4,..,10 for 12->6)
  # or 'last' (student j <-> teacher N-M+j: 7..11 for 12->6), j = 1..M-1.
  c.pkd_mapping = "skip"
  # rail_*: how teacher layers are chosen: 'uniform' (paper: M distinct of 1..N,
  # sorted), 'blockwise' (one per contiguous block, N split as np.array_split),
  # 'fixed' (fixed_layers).
  c.sampling = "uniform"
  # rail_*: resample the mapping every 'step' or every 'epoch' (read by the trainer,
  # which uses the step or epoch number as the counter of mapping_key).
  c.resample_every = "epoch"
  # sampling='fixed' only: M ascending distinct teacher layers in 1..N, e.g. (2, 4, 6).
  c.fixed_layers = ()
  # Pooling of the hidden states into one vector per example for ckd and rail_*:
  # 'mean' (masked mean over real tokens) or 'cls' (first token). pkd and
  # alp_kd always use the first token, as published.
  c.pooling = "mean"
  # rail_*: width u of the projections.
  c.proj_dim = 128
  # rail_*: teacher-side projection: 'trainable', 'frozen_random' (drawn once at
  # init, never updated; lives under a 'frozen_' key, see methods.trainable_mask),
  # or 'none' (no projection on either side; needs equal widths, proj_dim unused).
  c.teacher_proj = "trainable"
  # rail_*: 'sq_l2' (squared L2 between L2-normalised projections, the paper),
  # 'cosine' (1 - cosine similarity), 'mse' (mean over the u features of the
  # squared difference of the unnormalised projections).
  c.distance = "sq_l2"
  # ckd only: 'pooled' (compare pooled vectors, as every other method here) or
  # 'token' (compare every real token's states, as CKD on full hidden states).
  c.ckd_granularity = "pooled"
  # Teacher-output cache (beyond the paper; rail_kd_jax/teacher_cache.py): run the
  # frozen teacher once over the train split, store its logits and every layer's
  # pooled/first-token vectors on disk (memory-mapped), and train without the
  # teacher forward. Not for ckd with ckd_granularity='token'.
  c.cache_teacher = False
  # 'bfloat16' (half the disk; values rounded to 8 significant bits) or 'float32'
  # (bit-for-bit the online teacher when data.bucket=False).
  c.cache_dtype = "bfloat16"
  return c
