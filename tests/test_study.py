"""The study (configs/study.py:runlocal): the whole path, equal grids, tuning seeds apart, its
statistics against scipy and the per-example predictions, the teacher forward paid once,
cached == uncached, kill -9 then rerun == uninterrupted, the early errors, task 2 (tweets),
a local folder, and the GLUE variant on the TSV fixtures."""

import contextlib
import csv
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from scipy import stats as scipy_stats

from rail_kd_jax.outputs import stats
from rail_kd_jax.experiments import study
from rail_kd_jax.training import teacher_cache
from rail_kd_jax.core.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLUE = os.path.join(REPO, "tests", "fixtures", "glue")
METHODS = ("none", "kd", "pkd", "alp_kd", "ckd", "rail_l", "rail_c", "rail_paper")


def study_config(arg="runlocal"):
  spec = importlib.util.spec_from_file_location("study_cfg", os.path.join(REPO, "configs", "study.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
  """A persistent compilation cache shared by this module's in-process and subprocess runs:
  runs of one method at two seeds compile the same programs (no result changes)."""
  from jax._src import compilation_cache as cc

  path = str(tmp_path_factory.mktemp("jax_cache"))
  keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
  before = {k: getattr(jax.config, k) for k in keys}
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  cc.reset_cache()
  yield path
  for k, v in before.items():
    jax.config.update(k, v)
  cc.reset_cache()


@pytest.fixture(scope="module")
def finished(tmp_path_factory, jax_cache):
  """One uninterrupted runlocal study, with the teacher cache's forward counted."""
  wd = str(tmp_path_factory.mktemp("study") / "wd")
  calls = []
  real = teacher_cache.compute

  def counting(*args, **kwargs):
    calls.append(1)
    return real(*args, **kwargs)

  out = io.StringIO()
  with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
    mp.setattr(teacher_cache, "compute", counting)
    config = study_config()
    config.study.long_factor = 0  # the longer runs: test_tweets_task_... (the suite's time)
    result = study.run_study(config, wd)
  return {"workdir": wd, "study": result, "calls": len(calls), "stdout": out.getvalue()}


def test_runlocal_writes_every_output(finished):
  wd, s = finished["workdir"], finished["study"]
  for name in ("study.md", "study.json", "study.csv", "study.png", "study_predictions.npz"):
    assert os.path.getsize(os.path.join(wd, name)) > 0, name
  with open(os.path.join(wd, "study.json")) as f:
    assert json.load(f)["methods"].keys() == s["methods"].keys()
  assert tuple(s["methods"]) == METHODS
  for m, row in s["methods"].items():
    for split in ("dev", "test", "ood"):
      assert row[split]["n"] == 2 and len(row[split]["values"]) == 2, (m, split)
    assert row["train_seconds"]["n"] == 2
    assert row["selected"] in [p["name"] for p in s["grid"][m]]
  # Equal freedom: every method with a design space has the same number of points, the first
  # its published preset; the selected one the best mean dev accuracy (ties: earlier).
  assert [len(s["grid"][m]) for m in METHODS] == [1] + [2] * (len(METHODS) - 1)
  for m in METHODS[1:]:
    assert s["grid"][m][0]["name"] == "paper"
  for pts in s["grid"].values():
    best = max(range(len(pts)), key=lambda i: (pts[i]["dev"], -i))
    assert pts[best]["selected"] and sum(p["selected"] for p in pts) == 1
  # Tuning seeds apart from reported seeds: the grid ran at seed 100 only, the reported runs
  # at 0 and 1 only, and every reported run (also of the selected point) is its own run.
  tuned = {name for m in METHODS for name in os.listdir(os.path.join(wd, "tune", m, s["grid"][m][0]["name"]))}
  assert tuned == {"seed_100"}
  assert {name for m in METHODS for name in os.listdir(os.path.join(wd, "runs", m))} == {"seed_0", "seed_1"}
  with open(os.path.join(wd, "study.csv")) as f:
    rows = list(csv.DictReader(f))
  assert len([r for r in rows if r["kind"] == "run"]) == 2 * len(METHODS)
  assert len([r for r in rows if r["kind"] == "tune"]) == 1 + 2 * (len(METHODS) - 1)
  assert {r["seed"] for r in rows if r["kind"] == "tune"} == {"100"}
  assert not [r for r in rows if r["kind"] == "long"] and not s["longer"]
  # RAIL-KD's mapping counts: every step pairs each of the 2 student layers with a teacher layer;
  # the published form pairs M-1 = 1 student layer with one of teacher layers 1..N-1 = 1..3.
  use = s["methods"]["rail_l"]["teacher_layer_use"]
  assert len(use) == 4 and sum(use) == 2 * 2 * 4  # 2 slots x 2 seeds x 4 steps
  use = s["methods"]["rail_paper"]["teacher_layer_use"]
  assert sum(use) == 1 * 2 * 4 and use[3] == 0
  md = open(os.path.join(wd, "study.md")).read()
  for heading in (
    "## Verdict: 20 claims, Holm-corrected",
    "## Headline: rail_l minus each method",
    "## Headline: rail_paper minus each method",
    "## Accuracy",
    "## Paired difference to KD",
    "## Tuning grid (tuning seeds [100], never reported",
    "## Collapse diagnostics",
    "RAIL-KD mapping counts",
    "Machine:",
    "study_predictions.npz, sha256",
  ):
    assert heading in md, heading
  # Progress across the whole study: runs done / total with an ETA.
  total = 1 + sum(len(p) for p in s["grid"].values()) + 2 * len(METHODS)
  assert s["runs_total"] == total
  assert f"study [0/{total}] teacher" in finished["stdout"]
  assert f"study [{total - 1}/{total}]" in finished["stdout"] and "ETA" in finished["stdout"]


def test_teacher_forward_runs_once_per_study(finished):
  """One cache serves every method and both poolings (the grid has 'cls' and 'mean' points)."""
  assert finished["calls"] == 1
  assert len(finished["study"]["cache"]["builds"]) == 1


def test_statistics_match_scipy_and_the_per_example_predictions(finished):
  s = finished["study"]
  runs = {(r["method"], r["seed"]): r for r in s["runs"]}
  seeds = s["config"]["seeds"]
  for m, row in s["methods"].items():
    for split in ("dev", "test", "ood"):
      v = np.array([runs[(m, x)][split] for x in seeds])
      assert row[split]["values"] == v.tolist()
      assert row[split]["mean"] == pytest.approx(v.mean()) and row[split]["std"] == pytest.approx(v.std(ddof=1))
      if v.std() > 0:
        low, high = scipy_stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=scipy_stats.sem(v))
        assert row[split]["interval"]["low"] == pytest.approx(low)
        assert row[split]["interval"]["high"] == pytest.approx(high)
  checked = 0
  for key, d in s["differences"].items():
    pair, field = key.split("/")
    m, ref = pair.split("-")
    diff = np.array([runs[(m, x)][field] - runs[(ref, x)][field] for x in seeds])
    assert d["differences"] == pytest.approx(diff.tolist()) and d["mean"] == pytest.approx(diff.mean())
    assert d["wins"] == int((diff > 0).sum()) and d["losses"] == int((diff < 0).sum())
    if diff.std() > 0:
      low, high = scipy_stats.t.interval(0.95, len(diff) - 1, loc=diff.mean(), scale=scipy_stats.sem(diff))
      assert (d["low"], d["high"]) == (pytest.approx(low), pytest.approx(high))
      checked += 1
  assert {"rail_l-kd/test", "ckd-rail_l/ood", "pkd-rail_l/train_seconds"} <= set(s["differences"])
  assert checked > 0  # train seconds always differ between runs
  # The claims, recomputed from study_predictions.npz: accuracies, bootstrap, Holm, verdicts.
  z = np.load(os.path.join(finished["workdir"], "study_predictions.npz"))
  assert z["clusters/test"].max() + 1 == s["clusters"]["test"] < len(z["labels/test"])  # movies
  correct = lambda m, split: np.stack([z[f"runs/{m}/seed_{x}/{split}"] == z[f"labels/{split}"] for x in seeds])
  for (m, x), r in runs.items():
    for split in ("test", "ood"):
      assert r[split] == pytest.approx(correct(m, split)[seeds.index(x)].mean())
  assert len(s["claims"]) == 20
  for c in s["claims"]:
    a, b = correct(c["rail"], c["split"]).astype(float), correct(c["baseline"], c["split"]).astype(float)
    clusters = z["clusters/test"] if c["split"] == "test" else None
    want = stats.clustered_bootstrap(a, b, clusters, resamples=1000, seed=0)
    assert c["bootstrap"]["mean"] == pytest.approx(want["mean"]) and c["bootstrap"]["p_value"] == want["p_value"]
    assert c["t"]["mean"] == pytest.approx((a.mean(1) - b.mean(1)).mean())
  holm = stats.holm([c["bootstrap"]["p_value"] for c in s["claims"]])
  assert [c["p_holm"] for c in s["claims"]] == pytest.approx(holm)
  for c in s["claims"]:
    sep = c["p_holm"] < 0.05
    assert c["verdict"] == ("not separated" if not sep else "holds" if c["bootstrap"]["mean"] > 0 else "does not hold")


def _last_train_record(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return [r for r in records if r.get("split") == "train"][-1]


def test_cached_study_equals_uncached(finished, tmp_path):
  """The same students without the cache (the teacher runs inside every step): equal results
  up to float rounding. The teacher is trained again in the new workdir, bit for bit the same."""
  wd = str(tmp_path / "uncached")
  config = study_config()
  config.study.methods = ("ckd", "rail_l")
  config.study.long_factor = 0
  config.study.cache_teacher = False
  with contextlib.redirect_stdout(io.StringIO()):
    uncached = study.run_study(config, wd)
  assert not os.path.isdir(os.path.join(wd, "cache", "teacher"))
  assert uncached["teacher"]["eval"] == finished["study"]["teacher"]["eval"]
  cached = {(r["method"], r["seed"]): r for r in finished["study"]["runs"]}
  for r in uncached["runs"]:
    c = cached[(r["method"], r["seed"])]
    assert r["point"] == c["point"]
    for split in ("dev", "test", "ood"):
      assert r[split] == pytest.approx(c[split], abs=1e-6), (r["method"], r["seed"], split)
    a, b = _last_train_record(r["workdir"]), _last_train_record(c["workdir"])
    terms = [k for k in a if k in ("loss", "ce", "kd", "int") and isinstance(a[k], float)]
    assert "kd" in terms and "int" in terms or r["method"] == "kd"
    for k in terms:
      assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), (r["method"], r["seed"], k)


_SLOW_MAIN = """
import os, sys, time
from absl import app
from rail_kd_jax import main
from rail_kd_jax.training import train
from rail_kd_jax.core import defaults
slow, marker = os.environ["STUDY_SLOW_RUN"], os.environ["STUDY_MARKER"]
real = train.Trainer.train_on
def train_on(self, batch):
  out = real(self, batch)
  if self.workdir.endswith(slow) and self.step == 2:
    open(marker, "w").close()
    time.sleep(600)  # killed here, in the middle of this student run
  return out
train.Trainer.train_on = train_on
app.run(main.main, flags_parser=main.parse_flags)
"""


def test_kill_9_then_rerun_gives_the_same_table(finished, jax_cache, tmp_path):
  """Three methods (the suite's time): the killed-and-rerun study's runs, grid, claims and
  accuracy rows equal those of the uninterrupted study `finished`."""
  wd = str(tmp_path / "wd")
  subset = ("kd", "rail_paper")
  args = [
    "--config=configs/study.py:runlocal",
    f"--workdir={wd}",
    f"--config.study.methods={subset!r}",
    "--config.study.long_factor=0",
  ]
  env = dict(
    os.environ,
    HF_HUB_OFFLINE="1",
    JAX_COMPILATION_CACHE_DIR=jax_cache,
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    XLA_FLAGS="--xla_force_host_platform_device_count=1",
    STUDY_SLOW_RUN=os.path.join("runs", "kd", "seed_1"),
    STUDY_MARKER=str(tmp_path / "marker"),
  )
  script = tmp_path / "slow_main.py"
  script.write_text(_SLOW_MAIN)
  log = open(tmp_path / "killed.log", "w")  # a file, not a pipe: nobody reads it while we wait
  proc = subprocess.Popen(
    [sys.executable, str(script), *args], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
  )
  deadline = time.time() + 600
  while not os.path.exists(env["STUDY_MARKER"]):
    assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
    assert time.time() < deadline
    time.sleep(0.1)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  log.close()
  killed = os.path.join(wd, "runs", "kd", "seed_1")
  assert os.path.isdir(killed) and not os.path.exists(os.path.join(killed, "stage_result.json"))
  before = {}
  for root, _, files in os.walk(wd):
    if "stage_result.json" in files:
      before[root] = os.path.getmtime(os.path.join(root, "stage_result.json"))
  assert len(before) == 6  # the teacher, the 4 tuning runs and kd's seed-0 run

  proc = subprocess.run(
    [sys.executable, "-m", "rail_kd_jax.main", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  for root, mtime in before.items():  # finished runs were reused, not retrained
    assert os.path.getmtime(os.path.join(root, "stage_result.json")) == mtime, root
  with open(os.path.join(wd, "study.json")) as f:
    rerun = json.load(f)
  ref = finished["study"]
  key = lambda r: (r["method"], r["seed"])
  assert sorted(map(key, rerun["runs"])) == sorted(key(r) for r in ref["runs"] if r["method"] in subset)
  want = {key(r): r for r in ref["runs"]}
  for r in rerun["runs"]:
    for split in ("point", "dev", "test", "ood"):
      assert r[split] == want[key(r)][split], (key(r), split)
  for m in subset:
    assert [(p["name"], p["dev"]) for p in rerun["grid"][m]] == [(p["name"], p["dev"]) for p in ref["grid"][m]]
  claims = {c["claim"]: c for c in ref["claims"]}
  assert rerun["claims"] and all(c["bootstrap"] == claims[c["claim"]]["bootstrap"] for c in rerun["claims"])
  # study.md's accuracy tables hold the same rows but for the columns of times.
  names = {study.summary.ROW_NAMES[m] for m in subset}
  rows = lambda path: [r for r in _untimed_tables(path, "## Accuracy") if r[0] in names]
  assert rows(os.path.join(wd, "study.md")) == rows(os.path.join(finished["workdir"], "study.md"))


def _untimed_tables(path, section="## Accuracy"):
  """Every table row of one section of a study.md, without the time columns."""
  text = open(path).read()
  lines = text[text.index(section) :].split("\n## ", 2)[0].splitlines()
  rows, drop = [], []
  for i, line in enumerate(lines):
    if not line.startswith("| "):
      continue
    cells = [c.strip() for c in line.strip("|").split("|")]
    if i + 1 < len(lines) and lines[i + 1].startswith("|---"):
      drop = [j for j, c in enumerate(cells) if "train s" in c or "step ms" in c]
    rows.append([c for j, c in enumerate(cells) if j not in drop])
  assert len(rows) >= 4
  return rows


@pytest.mark.parametrize(
  "field, value, match",
  [
    ("grid", "{not json", "study.grid is neither"),
    ("grid", '{"kd": [{"temprature": 2.0}]}', "'temprature', which is not a distill field"),
    ("grid", '{"tinybert": [{}]}', r"names \['tinybert'\], which are not in study.methods"),
    ("grid", '{"kd": []}', "must be a non-empty list"),
    ("grid", '{"kd": [{"temperature": 2.0}]}', "unequal numbers of points"),
    ("methods", ("kd", "tinybert"), "tinybert"),
    ("tune_seeds", (0, 100), r"share \[0\]; a seed that selects a point is never reported"),
    ("time_online", ("pkd",), r"time_online names \['pkd'\]"),
    ("claims_for", ("tinybert",), r"claims_for names \['tinybert'\], which are not methods"),
  ],
)
def test_bad_study_fields_stop_before_anything_runs(tmp_path, field, value, match):
  config = study_config()
  if field == "time_online":
    config.study.methods = ("kd", "rail_l")
  config.study[field] = value
  with pytest.raises(ConfigError, match=match):
    study.run_study(config, str(tmp_path))
  assert not os.path.exists(os.path.join(tmp_path, "teacher"))


def test_missing_ood_file_and_uncacheable_method_stop_early(tmp_path):
  config = study_config()
  config.study.ood = str(tmp_path / "no_such.csv")
  with pytest.raises(ConfigError, match=r"study.ood=.*no_such.csv.*no such file"):
    study.run_study(config, str(tmp_path / "a"))
  config = study_config()
  config.study.methods = ("kd", "ckd")
  config.distill.ckd_granularity = "token"  # the cache holds pooled vectors, not every token's states
  with pytest.raises(ConfigError, match="'ckd' at grid point 'paper', which the teacher cache cannot serve"):
    study.run_study(config, str(tmp_path / "b"))
  assert not os.path.exists(tmp_path / "b" / "teacher")


def test_glue_study_on_the_tsv_fixtures(tmp_path, jax_cache):
  config = study_config("glue/sst2,runlocal")
  assert config.study.task == "glue" and config.data.task == "sst2"
  config.data.data_dir = os.path.join(GLUE, "SST-2")
  config.study.methods = ("none", "kd", "rail_l")
  config.train.batch_size = 4
  with contextlib.redirect_stdout(io.StringIO()):
    s = study.run_study(config, str(tmp_path))
  assert s["data"]["counts"] == {"train": 5, "dev": 1, "test": 4}  # 6 train rows: 1 held out as dev
  # The written splits hold GLUE's sentences unchanged (quotes included) and their labels.
  from rail_kd_jax.core import defaults
  from rail_kd_jax.data import tasks

  glue = defaults.data_config()
  glue.task, glue.data_dir = "sst2", os.path.join(GLUE, "SST-2")
  fixture = tasks.load_task(glue)
  local = defaults.data_config()
  local.train_file = str(tmp_path / "data" / "train.tsv")
  local.eval_files = {"dev": str(tmp_path / "data" / "dev.tsv"), "test": str(tmp_path / "data" / "test.tsv")}
  local.label_names = ("negative", "positive")
  ours = tasks.load_task(local)
  pairs = lambda cols, text: sorted(zip(cols[text], np.asarray(cols["label"]).tolist()))
  assert sorted(pairs(ours.splits["train"], "text") + pairs(ours.splits["dev"], "text")) == pairs(
    fixture.splits["train"], "sentence"
  )
  assert pairs(ours.splits["test"], "text") == pairs(fixture.splits["validation"], "sentence")
  assert any('"' in t for t in ours.splits["train"]["text"] + ours.splits["dev"]["text"])
  for m in config.study.methods:
    assert s["methods"][m]["test"]["n"] == 2 and "ood" not in s["methods"][m]
  # A GLUE study needs the BERT-base teacher folder; a regression task is refused.
  config = study_config("glue/sst2")
  with pytest.raises(ConfigError, match="study.teacher_path"):
    study.run_study(config, str(tmp_path / "x"))
  config = study_config("glue/stsb,runlocal")
  config.data.data_dir = os.path.join(GLUE, "STS-B")
  with pytest.raises(ConfigError, match="regression"):
    study.run_study(config, str(tmp_path / "y"))


def test_every_method_gets_the_same_number_of_points_drawn_from_its_own_space():
  config = study_config("")
  grid = study.grid_for(config)
  k = config.study.grid_points
  assert len(grid["none"]) == 1 and all(len(grid[m]) == k for m in METHODS[1:])
  assert set(config.study.tune_seeds).isdisjoint(config.study.seeds)
  from rail_kd_jax.distill import methods as methods_lib

  for m in METHODS[1:]:
    row = methods_lib.METHODS[m]
    assert {f: v for f, v in grid[m][0].items() if not f.startswith("_")} == row.preset  # the published point first
    for p in grid[m][1:]:  # every other point: the preset with each knob set to one of its candidates
      for knob in row.space:
        got = {f: p[f] for f in (knob.values[0] if isinstance(knob.values[0], dict) else {knob.name: 0})}
        assert any(got == (v if isinstance(v, dict) else {knob.name: v}) for v in knob.values), (m, knob.name, p)
    names = [p["_name"] for p in grid[m]]
    assert len(set(names)) == k
  # Both poolings and both map starts are offered where the method pools or learns a map.
  for m in ("pkd", "alp_kd", "ckd", "rail_l", "rail_c", "rail_paper"):
    assert {"mean", "cls"} <= set(next(kn.values for kn in methods_lib.METHODS[m].space if kn.name == "pooling"))
  for m in ("ckd", "rail_l", "rail_c", "rail_paper"):
    assert {"identity", "random"} <= set(
      next(kn.values for kn in methods_lib.METHODS[m].space if kn.name == "map_init")
    )
  # Deterministic: the same draw again; another grid seed draws other points.
  assert study.grid_for(config) == grid
  config.study.grid_seed = 1
  assert study.grid_for(config)["rail_l"] != grid["rail_l"]


def test_tweets_task_scores_its_reviews_on_the_two_shared_classes(tmp_path, jax_cache):
  config = study_config("tweets,runlocal")
  config.study.methods = ("kd", "rail_paper")
  assert config.study.long_factor == 2
  with contextlib.redirect_stdout(io.StringIO()):
    s = study.run_study(config, str(tmp_path))
  # The longer runs: each selected point again at long_factor x the steps, the first reported seed.
  for m in config.study.methods:
    r = s["longer"]["methods"][m]
    assert r["steps"] == 2 * r["base_steps"] == 8 and os.path.isdir(tmp_path / "long" / m / "seed_0"), m
  assert "## Longer training: the selected point at 8 steps against 4 (seed 0)" in open(tmp_path / "study.md").read()
  assert s["data"]["counts"]["test"]["examples"] == 3000 and s["ood_classes"] == [0, 2]
  z = np.load(tmp_path / "study_predictions.npz")
  assert set(np.unique(z["labels/ood"])) == {0, 2} and set(np.unique(z["labels/test"])) == {0, 1, 2}
  for m in config.study.methods:
    for x in config.study.seeds:
      pred = z[f"runs/{m}/seed_{x}/ood"]
      assert set(np.unique(pred)) <= {0, 2}  # neutral is never predicted on the reviews
      logits = np.load(tmp_path / "runs" / m / f"seed_{x}" / "eval_predictions" / "ood.npz")["logits"]
      np.testing.assert_array_equal(pred, np.where(logits[:, 2] > logits[:, 0], 2, 0))
  assert s["clusters"]["ood"] < 128  # movies
  assert [c["claim"] for c in s["claims"]] == ["rail_paper beats kd (test)", "rail_paper beats kd (ood)"]


def test_study_on_a_local_folder(tmp_path, jax_cache):
  """configs/study.py:local/<folder>,runlocal: train/dev/test plus ood.csv, clustered by `group`."""
  rng = np.random.default_rng(0)
  folder = tmp_path / "mine"
  folder.mkdir()
  words = ["good", "bad", "fine", "awful", "great", "poor", "nice", "dull"]
  for name, n in (("train", 96), ("dev", 32), ("test", 48), ("ood", 40)):
    with open(folder / f"{name}.csv", "w", newline="") as f:
      w = csv.writer(f)
      w.writerow(["text", "label", "group"])
      for i in range(n):
        label = int(rng.integers(0, 2))
        text = " ".join(rng.choice(words[label::2], 5)) + f" item {i}"
        w.writerow([text, ["neg", "pos"][label], f"g{i % 8}"])
  config = study_config(f"local/{folder},runlocal")
  assert config.study.task == "local" and config.study.local_dir == str(folder)
  config.study.methods = ("kd", "rail_l")
  config.study.long_factor = 0
  with contextlib.redirect_stdout(io.StringIO()):
    s = study.run_study(config, str(tmp_path / "wd"))
  assert s["data"]["counts"] == {"train": 96, "dev": 32, "test": 48}
  assert s["clusters"] == {"test": 8, "ood": 8}
  for m in config.study.methods:
    assert s["methods"][m]["test"]["n"] == 2 and s["methods"][m]["ood"]["n"] == 2
  assert [c["claim"] for c in s["claims"]] == ["rail_l beats kd (test)", "rail_l beats kd (ood)"]
  assert all(c["bootstrap"]["n_clusters"] == 8 for c in s["claims"])
  with pytest.raises(ConfigError, match="has no test file"):
    os.remove(folder / "test.csv")
    study.run_study(config, str(tmp_path / "wd2"))
