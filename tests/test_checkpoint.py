"""Checkpoints: layout, keep-N/keep-best, resume on another device count, corrupt and
half-written checkpoints, config changes, numerical guards, the preemption guard."""

import json
import os
import shutil
import signal

import jax
import numpy as np
import pytest

from rail_kd_jax.training import checkpoint as ckpt_lib
from rail_kd_jax.training import resume
from rail_kd_jax.outputs import writers
from rail_kd_jax.training import train
from rail_kd_jax.core import errors
from rail_kd_jax.core.errors import ConfigError

import helpers

K, TOTAL = 10, 20  # stop (checkpoint) at K, train to TOTAL


_TINY = {"data.bucket": False, "train.export": False, "train.plots": False}


def tiny_config(**overrides):
  return helpers.tiny_config(**{**_TINY, **overrides})


def distill_config(**kw):
  base = {
    "mode": "distill",
    "distill.method": "rail_l",
    "distill.resample_every": "step",
    "train.num_steps": TOTAL,
    "train.log_every": 1,
    "train.eval_every": 5,
    "checkpoint.every": 5,
  }
  base.update(kw)
  return tiny_config(**base)


def _params(trainer):
  return jax.tree.map(np.asarray, trainer.host_params())


def _train_records(workdir, after=0):
  return writers.without_wall_clock(
    [r for r in writers.read_metrics(workdir) if r["split"] == "train" and r["step"] > after]
  )


def _assert_trees_close(a, b, atol):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=atol, rtol=0), a, b)


# ------------------------------------------------------------------- unit: the manager


def _fake_state(value: float):
  return {
    "params": {"student": {"w": np.full((4, 3), value, np.float32)}, "heads": {}},
    "opt_state": {"0": {"count": np.array(int(value), np.int32)}},
    "step": np.array(int(value), np.int32),
    "skipped": np.array(0, np.int32),
  }


def test_keep_newest_and_best(tmp_path):
  ck = ckpt_lib.Checkpointer(str(tmp_path), keep=2, best_metric="accuracy", best_mode="max", async_save=True)
  accuracy = {10: 0.5, 20: 0.9, 30: 0.6, 40: None, 50: 0.7, 60: None}
  for step, acc in accuracy.items():
    ck.save(step, _fake_state(step), {"note": "x"}, None if acc is None else {"accuracy": acc, "loss": 1.0})
  ck.wait()
  assert ck.steps() == [20, 50, 60]  # newest 2 + best (20)
  assert not ck.save(60, _fake_state(60), {})  # an existing step is never overwritten
  ck.close()
  ck = ckpt_lib.Checkpointer(str(tmp_path / "mse"), keep=1, best_metric="mse", best_mode="min")
  for step, mse in {1: 3.0, 2: 1.0, 3: 2.0}.items():
    ck.save(step, _fake_state(step), {}, {"mse": mse})
  ck.close()
  assert ck.steps() == [2, 3]


def test_half_written_and_corrupt_checkpoints_are_skipped(tmp_path):
  ck = ckpt_lib.Checkpointer(str(tmp_path), keep=3, best_metric=None)
  for step in (1, 2, 3):
    ck.save(step, _fake_state(step), {})
  ck.close()
  template = jax.tree.map(np.zeros_like, _fake_state(0))
  # A half-written save (orbax's temporary folder) and a committed step whose array files are truncated.
  half = tmp_path / "checkpoints" / "4.orbax-checkpoint-tmp-1234567"
  (half / "state").mkdir(parents=True)
  (half / "state" / "junk").write_bytes(b"partial")
  for root, _, files in os.walk(tmp_path / "checkpoints" / "3" / "state"):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
  # Step 2: intact layout, but one value flipped -> fails the CRC.
  meta_file = tmp_path / "checkpoints" / "2" / "meta" / "metadata"
  meta = json.loads(meta_file.read_text())
  meta["crc32"] ^= 1
  meta_file.write_text(json.dumps(meta))
  ck = ckpt_lib.Checkpointer(str(tmp_path), keep=3, best_metric=None)
  assert not half.exists()
  state, meta = ck.restore_latest(template, lambda meta, path: None)
  assert meta["step"] == 1 and int(state["step"]) == 1
  np.testing.assert_array_equal(state["params"]["student"]["w"], _fake_state(1)["params"]["student"]["w"])
  assert sorted(os.listdir(tmp_path / ckpt_lib.CORRUPT_DIR)) == ["2", "3"]  # set aside, not deleted
  assert ck.steps() == [1]
  ck.close()


def test_config_change_rules():
  saved = resume.flat_config(distill_config())
  ok = resume.flat_config(
    distill_config(
      **{
        "train.log_every": 7,
        "num_devices": 1,
        "parallel": "shard_map",
        "student.dropout": 0.2,
        "optim.learning_rate": 1e-3,
      }
    )
  )
  assert set(resume.check_resume_config(saved, ok, "x")) == {
    "train.log_every",
    "num_devices",
    "parallel",
    "student.dropout",
    "optim.learning_rate",
  }
  for change, field in [
    ({"distill.method": "kd"}, "distill.method"),
    ({"student.hidden_size": 64}, "student.hidden_size"),
    ({"train.batch_size": 32}, "train.batch_size"),
    ({"seed": 3}, "seed"),
  ]:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
      resume.check_resume_config(saved, resume.flat_config(distill_config(**change)), "x")
  # The finetune model section does not matter to a distill run.
  assert resume.check_resume_config(saved, resume.flat_config(distill_config(**{"model.hidden_size": 64})), "x") == [
    "model.hidden_size"
  ]


def test_preemption_guard_second_signal_is_default():
  previous = signal.getsignal(signal.SIGTERM)
  with ckpt_lib.PreemptionGuard() as guard:
    assert not guard.requested
    os.kill(os.getpid(), signal.SIGTERM)
    assert guard.requested and guard.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # a second SIGTERM kills at once
  assert signal.getsignal(signal.SIGTERM) == previous


# --------------------------------------------------- resume on another device count


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
  """A persistent compilation cache for this module: every Trainer here rebuilds the same
  programs, so only the first of each device count compiles (results are unchanged)."""
  from jax._src import compilation_cache as cc

  keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
  before = {k: getattr(jax.config, k) for k in keys}
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  cc.reset_cache()
  yield
  for k, v in before.items():
    jax.config.update(k, v)
  cc.reset_cache()


@pytest.fixture(scope="module")
def stopped_on_8(tmp_path_factory):
  """A run on 8 devices stopped (checkpoint) at step K, and that run continued on 8 to TOTAL."""
  base = tmp_path_factory.mktemp("ckpt8")
  wd = str(base / "run")
  config = distill_config(num_devices=8)
  trainer = train.Trainer.create(config, wd)
  assert trainer.step == 0 and trainer.resumed_meta is None
  with pytest.raises(errors.Preempted) as stop:
    trainer.fit(stop_at=K)
  assert stop.value.step == K and os.path.isdir(os.path.join(wd, "checkpoints", str(K)))
  snapshot = str(base / "snapshot")
  shutil.copytree(wd, snapshot)
  cont = train.Trainer.create(config, wd)
  assert cont.step == K
  cont.fit()
  return {"snapshot": snapshot, "ref_wd": wd, "ref_params": _params(cont), "base": base}


@pytest.mark.slow
def test_resume_8_to_1_equals_continuing_on_8(stopped_on_8):
  wd = str(stopped_on_8["base"] / "on1")
  shutil.copytree(stopped_on_8["snapshot"], wd)
  trainer = train.Trainer.create(distill_config(num_devices=1), wd)
  assert trainer.step == K and trainer.resumed_meta["num_devices"] == 8
  trainer.fit()
  _assert_trees_close(_params(trainer), stopped_on_8["ref_params"], 1e-5)
  ref, got = _train_records(stopped_on_8["ref_wd"]), _train_records(wd)
  assert [r["step"] for r in got] == list(range(1, TOTAL + 1)) == [r["step"] for r in ref]
  np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in ref], atol=1e-5, rtol=0)
  assert [r["mapping"] for r in got] == [r["mapping"] for r in ref]


@pytest.mark.slow
def test_resume_1_to_4_shard_map_equals_8(stopped_on_8, tmp_path):
  """1 device (pmap) -> checkpoint at K -> 4 devices (shard_map): the numbers of 8 devices throughout."""
  wd = str(tmp_path)
  first = train.Trainer.create(distill_config(num_devices=1), wd)
  with pytest.raises(errors.Preempted):
    first.fit(stop_at=K)
  trainer = train.Trainer.create(distill_config(num_devices=4, parallel="shard_map"), wd)
  assert trainer.step == K and trainer.resumed_meta["num_devices"] == 1
  trainer.fit()
  _assert_trees_close(_params(trainer), stopped_on_8["ref_params"], 1e-5)
  ref, got = _train_records(stopped_on_8["ref_wd"]), _train_records(wd)
  np.testing.assert_allclose([r["grad_norm"] for r in got], [r["grad_norm"] for r in ref], rtol=1e-5)


def test_restore_onto_shard_map_is_exact(stopped_on_8, tmp_path):
  """A pmap checkpoint placed by the shard_map path (and vice versa) holds the same bits."""
  wd = str(tmp_path)
  shutil.copytree(stopped_on_8["snapshot"], wd, dirs_exist_ok=True)
  ck = ckpt_lib.Checkpointer(wd, keep=10)
  template = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), ck.manager.item_metadata(K)["state"].tree)
  saved = ck.read_state(K, template, ck.read_meta(K))
  ck.close()
  trainer = train.Trainer.create(distill_config(num_devices=4, parallel="shard_map"), wd)
  assert trainer.step == K
  jax.tree.map(np.testing.assert_array_equal, _params(trainer), saved["params"])
  assert int(trainer.par.scalar(trainer.state.step)) == K


@pytest.mark.slow
def test_corrupt_newest_falls_back_and_completes(stopped_on_8, tmp_path):
  """Truncated files in the newest checkpoint (K): resume from the previous one (K-5), same final params."""
  wd = str(tmp_path / "run")
  shutil.copytree(stopped_on_8["snapshot"], wd)
  newest = os.path.join(wd, "checkpoints", str(K))
  for root, _, files in os.walk(newest):
    for name in files:
      path = os.path.join(root, name)
      os.truncate(path, os.path.getsize(path) // 3)
  trainer = train.Trainer.create(distill_config(num_devices=8), wd)
  assert trainer.step == K - 5
  assert os.path.isdir(os.path.join(wd, ckpt_lib.CORRUPT_DIR, str(K)))
  trainer.fit()
  _assert_trees_close(_params(trainer), stopped_on_8["ref_params"], 0)  # same device count: bitwise
  assert _train_records(wd) == _train_records(stopped_on_8["ref_wd"])


def test_refuses_breaking_config_change_allows_harmless(stopped_on_8, tmp_path):
  wd = str(tmp_path)
  shutil.copytree(stopped_on_8["snapshot"], wd, dirs_exist_ok=True)
  with pytest.raises(ConfigError, match=r"distill\.method='rail_l' \(checkpoint\) vs 'kd' \(now\)"):
    train.Trainer.create(distill_config(num_devices=8, **{"distill.method": "kd"}), wd)
  with pytest.raises(ConfigError, match=r"distill\.proj_dim"):
    train.Trainer.create(distill_config(num_devices=8, **{"distill.proj_dim": 8}), wd)
  trainer = train.Trainer.create(distill_config(num_devices=2, **{"train.log_every": 3}), wd)
  assert trainer.step == K


def test_checkpoint_holds_student_state_only(stopped_on_8):
  ck = ckpt_lib.Checkpointer(stopped_on_8["ref_wd"], keep=10)
  step = ck.latest_step()
  assert step == TOTAL
  tree = ck.manager.item_metadata(step)["state"]
  tree = getattr(tree, "tree", tree)
  assert set(tree) == {"step", "params", "opt_state", "skipped"}
  assert set(tree["params"]) == {"student", "heads"}
  meta = ck.read_meta(step)
  assert meta["final"] and meta["seed"] == 0 and meta["steps_per_epoch"] > 0 and meta["num_devices"] == 8
  assert meta["epoch"] * meta["steps_per_epoch"] + meta["step_in_epoch"] == step
  assert meta["config"]["distill.method"] == "rail_l" and len(meta["config_hash"]) == 16
  assert not any("teacher" in k and "proj" not in k for k in _flat_keys(tree))
  ck.close()


def test_resuming_a_finished_run_trains_nothing(stopped_on_8, tmp_path):
  wd = str(tmp_path / "done")
  shutil.copytree(stopped_on_8["ref_wd"], wd)
  trainer = train.Trainer.create(distill_config(num_devices=8), wd)
  assert trainer.step == TOTAL and trainer.resumed_meta["final"]
  result = trainer.fit()
  assert trainer.step == TOTAL and "dev" in result
  strip = writers.without_wall_clock
  assert strip(writers.read_metrics(wd)) == strip(writers.read_metrics(stopped_on_8["ref_wd"]))


def _flat_keys(tree, prefix=""):
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _flat_keys(v, f"{prefix}/{k}")
  else:
    yield prefix


# ------------------------------------------------------------------- numerical guards


class PoisonedTrainer(train.Trainer):
  """At the steps in `poison` (1-based, as logged) the teacher's params are NaN, so the
  distillation terms and the gradient are non-finite while the student's inputs stay valid."""

  poison: frozenset = frozenset()

  def train_on(self, batch):
    if self.step + 1 not in self.poison:
      return super().train_on(batch)
    teacher = self.teacher_params
    nan = jax.tree.map(lambda x: np.full(np.shape(x), np.nan, x.dtype), self.run.teacher_params)
    self.teacher_params = self.par.replicate(nan)
    try:
      return super().train_on(batch)
    finally:
      self.teacher_params = teacher


def test_nan_is_skipped_and_persistent_nan_stops(tmp_path):
  # Step 3's batch is poisoned once (skipped, counted); steps 8.. are poisoned for good.
  config = distill_config(num_devices=1, **{"train.max_bad_steps": 4, "checkpoint.every": 0})
  trainer = PoisonedTrainer.create(config, str(tmp_path))
  trainer.poison = frozenset((3,) + tuple(range(8, TOTAL + 1)))
  with pytest.raises(errors.TrainingDiverged) as err:
    trainer.fit()
  message = str(err.value)
  assert "4 consecutive steps" in message and "train.max_bad_steps=4" in message
  # The NaN enters through the teacher: the distillation terms are named, CE is not.
  named = message.split("the last one in ")[1].split(";")[0]
  assert named == "int, kd, loss, grad_norm", message
  records = {r["step"]: r for r in _train_records(str(tmp_path))}
  assert records[2]["finite"] == 1 and records[2]["skipped"] == 0
  assert records[3]["finite"] == 0 and records[3]["skipped"] == 1 and records[3]["loss"] == "nan"
  assert np.isfinite(records[3]["ce"])
  assert records[4]["finite"] == 1 and records[4]["skipped"] == 1
  assert records[8]["skipped"] == 2
  # The skipped updates left the params untouched and finite.
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(_params(trainer)))
  assert trainer.step <= 8 + 4  # stopped within one step of the 4th bad step


def test_older_checkpoints_resume_unless_their_loss_changed():
  """A checkpoint written before the rail-only distill fields existed still resumes a kd or
  finetune run; a rail_l run whose projection cannot be known is refused, saying why."""
  from rail_kd_jax.training import resume
  from rail_kd_jax.core.errors import ConfigError

  new = {
    "mode": "distill",
    "distill.method": "kd",
    "distill.projection": "student_to_teacher",
    "distill.center": False,
    "distill.proj_index": "slot",
    "distill.resample_every_steps": 0,
  }
  old = {"mode": "distill", "distill.method": "kd", "distill.teacher_proj": "trainable"}
  assert "distill.projection" in resume.check_resume_config(old, new, "ckpt")  # allowed, reported
  finetune_new = dict(new, mode="finetune")
  resume.check_resume_config(dict(old, mode="finetune"), finetune_new, "ckpt")
  with pytest.raises(ConfigError, match=r"distill.projection='<absent>'.*predates that field"):
    resume.check_resume_config(
      dict(old, **{"distill.method": "rail_l"}), dict(new, **{"distill.method": "rail_l"}), "ckpt"
    )


# ------------------------------------------------------- disk full / I/O errors on save


class _NoSpace:
  """A commit future whose write fails as a full disk does (raised in orbax's background thread)."""

  def result(self, timeout=None):
    raise OSError(28, "No space left on device")


@pytest.fixture
def disk_full(monkeypatch):
  """While `state['full']`, every checkpoint's array write fails with ENOSPC."""
  import orbax.checkpoint as ocp

  state = {"full": True}
  original = ocp.StandardCheckpointHandler.async_save

  async def async_save(self, *args, **kwargs):
    futures = await original(self, *args, **kwargs)
    return [*(futures or []), _NoSpace()] if state["full"] else futures

  monkeypatch.setattr(ocp.StandardCheckpointHandler, "async_save", async_save)
  return state


@pytest.mark.parametrize("async_save", [True, False])
def test_keep_training_when_a_save_fails(disk_full, tmp_path, caplog, async_save):
  ck = ckpt_lib.Checkpointer(str(tmp_path), keep=2, async_save=async_save)
  disk_full["full"] = False
  assert ck.save(1, _fake_state(1), {}) and ck.wait()
  disk_full["full"] = True
  with caplog.at_level("WARNING"):
    started = ck.save(2, _fake_state(2), {})  # a synchronous save fails here,
    assert not (started and ck.wait())  # an asynchronous one when it is waited for
  assert "checkpoint at step 2 could not be written (OSError: [Errno 28] No space left on device)" in caplog.text
  assert "the newest complete checkpoint (step 1) is intact" in caplog.text
  assert ck.steps() == [1] and ck.failed_steps == [2]
  assert sorted(os.listdir(ck.directory)) == ["1"]  # the partial folder is gone
  disk_full["full"] = False  # space returns
  assert ck.save(3, _fake_state(3), {}) and ck.close()
  ck = ckpt_lib.Checkpointer(str(tmp_path), keep=2)
  assert ck.steps() == [1, 3]
  meta = ck.read_meta(1)
  np.testing.assert_array_equal(ck.read_state(1, _fake_state(0), meta)["params"]["student"]["w"], 1.0)
  ck.close()


def test_disk_full_mid_run_then_space_returns_equals_uninterrupted(stopped_on_8, tmp_path, disk_full, caplog):
  """Resumed at K, the disk is full from then on (the saves at 15 and 20 fail): training goes on
  to the same params; run again once space returns, it restores K and ends bitwise equal."""
  wd = str(tmp_path / "run")
  shutil.copytree(stopped_on_8["snapshot"], wd)
  with caplog.at_level("WARNING"):
    trainer = train.Trainer.create(distill_config(num_devices=8), wd)
    assert trainer.step == K
    trainer.fit()
  _assert_trees_close(_params(trainer), stopped_on_8["ref_params"], 0)
  for step in (15, TOTAL):
    assert f"checkpoint at step {step} could not be written" in caplog.text
  assert trainer.ckpt.failed_steps == [15, TOTAL]
  assert sorted(os.listdir(os.path.join(wd, "checkpoints"))) == ["10", "5"]  # nothing half-written
  disk_full["full"] = False
  again = train.Trainer.create(distill_config(num_devices=8), wd)
  assert again.step == K
  again.fit()
  _assert_trees_close(_params(again), stopped_on_8["ref_params"], 0)  # bitwise
  assert _train_records(wd) == _train_records(stopped_on_8["ref_wd"])
  assert again.ckpt.latest_step() == TOTAL


def test_metrics_write_that_fails_stops_with_one_sentence(tmp_path, monkeypatch):
  from rail_kd_jax.outputs import writers
  from rail_kd_jax.core.errors import StorageError

  writer = writers.MetricsWriter(str(tmp_path), tensorboard=False)
  writer.write(1, "train", {"loss": 1.0})

  def full(*args, **kwargs):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr("builtins.open", full)
  with pytest.raises(StorageError, match=r"could not append to '.*metrics.jsonl' at step 2 \(OSError: \[Errno 28\]"):
    writer.write(2, "train", {"loss": 0.5})
  monkeypatch.undo()
  assert writers.read_metrics(str(tmp_path)) == [{"step": 1, "split": "train", "loss": 1.0}]
