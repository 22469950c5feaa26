"""The study (configs/study.py:runlocal): the whole path, its statistics against scipy, the
teacher forward paid once, cached == uncached, kill -9 then rerun == uninterrupted, the
early errors, and the GLUE variant on the TSV fixtures."""

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

from rail_kd_jax import study, teacher_cache
from rail_kd_jax.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLUE = os.path.join(REPO, "tests", "fixtures", "glue")
METHODS = ("none", "kd", "pkd", "alp_kd", "ckd", "rail_l", "rail_c")


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
    result = study.run_study(study_config(), wd)
  return {"workdir": wd, "study": result, "calls": len(calls), "stdout": out.getvalue()}


def test_runlocal_writes_every_output(finished):
  wd, s = finished["workdir"], finished["study"]
  for name in ("study.md", "study.json", "study.csv", "study.png"):
    assert os.path.getsize(os.path.join(wd, name)) > 0, name
  with open(os.path.join(wd, "study.json")) as f:
    assert json.load(f)["methods"].keys() == s["methods"].keys()
  assert tuple(s["methods"]) == METHODS
  for m, row in s["methods"].items():
    for split in ("dev", "test", "ood"):
      assert row[split]["n"] == 2 and len(row[split]["values"]) == 2, (m, split)
    assert row["train_seconds"]["n"] == 2
    assert row["selected"] in [p["name"] for p in s["grid"][m]]
  # The grid: 2 points for kd and rail_l, the selected one the best on dev (ties: earlier).
  assert [len(s["grid"][m]) for m in METHODS] == [1, 2, 1, 1, 1, 2, 1]
  for pts in s["grid"].values():
    best = max(range(len(pts)), key=lambda i: (pts[i]["dev"], -i))
    assert pts[best]["selected"] and sum(p["selected"] for p in pts) == 1
  # Every run of the selected points is a (method, seed) row; tuning runs follow.
  with open(os.path.join(wd, "study.csv")) as f:
    rows = list(csv.DictReader(f))
  assert len([r for r in rows if r["kind"] == "run"]) == 2 * len(METHODS)
  assert len([r for r in rows if r["kind"] == "tune"]) == 9
  # RAIL-KD's mapping counts: every step pairs each of the 2 student layers with a teacher layer.
  use = s["methods"]["rail_l"]["teacher_layer_use"]
  assert len(use) == 4 and sum(use) == 2 * 2 * 4  # 2 slots x 2 seeds x 4 steps
  md = open(os.path.join(wd, "study.md")).read()
  for heading in (
    "## Headline",
    "## Accuracy",
    "## Paired difference to KD",
    "## Tuning grid",
    "## Collapse diagnostics",
    "RAIL-KD mapping counts",
    "Machine:",
  ):
    assert heading in md, heading
  # Progress across the whole study: runs done / total with an ETA.
  total = 1 + sum(len(p) for p in s["grid"].values()) + len(METHODS)
  assert f"study [0/{total}] teacher" in finished["stdout"]
  assert f"study [{total - 1}/{total}]" in finished["stdout"] and "ETA" in finished["stdout"]


def test_teacher_forward_runs_once_per_study(finished):
  assert finished["calls"] == 1
  assert len(finished["study"]["cache"]["builds"]) == 1


def test_statistics_match_scipy(finished):
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
    pair, split = key.split("/")
    m, ref = pair.split("-")
    field = split
    diff = np.array([runs[(m, x)][field] - runs[(ref, x)][field] for x in seeds])
    assert d["differences"] == pytest.approx(diff.tolist()) and d["mean"] == pytest.approx(diff.mean())
    assert d["wins"] == int((diff > 0).sum()) and d["losses"] == int((diff < 0).sum())
    if diff.std() > 0:
      low, high = scipy_stats.t.interval(0.95, len(diff) - 1, loc=diff.mean(), scale=scipy_stats.sem(diff))
      assert (d["low"], d["high"]) == (pytest.approx(low), pytest.approx(high))
      checked += 1
  assert {"rail_l-kd/test", "ckd-rail_l/ood", "pkd-rail_l/train_seconds"} <= set(s["differences"])
  assert checked > 0  # train seconds always differ between runs


def _last_train_record(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return [r for r in records if r.get("split") == "train"][-1]


def test_cached_study_equals_uncached(finished, tmp_path):
  """The same students without the cache (the teacher runs inside every step): equal results
  up to float rounding. The teacher is trained again in the new workdir, bit for bit the same."""
  wd = str(tmp_path / "uncached")
  config = study_config()
  config.study.methods = ("kd", "ckd", "rail_l")
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
from rail_kd_jax import main, train
from rail_kd_jax import defaults
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
  wd = str(tmp_path / "wd")
  args = ["--config=configs/study.py:runlocal", f"--workdir={wd}"]
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
  assert len(before) >= 8  # the teacher, the tuning runs and the first seed-1 runs

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
  assert sorted(map(key, rerun["runs"])) == sorted(map(key, ref["runs"]))
  want = {key(r): r for r in ref["runs"]}
  for r in rerun["runs"]:
    for split in ("point", "dev", "test", "ood"):
      assert r[split] == want[key(r)][split], (key(r), split)
  for m in ref["grid"]:
    assert [(p["name"], p["dev"]) for p in rerun["grid"][m]] == [(p["name"], p["dev"]) for p in ref["grid"][m]]
  # study.md's tables are the same but for the columns of times.
  assert _untimed_tables(os.path.join(wd, "study.md")) == _untimed_tables(os.path.join(finished["workdir"], "study.md"))


def _untimed_tables(path):
  """Every table row of a study.md before its Time section, without the time columns."""
  lines = open(path).read().split("## Time")[0].splitlines()
  rows, drop = [], []
  for i, line in enumerate(lines):
    if not line.startswith("| "):
      continue
    cells = [c.strip() for c in line.strip("|").split("|")]
    if i + 1 < len(lines) and lines[i + 1].startswith("|---"):
      drop = [j for j, c in enumerate(cells) if "train s" in c or "step ms" in c]
    rows.append([c for j, c in enumerate(cells) if j not in drop])
  assert len(rows) > 20
  return rows


@pytest.mark.parametrize(
  "field, value, match",
  [
    ("grid", "{not json", "study.grid is neither"),
    ("grid", '{"kd": [{"temprature": 2.0}]}', "'temprature', which is not a distill field"),
    ("grid", '{"tinybert": [{}]}', r"names \['tinybert'\], which are not in study.methods"),
    ("grid", '{"kd": []}', "must be a non-empty list"),
    ("methods", ("kd", "tinybert"), "tinybert"),
    ("tune_seed", 7, "study.tune_seed=7 must be one of"),
    ("time_online", ("pkd",), r"time_online names \['pkd'\]"),
  ],
)
def test_bad_study_fields_stop_before_anything_runs(tmp_path, field, value, match):
  config = study_config()
  if field == "time_online":
    config.study.methods = ("kd",)
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
  from rail_kd_jax import defaults
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
