"""Every method's loss against an independent NumPy (float64) reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rail_kd_jax.distill import diagnostics
from rail_kd_jax.distill import methods
from rail_kd_jax.distill.methods import MethodInputs
from rail_kd_jax.core import defaults

B, T, num_student_layers, num_teacher_layers, C = 5, 6, 3, 7, 3
TOL = dict(rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------
# Inputs and NumPy references.


def make_inputs(hs, ht, regression=False, seed=0):
  rng = np.random.default_rng(seed)
  f32 = lambda *s: (0.4 * rng.normal(size=s)).astype(np.float32)
  lengths = np.array([6, 4, 1, 3, 2])
  token_mask = (np.arange(T)[None] < lengths[:, None]).astype(np.int32)
  sh, th = f32(num_student_layers + 1, B, T, hs), f32(num_teacher_layers + 1, B, T, ht)

  def mean_pool(h):
    m = token_mask[None, :, :, None].astype(np.float64)
    return ((h * m).sum(2) / m.sum(2)).astype(np.float32)

  c = 1 if regression else C
  labels = rng.normal(size=B).astype(np.float32) if regression else rng.integers(0, C, B)
  return MethodInputs(
    student_logits=f32(B, c) * 5,
    labels=labels,
    example_mask=np.array([1, 1, 1, 1, 0], np.float32),
    student_pooled=mean_pool(sh),
    student_cls=sh[:, :, 0],
    teacher_logits=f32(B, c) * 5,
    teacher_pooled=mean_pool(th),
    teacher_cls=th[:, :, 0],
    student_hidden=sh,
    teacher_hidden=th,
    token_mask=token_mask,
    mapping=np.array([2, 5, 6], np.int32),
    is_regression=regression,
  )


def heads(name, dcfg, hs, ht, seed=1):
  """init_heads, then every leaf replaced by N(0, 0.3) so biases matter too."""
  params = methods.METHODS[name].init_heads(
    jax.random.PRNGKey(seed), dcfg, hs, ht, num_student_layers, num_teacher_layers
  )
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: (0.3 * rng.normal(size=x.shape)).astype(np.float32), params)


def np_tree(tree):
  return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def wmean(values, w):
  return float((values * w).sum() / w.sum())


def log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def ref_ce(x):
  z = np.asarray(x.student_logits, np.float64)
  if x.is_regression:
    per = (z[:, 0] - x.labels) ** 2
  else:
    per = -log_softmax(z)[np.arange(B), x.labels]
  return wmean(per, x.example_mask)


def ref_kd(x, temp):
  zs = np.asarray(x.student_logits, np.float64)
  zt = np.asarray(x.teacher_logits, np.float64)
  if x.is_regression:
    return wmean((zs[:, 0] - zt[:, 0]) ** 2, x.example_mask)
  lt, ls_ = log_softmax(zt / temp), log_softmax(zs / temp)
  return wmean(temp**2 * (np.exp(lt) * (lt - ls_)).sum(-1), x.example_mask)


def unit(v):
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def ref_dist(a, b, kind):
  if kind == "sq_l2":
    return ((unit(a) - unit(b)) ** 2).sum(-1)
  if kind == "cosine":
    return 1 - (unit(a) * unit(b)).sum(-1)
  return ((a - b) ** 2).mean(-1)


def lin(p, v):
  return v @ p["kernel"] + p.get("bias", 0.0)


def dcfg_for(name, **kw):
  d = defaults.distill_config()
  d.method = name
  d.temperature = 2.0
  d.ce_weight, d.kd_weight, d.int_weight = 0.2, 0.3, 0.5
  d.kd_alpha = 0.4
  d.pkd_beta = 1.5
  for k, v in kw.items():
    d[k] = v
  return d


def check(name, dcfg, x, params, want_total, want_terms):
  total, metrics = methods.get_method(name).loss(params, x, dcfg)
  assert total.dtype == jnp.float32 and total.shape == ()
  np.testing.assert_allclose(float(total), want_total, **TOL)
  if "int" in want_terms:
    assert set(diagnostics.NAMES) <= set(metrics)
  assert set(metrics) - set(diagnostics.NAMES + diagnostics.RANK_NAMES) == set(want_terms) | {"loss"}
  for k, v in want_terms.items():
    assert metrics[k].dtype == jnp.float32 and metrics[k].shape == ()
    np.testing.assert_allclose(float(metrics[k]), v, **TOL)
  np.testing.assert_allclose(float(metrics["loss"]), want_total, **TOL)


# ----------------------------------------------------------------------------
# B. losses equal their formulas.


@pytest.mark.parametrize("regression", [False, True])
def test_none_and_kd(regression):
  x = make_inputs(8, 8, regression)
  d = dcfg_for("none")
  ce = ref_ce(x)
  check("none", d, x, {}, ce, {"ce": ce})
  d = dcfg_for("kd")
  kd = ref_kd(x, 2.0)
  check("kd", d, x, {}, 0.6 * ce + 0.4 * kd, {"ce": ce, "kd": kd})


@pytest.mark.parametrize("pkd_mapping,teacher_layers", [("skip", [2, 4]), ("last", [5, 6])])
@pytest.mark.parametrize("hs,ht,regression", [(8, 8, False), (8, 12, False), (8, 12, True)])
def test_pkd(pkd_mapping, teacher_layers, hs, ht, regression):
  x = make_inputs(hs, ht, regression)
  d = dcfg_for("pkd", pkd_mapping=pkd_mapping)
  p = heads("pkd", d, hs, ht)
  assert (p == {}) == (hs == ht)
  pn = np_tree(p)
  per = np.zeros(B)
  for j, t in zip(range(1, num_student_layers), teacher_layers):  # student layers 1..M-1
    s = np.asarray(x.student_cls[j], np.float64)
    if hs != ht:
      s = lin({k: v[j - 1] for k, v in pn["student_proj"].items()}, s)
    # The PKD code's F.mse_loss of the unit vectors: a mean over pairs and features.
    per += ((unit(s) - unit(np.asarray(x.teacher_cls[t], np.float64))) ** 2).mean(-1) / (num_student_layers - 1)
  pt = wmean(per, x.example_mask)
  ce, kd = ref_ce(x), ref_kd(x, 2.0)
  check("pkd", d, x, p, 0.6 * ce + 0.4 * kd + 1.5 * pt, {"ce": ce, "kd": kd, "int": pt})


@pytest.mark.parametrize("hs,ht,regression", [(8, 8, False), (8, 12, False), (12, 8, True)])
def test_alp_kd(hs, ht, regression):
  x = make_inputs(hs, ht, regression)
  d = dcfg_for("alp_kd")
  p = heads("alp_kd", d, hs, ht)
  pn = np_tree(p)
  tch = np.asarray(x.teacher_cls[1:], np.float64)  # [N, B, Ht]
  per = np.zeros(B)
  for j in range(1, num_student_layers + 1):
    s = np.asarray(x.student_cls[j], np.float64)
    if hs != ht:
      s = lin({k: v[j - 1] for k, v in pn["student_proj"].items()}, s)
    for b in range(B):
      scores = tch[:, b] @ s[b]
      w = np.exp(scores - scores.max())
      w /= w.sum()
      per[b] += ((s[b] - w @ tch[:, b]) ** 2).mean() / num_student_layers
  inter = wmean(per, x.example_mask)
  ce, kd = ref_ce(x), ref_kd(x, 2.0)
  check("alp_kd", d, x, p, 0.2 * ce + 0.3 * kd + 0.5 * inter, {"ce": ce, "kd": kd, "int": inter})


@pytest.mark.parametrize("granularity", ["pooled", "token"])
@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_ckd(granularity, pool):
  """The authors' form: student layer j projected up to group j's concatenated width, both
  sides unit-normalised, squared L2 summed over groups; token: mean over real tokens."""
  hs, ht = 8, 12
  x = make_inputs(hs, ht)
  d = dcfg_for("ckd", ckd_granularity=granularity, pooling=pool)
  p = heads("ckd", d, hs, ht)
  pn = np_tree(p)
  groups = [[1, 2, 3], [4, 5], [6, 7]]  # N=7 into M=3, larger groups first
  assert [pn["student_proj"][f"group_{j}"]["kernel"].shape for j in (1, 2, 3)] == [(8, 36), (8, 24), (8, 24)]
  tok = np.asarray(x.token_mask, np.float64) * np.asarray(x.example_mask, np.float64)[:, None]
  per = 0.0
  for j, g in enumerate(groups, start=1):
    if granularity == "token":
      s = np.asarray(x.student_hidden[j], np.float64)
      cat = np.concatenate([np.asarray(x.teacher_hidden[i], np.float64) for i in g], -1)
    else:
      src_s = x.student_pooled if pool == "mean" else x.student_cls
      src_t = x.teacher_pooled if pool == "mean" else x.teacher_cls
      cat = np.concatenate([np.asarray(src_t[i], np.float64) for i in g], -1)
      s = np.asarray(src_s[j], np.float64)
    per = per + ((unit(lin(pn["student_proj"][f"group_{j}"], s)) - unit(cat)) ** 2).sum(-1)  # [B] or [B, T]
  if granularity == "token":
    inter = float((per * tok).sum() / tok.sum())
  else:
    inter = wmean(per, x.example_mask)
  ce, kd = ref_ce(x), ref_kd(x, 2.0)
  check("ckd", d, x, p, 0.2 * ce + 0.3 * kd + 0.5 * inter, {"ce": ce, "kd": kd, "int": inter})


def np_center(v, w):
  """v [B, D] minus its mean over the examples with w > 0."""
  keep = np.asarray(w) > 0
  return v - v[keep].mean(0, keepdims=True)


def np_infonce(a, b, w, tau):
  """[B]: -log softmax_j(cos(a_i, b_j) / tau)[i], j over real examples (and i itself)."""
  logits = unit(a) @ unit(b).T / tau
  allowed = (np.asarray(w) > 0)[None, :] | np.eye(len(a), dtype=bool)
  logits = np.where(allowed, logits, -np.inf)
  mx = logits.max(-1, keepdims=True)
  lse = mx[:, 0] + np.log(np.exp(logits - mx).sum(-1))
  return lse - np.diag(logits)


def ref_rail_dist(a, b, dcfg, w):
  if dcfg.distance == "infonce":
    return np_infonce(a, b, w, dcfg.infonce_tau)
  return ref_dist(a, b, dcfg.distance)


def ref_rail(name, x, pn, dcfg):
  """NumPy RAIL-KD: pairs, optional centring, the maps of `dcfg.projection`, distance."""
  s_all = np.asarray(x.student_pooled if methods.pooling_of(dcfg) == "mean" else x.student_cls, np.float64)
  t_all = np.asarray(x.teacher_pooled if methods.pooling_of(dcfg) == "mean" else x.teacher_cls, np.float64)
  s = [s_all[j] for j in range(1, num_student_layers + 1)]
  t = [t_all[int(i)] for i in np.asarray(x.mapping)]
  w = x.example_mask
  tkey = "frozen_teacher_proj" if dcfg.projection == "frozen_random" else "teacher_proj"
  if name == "rail_c":
    s, t, index = [np.concatenate(s, -1)], [np.concatenate(t, -1)], [0]
  elif dcfg.proj_index == "teacher_layer":
    index = [int(i) - 1 for i in np.asarray(x.mapping)]
  else:
    index = list(range(num_student_layers))
  per = np.zeros(B)
  for k, (a, b) in zip(index, zip(s, t)):
    if dcfg.center:
      a, b = np_center(a, w), np_center(b, w)
    if dcfg.projection != "none":
      a = lin({n: v[k] for n, v in pn["student_proj"].items()}, a)
      if dcfg.projection != "student_to_teacher":
        b = lin({n: v[k] for n, v in pn[tkey].items()}, b)
    per += ref_rail_dist(a, b, dcfg, w) / len(s)
  return wmean(per, w)


RAIL_OPTIONS = [
  dict(projection="student_to_teacher"),
  dict(projection="both"),
  dict(projection="frozen_random"),
  dict(projection="none", hs=8),
  dict(projection="student_to_teacher", center=True),
  dict(projection="both", center=True),
  dict(projection="both", distance="infonce"),
  dict(projection="student_to_teacher", distance="infonce", infonce_tau=0.5),
  dict(projection="student_to_teacher", proj_index="teacher_layer"),
  dict(projection="both", proj_index="teacher_layer", center=True),
]


@pytest.mark.parametrize("name", ["rail_l", "rail_c"])
@pytest.mark.parametrize("distance", ["sq_l2", "cosine", "mse"])
@pytest.mark.parametrize("projection,hs,ht", [("student_to_teacher", 8, 12), ("frozen_random", 8, 12), ("none", 8, 8)])
def test_rail(name, distance, projection, hs, ht):
  x = make_inputs(hs, ht)
  d = dcfg_for(name, distance=distance, projection=projection, proj_dim=16)
  methods.validate(d, num_student_layers, num_teacher_layers, hs, ht)
  p = heads(name, d, hs, ht)
  if projection == "none":
    assert p == {}
  inter = ref_rail(name, x, np_tree(p), d)
  ce, kd = ref_ce(x), ref_kd(x, 2.0)
  check(name, d, x, p, 0.2 * ce + 0.3 * kd + 0.5 * inter, {"ce": ce, "kd": kd, "int": inter})


@pytest.mark.parametrize("name", ["rail_l", "rail_c"])
@pytest.mark.parametrize("options", RAIL_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_rail_projection_options(name, options):
  """Every projection option, centring, InfoNCE and teacher-layer maps against NumPy."""
  options = dict(options)
  hs = options.pop("hs", 8)
  ht = 8 if options["projection"] == "none" else 12
  x = make_inputs(hs, ht)
  d = dcfg_for(name, proj_dim=16, **options)
  methods.validate(d, num_student_layers, num_teacher_layers, hs, ht)
  p = heads(name, d, hs, ht)
  if d.center:
    assert not any("bias" in str(path) for path, _ in jax.tree_util.tree_leaves_with_path(p))
  count = 1 if name == "rail_c" else (num_teacher_layers if d.proj_index == "teacher_layer" else num_student_layers)
  for leaf in jax.tree.leaves(p):
    assert leaf.shape[0] == count
  inter = ref_rail(name, x, np_tree(p), d)
  ce, kd = ref_ce(x), ref_kd(x, 2.0)
  check(name, d, x, p, 0.2 * ce + 0.3 * kd + 0.5 * inter, {"ce": ce, "kd": kd, "int": inter})


def test_rail_diagnostics_read_the_compared_vectors():
  x = make_inputs(8, 12)
  d = dcfg_for("rail_l", projection="student_to_teacher")
  p = heads("rail_l", d, 8, 12)
  pn = np_tree(p)
  s_all, t_all = np.asarray(x.student_pooled, np.float64), np.asarray(x.teacher_pooled, np.float64)
  s = np.stack([lin({n: v[j] for n, v in pn["student_proj"].items()}, s_all[j + 1]) for j in range(num_student_layers)])
  t = np.stack([t_all[int(i)] for i in x.mapping])
  want = diagnostics.collapse_stats([(jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32))], x.example_mask)
  _, got = methods.rail_l_loss(p, x, d)
  assert set(want) == set(diagnostics.NAMES + diagnostics.RANK_NAMES)
  for k in want:
    np.testing.assert_allclose(float(got[k]), float(want[k]), **TOL)


@pytest.mark.parametrize("name", ["rail_l", "rail_c"])
def test_rail_regression_cls_pooling(name):
  x = make_inputs(8, 12, regression=True, seed=3)
  d = dcfg_for(name, pooling="cls", proj_dim=16)
  p = heads(name, d, 8, 12)
  inter = ref_rail(name, x, np_tree(p), d)
  ce, kd = ref_ce(x), ref_kd(x, 2.0)
  check(name, d, x, p, 0.2 * ce + 0.3 * kd + 0.5 * inter, {"ce": ce, "kd": kd, "int": inter})


def test_default_config_head_shapes_and_weights():
  d = defaults.distill_config()
  assert d.method == "rail_l" and d.projection == "student_to_teacher" and d.temperature == 1.0
  assert d.ce_weight == d.kd_weight == d.int_weight == pytest.approx(1 / 3)
  methods.validate(d, num_student_layers, num_teacher_layers, 8, 12)
  p = methods.METHODS["rail_l"].init_heads(jax.random.PRNGKey(0), d, 8, 12, num_student_layers, num_teacher_layers)
  assert set(p) == {"student_proj"} and p["student_proj"]["kernel"].shape == (num_student_layers, 8, 12)
  d.projection = "both"
  p = methods.METHODS["rail_l"].init_heads(jax.random.PRNGKey(0), d, 8, 12, num_student_layers, num_teacher_layers)
  assert p["student_proj"]["kernel"].shape == (num_student_layers, 8, 128)
  assert p["teacher_proj"]["kernel"].shape == (num_student_layers, 12, 128)
  d.method = "rail_c"
  p = methods.METHODS["rail_c"].init_heads(jax.random.PRNGKey(0), d, 8, 12, num_student_layers, num_teacher_layers)
  assert p["student_proj"]["kernel"].shape == (1, num_student_layers * 8, 128)
  assert p["teacher_proj"]["kernel"].shape == (1, num_student_layers * 12, 128)
  for name in ("none", "kd"):
    assert (
      methods.METHODS[name].init_heads(jax.random.PRNGKey(0), d, 8, 12, num_student_layers, num_teacher_layers) == {}
    )
  flags = {k: (m.needs_teacher, m.uses_mapping) for k, m in methods.METHODS.items()}
  assert flags["none"] == (False, False) and flags["rail_c"] == (True, True)


def test_pools_itself_when_only_hidden_states_given():
  x = make_inputs(8, 12)
  d = dcfg_for("rail_l", proj_dim=16)
  p = heads("rail_l", d, 8, 12)
  full, _ = methods.rail_l_loss(p, x, d)
  bare = x.replace(student_pooled=None, teacher_pooled=None, student_cls=None, teacher_cls=None)
  np.testing.assert_allclose(methods.rail_l_loss(p, bare, d)[0], full, **TOL)
  d.method = "alp_kd"
  pa = heads("alp_kd", d, 8, 12)
  np.testing.assert_allclose(methods.alp_kd_loss(pa, bare, d)[0], methods.alp_kd_loss(pa, x, d)[0], **TOL)


def test_rail_under_jit_with_traced_mapping_never_recompiles():
  x = jax.tree.map(jnp.asarray, make_inputs(8, 12))
  d = dcfg_for("rail_c", proj_dim=16)
  p = heads("rail_c", d, 8, 12)
  f = jax.jit(lambda p, x, mapping: methods.rail_c_loss(p, x.replace(mapping=mapping), d)[0])
  for mapping in ([1, 2, 3], [2, 5, 6], [5, 6, 7]):
    mapping = np.array(mapping, np.int32)
    eager = methods.rail_c_loss(p, x.replace(mapping=mapping), d)[0]
    np.testing.assert_allclose(f(p, x, mapping), eager, **TOL)
  assert f._cache_size() == 1


def test_padded_examples_do_not_count():
  x = make_inputs(8, 12)
  d = dcfg_for("rail_l", proj_dim=16)
  p = heads("rail_l", d, 8, 12)
  base = methods.rail_l_loss(p, x, d)[0]
  junk = x.replace(student_logits=x.student_logits.copy(), student_pooled=x.student_pooled.copy())
  junk.student_logits[4] = 1e3
  junk.student_pooled[:, 4] = 0.0  # zero vector: normalisation must not give NaN
  np.testing.assert_allclose(methods.rail_l_loss(p, junk, d)[0], base, **TOL)


def test_get_method_unknown():
  with pytest.raises(ValueError, match="unknown distillation method 'tinybert'; valid: none"):
    methods.get_method("tinybert")


# ----------------------------------------------------------------------------
# C. gradients.


@pytest.mark.parametrize(
  "name,kw",
  [
    ("kd", {}),
    ("pkd", {}),
    ("alp_kd", {}),
    ("ckd", {}),
    ("ckd", {"ckd_granularity": "pooled"}),
    ("rail_l", {}),
    ("rail_c", {}),
    ("rail_l", {"distance": "mse"}),
    ("rail_l", {"projection": "both"}),
    ("rail_l", {"projection": "both", "distance": "infonce"}),
    ("rail_c", {"center": True}),
    ("rail_l", {"proj_index": "teacher_layer"}),
  ],
)
def test_gradients_reach_student_and_heads(name, kw):
  x = jax.tree.map(jnp.asarray, make_inputs(8, 12))
  d = dcfg_for(name, proj_dim=16, **kw)
  p = heads(name, d, 8, 12)
  student = {k: getattr(x, k) for k in ("student_logits", "student_pooled", "student_cls", "student_hidden")}
  teacher = {k: getattr(x, k) for k in ("teacher_logits", "teacher_pooled", "teacher_cls", "teacher_hidden")}

  def f(p, student, teacher):
    return methods.METHODS[name].loss(p, x.replace(**student, **teacher), d)[0]

  gp, gs, gt = jax.grad(f, argnums=(0, 1, 2))(p, student, teacher)
  for leaf in jax.tree.leaves(gp):
    assert float(jnp.abs(leaf).max()) > 0
  assert float(jnp.abs(gs["student_logits"]).max()) > 0
  used = {"pkd": "student_cls", "alp_kd": "student_cls", "kd": None}.get(name, "student_pooled")
  if name == "ckd" and kw.get("ckd_granularity", "token") == "token":
    used = "student_hidden"
  if used:
    assert float(jnp.abs(gs[used]).max()) > 0
  for leaf in jax.tree.leaves(gt):  # the teacher never gets gradient
    assert float(jnp.abs(leaf).max()) == 0


@pytest.mark.parametrize("name", ["rail_l", "rail_c"])
def test_frozen_random_teacher_projection_gets_zero_gradient(name):
  x = jax.tree.map(jnp.asarray, make_inputs(8, 12))
  d = dcfg_for(name, projection="frozen_random", proj_dim=16)
  p = heads(name, d, 8, 12)
  assert set(p) == {"student_proj", "frozen_teacher_proj"}
  g = jax.grad(lambda p: methods.METHODS[name].loss(p, x, d)[0])(p)
  for leaf in jax.tree.leaves(g["frozen_teacher_proj"]):
    assert float(jnp.abs(leaf).max()) == 0
  for leaf in jax.tree.leaves(g["student_proj"]):
    assert float(jnp.abs(leaf).max()) > 0
  mask = methods.trainable_mask(p)
  assert all(jax.tree.leaves(mask["student_proj"]))
  assert not any(jax.tree.leaves(mask["frozen_teacher_proj"]))


# ----------------------------------------------------------------------------
# D. validate.


@pytest.mark.parametrize(
  "overrides,m,n,dims,match",
  [
    ({"method": "tinybert"}, 3, 7, None, "distill.method='tinybert' is not valid"),
    ({}, 8, 7, None, r"more layers \(8\) than the teacher \(7\)"),
    ({"sampling": "fixed", "fixed_layers": (1, 2)}, 3, 7, None, "distill.fixed_layers.*2 entries"),
    ({"sampling": "fixed", "fixed_layers": (0, 2, 3)}, 3, 7, None, "distill.fixed_layers.*outside"),
    ({"sampling": "fixed", "fixed_layers": (2, 3, 8)}, 3, 7, None, "distill.fixed_layers.*outside"),
    ({"sampling": "fixed", "fixed_layers": (3, 2, 4)}, 3, 7, None, "distill.fixed_layers.*ascending"),
    ({"sampling": "fixed", "fixed_layers": (2, 2, 4)}, 3, 7, None, "distill.fixed_layers.*duplicate"),
    ({"sampling": "random"}, 3, 7, None, "distill.sampling='random'.*uniform"),
    ({"pooling": "max"}, 3, 7, None, "distill.pooling='max'.*mean"),
    ({"distance": "l1"}, 3, 7, None, "distill.distance='l1'.*sq_l2"),
    ({"projection": "shared"}, 3, 7, None, "distill.projection='shared'.*student_to_teacher"),
    ({"teacher_proj": "none"}, 3, 7, None, "distill.teacher_proj was replaced by distill.projection"),
    ({"projection": "both", "distance": "mse"}, 3, 7, None, "distance='mse' with distill.projection='both'"),
    ({"projection": "both", "distance": "mse", "center": True}, 3, 7, None, "exact zero"),
    ({"proj_index": "pair"}, 3, 7, None, "distill.proj_index='pair'"),
    ({"infonce_tau": 0.0}, 3, 7, None, "distill.infonce_tau=0.0"),
    ({"resample_every_steps": -1}, 3, 7, None, "distill.resample_every_steps=-1"),
    ({"preset": "tuned"}, 3, 7, None, "distill.preset='tuned'"),
    ({"preset": "paper", "temperature": 3.0}, 3, 7, None, "distill.temperature=3.0 conflicts with"),
    ({"resample_every": "batch"}, 3, 7, None, "distill.resample_every='batch'.*epoch"),
    ({"pkd_mapping": "middle"}, 3, 7, None, "distill.pkd_mapping='middle'.*skip"),
    ({"ckd_granularity": "layer"}, 3, 7, None, "distill.ckd_granularity='layer'"),
    ({"projection": "none"}, 3, 7, (8, 12), "distill.projection='none'.*equal widths"),
    ({"method": "rail_c", "projection": "none"}, 3, 7, (8, 12), "distill.projection='none'"),
    ({"proj_dim": 0}, 3, 7, None, "distill.proj_dim=0"),
    ({"proj_dim": -4}, 3, 7, None, "distill.proj_dim=-4"),
    ({"temperature": 0.0}, 3, 7, None, "distill.temperature=0.0"),
    ({"ce_weight": -0.1}, 3, 7, None, "distill.ce_weight=-0.1"),
    ({"kd_weight": -1.0}, 3, 7, None, "distill.kd_weight"),
    ({"int_weight": -1.0}, 3, 7, None, "distill.int_weight"),
    ({"pkd_beta": -1.0}, 3, 7, None, "distill.pkd_beta"),
    ({"kd_alpha": 1.5}, 3, 7, None, "distill.kd_alpha=1.5"),
  ],
)
def test_validate_rejects(overrides, m, n, dims, match):
  d = defaults.distill_config()
  for k, v in overrides.items():
    d[k] = v
  dims = dims or (None, None)
  with pytest.raises(ValueError, match=match):
    methods.validate(d, m, n, *dims)


def test_validate_accepts_good_configs():
  d = defaults.distill_config()
  methods.validate(d, 6, 12, 384, 768)
  methods.validate(d, 6, 6)
  d.sampling, d.fixed_layers = "fixed", (2, 4, 6)
  methods.validate(d, 3, 6)
  d.projection = "none"
  methods.validate(d, 3, 6, 384, 384)
  d.projection, d.distance = "both", "infonce"
  assert methods.validate(d, 3, 6, 384, 768) == []
  d.distance = "sq_l2"
  (line,) = methods.validate(d, 3, 6, 384, 768)
  assert "trivial minimiser" in line and "center=True" in line
  d.center = True
  assert methods.validate(d, 3, 6, 384, 768) == []
  d.method = "kd"
  methods.validate(d, 8, 6, 384, 768)  # kd pairs no layers: M > N is fine


def test_resampling_warning_counts_the_mappings():
  d = defaults.distill_config()
  (line,) = methods.resampling_warnings(d, 6, 12, total_steps=300, steps_per_epoch=200)
  assert "at most 2 distinct layer mapping(s) of the 924 possible" in line
  assert methods.resampling_warnings(d, 6, 12, total_steps=400, steps_per_epoch=200) == []
  d.resample_every_steps = 10
  assert methods.resampling_warnings(d, 6, 12, total_steps=300, steps_per_epoch=200) == []
  d.resample_every_steps, d.method = 0, "kd"
  assert methods.resampling_warnings(d, 6, 12, total_steps=300, steps_per_epoch=200) == []


def test_resample_every_steps_counter():
  from rail_kd_jax.training import step as step_lib

  d = defaults.distill_config()
  d.resample_every_steps = 5
  spec = type("Spec", (), {"dcfg": d, "steps_per_epoch": 100})()
  assert [int(step_lib.mapping_counter(spec, s)) for s in (0, 4, 5, 14, 15)] == [0, 0, 1, 2, 3]
  d.resample_every_steps = 0
  assert int(step_lib.mapping_counter(spec, 250)) == 2


@pytest.mark.parametrize("name", list(methods.PAPER_PRESETS))
def test_paper_preset_sets_the_published_values(name):
  d = defaults.distill_config()
  d.method, d.preset = name, "paper"
  out = methods.apply_preset(d)
  for field, value in methods.PAPER_PRESETS[name].items():
    assert out[field] == pytest.approx(value)
  assert out.proj_dim == d.proj_dim and out.projection == d.projection
  again = methods.apply_preset(out)  # idempotent
  assert again.to_dict() == out.to_dict()
  d.preset = "uniform"
  assert methods.apply_preset(d).to_dict() == d.to_dict()


@pytest.mark.parametrize(
  "options",
  [
    dict(projection="both", center=True),
    dict(projection="both", distance="infonce"),
    dict(projection="student_to_teacher", center=True, distance="infonce"),
  ],
  ids=["center", "infonce", "center+infonce"],
)
def test_global_batch_terms_on_8_devices_equal_1(options):
  """Centring, InfoNCE and the diagnostics reduce over the device axis: the loss, the
  diagnostics and the heads' gradient on 8 devices x 2 examples equal 1 device x 16."""
  assert jax.device_count() >= 8
  rng = np.random.default_rng(5)
  b, hs, ht = 16, 8, 12
  d = dcfg_for("rail_l", proj_dim=16, **options)
  p = heads("rail_l", d, hs, ht)
  x = MethodInputs(
    student_logits=rng.normal(size=(b, C)).astype(np.float32),
    labels=rng.integers(0, C, b),
    example_mask=np.ones(b, np.float32),
    teacher_logits=rng.normal(size=(b, C)).astype(np.float32),
    student_pooled=(rng.normal(size=(num_student_layers + 1, b, hs)) + 1.0).astype(np.float32),
    teacher_pooled=(rng.normal(size=(num_teacher_layers + 1, b, ht)) + 1.0).astype(np.float32),
    mapping=np.array([2, 5, 6], np.int32),
  )

  def loss_and_grad(p, x):
    (total, metrics), g = jax.value_and_grad(lambda p: methods.rail_l_loss(p, x, d), has_aux=True)(p)
    return total, metrics, g

  want_total, want_metrics, want_grad = loss_and_grad(p, x)

  def shard(v, axis):
    return np.stack(np.split(np.asarray(v), 8, axis=axis))

  xs = x.replace(
    student_logits=shard(x.student_logits, 0),
    labels=shard(x.labels, 0),
    example_mask=shard(x.example_mask, 0),
    teacher_logits=shard(x.teacher_logits, 0),
    student_pooled=shard(x.student_pooled, 1),
    teacher_pooled=shard(x.teacher_pooled, 1),
    mapping=np.stack([x.mapping] * 8),
    axis_name="d",
  )

  def per_device(p, x):
    total, metrics, g = loss_and_grad(p, x)
    return jax.lax.pmean((total, metrics, g), "d")

  got_total, got_metrics, got_grad = jax.pmap(per_device, axis_name="d", in_axes=(None, 0))(p, xs)
  np.testing.assert_allclose(got_total[0], want_total, rtol=1e-5, atol=1e-6)
  for k, v in want_metrics.items():
    np.testing.assert_allclose(got_metrics[k][0], v, rtol=1e-5, atol=1e-6, err_msg=k)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a[0], b, rtol=1e-4, atol=1e-6), got_grad, want_grad)


@pytest.mark.parametrize("name", ["rail_l", "rail_c"])
def test_student_to_teacher_starts_at_identity_for_equal_widths(name):
  d = defaults.distill_config()
  d.method = name
  p = methods.METHODS[name].init_heads(jax.random.PRNGKey(0), d, 8, 8, num_student_layers, num_teacher_layers)
  k = np.asarray(p["student_proj"]["kernel"])
  width = 8 if name == "rail_l" else num_student_layers * 8
  np.testing.assert_array_equal(k, np.broadcast_to(np.eye(width), k.shape))
  x = make_inputs(8, 8)
  none = dcfg_for(name, projection="none")
  same = dcfg_for(name)
  np.testing.assert_allclose(
    methods.METHODS[name].loss(p, x, same)[0], methods.METHODS[name].loss({}, x, none)[0], **TOL
  )
  p = methods.METHODS[name].init_heads(
    jax.random.PRNGKey(0), d, 8, 12, num_student_layers, num_teacher_layers
  )  # unequal: N(0, 0.02)
  assert float(np.abs(np.asarray(p["student_proj"]["kernel"])).max()) < 0.2


# ----------------------------------------------------------------------------
# rail_paper (the published RAIL-KD), pooling and map starts, design spaces.


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_rail_paper_against_numpy(pool):
  """M-1 pairs (student 1..M-1, teacher mapping of 1..N-1), both sides of the concatenation
  mapped to u with a bias, L2-normalised, squared error summed over the real examples;
  KD without T^2."""
  x = make_inputs(8, 12)
  x = x.replace(mapping=np.array([2, 5], np.int32))
  d = dcfg_for("rail_paper", proj_dim=16, pooling=pool)
  p = heads("rail_paper", d, 8, 12)
  assert p["student_proj"]["kernel"].shape == (2 * 8, 16) and p["teacher_proj"]["kernel"].shape == (2 * 12, 16)
  pn = np_tree(p)
  s_all = np.asarray(x.student_pooled if pool == "mean" else x.student_cls, np.float64)
  t_all = np.asarray(x.teacher_pooled if pool == "mean" else x.teacher_cls, np.float64)
  s = np.concatenate([s_all[1], s_all[2]], -1)
  t = np.concatenate([t_all[2], t_all[5]], -1)
  per = ref_dist(lin(pn["student_proj"], s), lin(pn["teacher_proj"], t), "sq_l2")
  inter = float((per * (x.example_mask > 0)).sum())
  kd = ref_kd(x, d.temperature) / d.temperature**2
  want = d.ce_weight * ref_ce(x) + d.kd_weight * kd + d.int_weight * inter
  check("rail_paper", d, x, p, want, {"ce": ref_ce(x), "kd": kd, "int": inter})


def test_rail_paper_mapping_leaves_out_both_top_layers():
  d = dcfg_for("rail_paper")
  seen = set()
  for i in range(200):
    m = np.asarray(methods.mapping_for(d, jax.random.PRNGKey(i), 6, 4))
    assert m.shape == (3,) and list(m) == sorted(set(m.tolist())) and 1 <= m.min() and m.max() <= 5
    seen.add(tuple(m.tolist()))
  assert len(seen) == 10  # every 3-subset of 1..5 appears


def test_pooling_default_is_each_methods_own_and_can_be_set():
  for name, own in (("pkd", "cls"), ("alp_kd", "cls"), ("ckd", "mean"), ("rail_l", "mean"), ("rail_paper", "mean")):
    assert methods.pooling_of(dcfg_for(name)) == own
    assert methods.pooling_of(dcfg_for(name, pooling="cls" if own == "mean" else "mean")) != own
  x = make_inputs(8, 8)
  for name in ("pkd", "alp_kd"):
    d = dcfg_for(name, pooling="mean")
    p = heads(name, d, 8, 8)
    mean_loss = methods.get_method(name).loss(p, x, d)[0]
    swapped = x.replace(student_cls=x.student_pooled, teacher_cls=x.teacher_pooled)
    np.testing.assert_allclose(mean_loss, methods.get_method(name).loss(p, swapped, dcfg_for(name))[0], **TOL)


def test_map_starts():
  from rail_kd_jax.distill import projections

  np.testing.assert_array_equal(projections.identity_like(3, 3), np.eye(3))
  np.testing.assert_array_equal(projections.identity_like(3, 2), np.eye(3)[:, :2])
  np.testing.assert_array_equal(projections.identity_like(2, 6), np.concatenate([np.eye(2)] * 3, 1))
  key = jax.random.PRNGKey(0)
  ckd = methods.ckd_init_heads(key, dcfg_for("ckd", map_init="identity"), 4, 4, 2, 4)["student_proj"]
  np.testing.assert_array_equal(ckd["group_1"]["kernel"], np.concatenate([np.eye(4)] * 2, 1))
  assert not np.any(np.asarray(ckd["group_1"]["bias"]))
  ckd_own = methods.ckd_init_heads(key, dcfg_for("ckd"), 4, 4, 2, 4)["student_proj"]["group_1"]["kernel"]
  assert 0.005 < float(np.std(ckd_own)) < 0.05  # N(0, 0.02^2), the authors' start
  rail = methods.rail_l_init_heads(key, dcfg_for("rail_l"), 8, 8, 3, 6)["student_proj"]["kernel"]
  np.testing.assert_array_equal(rail, np.broadcast_to(np.eye(8), (3, 8, 8)))
  rand = methods.rail_l_init_heads(key, dcfg_for("rail_l", map_init="random"), 8, 8, 3, 6)["student_proj"]["kernel"]
  assert 0.005 < float(np.std(rand)) < 0.05
  paper = methods.rail_paper_init_heads(key, dcfg_for("rail_paper", proj_dim=64), 32, 32, 3, 6)
  assert abs(float(np.std(paper["teacher_proj"]["kernel"])) - (2 / (64 + 64)) ** 0.5) < 0.02
  with pytest.raises(Exception, match="map_init"):
    methods.check_options(dcfg_for("rail_l", map_init="orthogonal"))


def test_every_design_space_names_real_fields_and_its_preset_is_valid():
  fields = defaults.distill_config()
  for name, row in methods.METHODS.items():
    for knob in row.space:
      assert len(knob.values) >= 2 and knob.why, (name, knob.name)
      for v in knob.values:
        for field, value in v.items() if isinstance(v, dict) else [(knob.name, v)]:
          assert field in fields and type(value) is type(fields[field]), (name, field, value)
    assert set(row.preset) <= set(fields) and (row.preset_source or not row.preset), name
    d = dcfg_for(name)
    d.preset = "paper"
    d.ce_weight, d.kd_weight, d.int_weight, d.kd_alpha, d.pkd_beta, d.temperature = 1 / 3, 1 / 3, 1 / 3, 0.5, 100.0, 1.0
    methods.check_options(methods.apply_preset(d))
  assert methods.METHODS["none"].space == ()
