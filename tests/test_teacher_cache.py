"""Teacher cache: float32 cache == online teacher bit for bit; reuse; refusal; bfloat16 close;
a truncated, altered or missing file is moved aside and rebuilt; a full disk is a StorageError."""

import dataclasses
import errno
import json
import os
import shutil

import jax
import numpy as np
import pytest

from rail_kd_jax.training import builders
from rail_kd_jax.training import teacher_cache
from rail_kd_jax.training import train
from rail_kd_jax.core import files as files_lib
from rail_kd_jax.training.step import teacher_outputs
from rail_kd_jax.core.errors import ConfigError, StorageError

import helpers

# data.bucket=False: the online teacher then sees the cache's padded length.
_TINY = {
  "mode": "distill",
  "data.bucket": False,
  "train.export": False,
  "train.plots": False,
  "checkpoint.enabled": False,
  "num_devices": 1,
}


def tiny_config(**overrides):
  return helpers.tiny_config(**{**_TINY, **overrides})


def _train(config, workdir, steps=6):
  trainer = train.Trainer.create(config, workdir)
  losses = []
  epoch = 0
  while len(losses) < steps:
    for batch in trainer.train_batches(epoch):
      losses.append(float(trainer.par.unreplicate(trainer.train_on(batch))["loss"]))
      if len(losses) == steps:
        break
    epoch += 1
  return trainer, np.array(losses), trainer.host_params()


@pytest.mark.slow
def test_float32_cache_trains_bit_for_bit_like_the_online_teacher(tmp_path):
  # One device, two accumulated micro-batches, a new mapping every step.
  kw = {
    "distill.method": "rail_l",
    "train.grad_accum_steps": 2,
    "distill.resample_every": "step",
    "data.cache_dir": str(tmp_path / "cache"),
  }
  _, ref_losses, ref_params = _train(tiny_config(**kw), str(tmp_path / "online"))
  trainer, losses, params = _train(
    tiny_config(**kw, **{"distill.cache_teacher": True, "distill.cache_dtype": "float32"}), str(tmp_path / "cached")
  )
  assert trainer.step_spec.cached_teacher and trainer.teacher_params is None
  assert trainer.run.arrays["train"]["teacher_pooled"].dtype == np.float32
  np.testing.assert_array_equal(losses, ref_losses)
  jax.tree.map(np.testing.assert_array_equal, params, ref_params)


def test_cached_values_are_the_online_teacher_outputs(tmp_path):
  """Per training batch (2 devices, data split like training), cache rows == teacher_outputs."""
  config = tiny_config(
    **{
      "distill.method": "pkd",
      "num_devices": 2,
      "distill.cache_teacher": True,
      "distill.cache_dtype": "float32",
      "data.cache_dir": str(tmp_path / "cache"),
    }
  )
  trainer = train.Trainer.create(config, str(tmp_path / "run"))
  spec = dataclasses.replace(trainer.step_spec, cached_teacher=False)
  teacher_params = trainer.run.teacher_params  # None: training never holds the teacher
  assert teacher_params is None
  from rail_kd_jax.training import builders

  online = builders.build_run(tiny_config(**{"distill.method": "pkd", "num_devices": 2}), str(tmp_path / "o"), 2)
  # The cache holds the masked mean and the first token whatever the run's pooling (pkd's: cls).
  mean_dcfg = spec.dcfg.copy_and_resolve_references()
  mean_dcfg.pooling = "mean"
  mean_spec = dataclasses.replace(spec, dcfg=mean_dcfg)
  per_device = jax.jit(lambda p, b: teacher_outputs(mean_spec, p, b))
  batch = next(iter(trainer.train_batches(0)))
  for d in range(2):
    rows = slice(8 * d, 8 * (d + 1))
    out = per_device(
      online.teacher_params, {k: batch[k][rows] for k in ("input_ids", "attention_mask", "token_type_ids")}
    )
    np.testing.assert_array_equal(batch["teacher_logits"][rows], np.asarray(out["logits"]))
    np.testing.assert_array_equal(batch["teacher_pooled"][rows], np.swapaxes(np.asarray(out["pooled"]), 0, 1))
    np.testing.assert_array_equal(batch["teacher_cls"][rows], np.swapaxes(np.asarray(out["cls"]), 0, 1))
  # The cached step hands pkd its own pooling: the first-token rows.
  cached = teacher_outputs(
    trainer.step_spec, None, {k: batch[k] for k in ("teacher_logits", "teacher_pooled", "teacher_cls")}
  )
  np.testing.assert_array_equal(np.asarray(cached["pooled"]), np.swapaxes(batch["teacher_cls"], 0, 1))


def test_cache_is_reused_and_bfloat16_is_close(tmp_path):
  kw = {"distill.method": "rail_c", "data.cache_dir": str(tmp_path / "cache"), "distill.cache_teacher": True}
  first = train.Trainer.create(tiny_config(**kw), str(tmp_path / "a"))
  folders = os.listdir(tmp_path / "cache" / "teacher")
  assert len(folders) == 1
  bf16 = first.run.arrays["train"]["teacher_pooled"]
  assert str(bf16.dtype) == "bfloat16" and isinstance(bf16, np.memmap)  # mapped, not loaded
  # A second run reuses the folder (same key); a float32 cache is a different entry.
  train.Trainer.create(tiny_config(**kw), str(tmp_path / "b"))
  assert os.listdir(tmp_path / "cache" / "teacher") == folders
  f32 = train.Trainer.create(tiny_config(**kw, **{"distill.cache_dtype": "float32"}), str(tmp_path / "c"))
  assert len(os.listdir(tmp_path / "cache" / "teacher")) == 2
  ref = np.asarray(f32.run.arrays["train"]["teacher_pooled"])
  got = np.asarray(bf16).astype(np.float32)
  np.testing.assert_allclose(got, ref, rtol=2**-8, atol=1e-6)


def test_token_level_ckd_is_refused(tmp_path):
  config = tiny_config(**{"distill.method": "ckd", "distill.ckd_granularity": "token", "distill.cache_teacher": True})
  with pytest.raises(ConfigError, match="ckd_granularity='token'"):
    train.Trainer.create(config, str(tmp_path))


# ---------------------------------------------------------------- integrity and full disks

_CACHED = {"distill.method": "pkd", "distill.cache_teacher": True, "distill.cache_dtype": "float32"}


@pytest.fixture(scope="module")
def online(tmp_path_factory):
  """A run that still holds its teacher: what `attach` builds a cache from."""
  return builders.build_run(tiny_config(**{"distill.method": "pkd"}), str(tmp_path_factory.mktemp("online")), 1)


def _attach(online, root):
  config = tiny_config(**_CACHED, **{"data.cache_dir": str(root)})
  out = teacher_cache.attach(config, str(root), online.step_spec, online.teacher_params, online.arrays["train"], 1)
  return {k: np.array(out[k]) for k in teacher_cache.KEYS}  # copies: the files may change under a mapping


@pytest.fixture(scope="module")
def fresh(online, tmp_path_factory):
  """(values, folder) of a cache built from scratch."""
  root = tmp_path_factory.mktemp("fresh")
  values = _attach(online, root)
  (folder,) = os.listdir(root / "teacher")
  return values, root / "teacher" / folder


def _truncate(file):
  os.truncate(file, os.path.getsize(file) - 100)


def _alter(file):
  with open(file, "r+b") as f:
    f.seek(os.path.getsize(file) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0x40]))


@pytest.mark.parametrize(
  "damage, name, message",
  [
    (_truncate, "teacher_pooled.npy", "is {size} bytes, expected {want} (truncated?)"),
    (_alter, "teacher_cls.npy", "has the recorded size but sha256 "),
    (os.remove, "teacher_logits.npy", "is missing"),
  ],
  ids=["truncated", "altered", "missing"],
)
def test_a_damaged_cache_is_moved_aside_and_rebuilt(online, fresh, tmp_path, caplog, damage, name, message):
  values, folder = fresh
  path = tmp_path / "teacher" / folder.name
  shutil.copytree(folder, path)
  file = str(path / name)
  want = os.path.getsize(file)
  damage(file)
  damaged = open(file, "rb").read() if os.path.exists(file) else None
  with caplog.at_level("WARNING"):
    rebuilt = _attach(online, tmp_path)
  size = len(damaged) if damaged is not None else None
  assert f"teacher cache file '{file}' {message.format(size=size, want=want)}" in caplog.text
  assert sorted(os.listdir(tmp_path / "teacher")) == ["corrupt", folder.name]
  (aside,) = os.listdir(tmp_path / "teacher" / "corrupt")
  assert aside.startswith(folder.name + "-")
  aside = tmp_path / "teacher" / "corrupt" / aside
  assert f"; moving the cache aside to '{aside}' and rebuilding it" in caplog.text
  # The damaged bytes are kept, not deleted; the rebuilt cache serves the fresh values exactly.
  kept = aside / name
  assert (open(kept, "rb").read() if kept.exists() else None) == damaged
  for k in teacher_cache.KEYS:
    np.testing.assert_array_equal(rebuilt[k], values[k])
  assert teacher_cache._problem(str(path)) is None
  caplog.clear()
  with caplog.at_level("WARNING"):
    _attach(online, tmp_path)  # reused as it is now: nothing to warn about
  assert "teacher cache" not in caplog.text and len(os.listdir(tmp_path / "teacher" / "corrupt")) == 1


def test_meta_records_sizes_and_sha256(fresh):
  _, folder = fresh
  meta = json.load(open(folder / "meta.json"))
  assert meta["version"] == teacher_cache.CACHE_VERSION == 2
  for k in teacher_cache.KEYS:
    file = str(folder / (k + ".npy"))
    assert meta["files"][k] == {"bytes": os.path.getsize(file), "sha256": files_lib.sha256(file)}


@pytest.mark.parametrize("where", ["allocate", "flush"])
def test_disk_full_while_building_leaves_nothing_and_the_next_run_builds(online, fresh, tmp_path, monkeypatch, where):
  no_space = OSError(errno.ENOSPC, "No space left on device")
  if where == "allocate":  # the second file's blocks cannot be reserved, before the teacher runs
    real, calls = os.posix_fallocate, []

    def fallocate(fd, offset, length):
      calls.append(fd)
      if len(calls) == 2:
        raise no_space
      return real(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", fallocate)
    cause = "No space left on device (ENOSPC) writing teacher_pooled.npy"
  else:  # the teacher's outputs cannot be written back to the files

    def flush(self):
      raise no_space

    monkeypatch.setattr(np.memmap, "flush", flush)
    cause = "No space left on device (ENOSPC)"
  with pytest.raises(StorageError) as info:
    _attach(online, tmp_path)
  path = os.path.join(tmp_path, "teacher", fresh[1].name)
  assert str(info.value) == (
    f"teacher cache '{path}' could not be written ({cause}); the partial files were removed and nothing was "
    "cached, so free space there or set data.cache_dir to another disk and rerun"
  )
  assert os.listdir(tmp_path / "teacher") == []  # no partial folder, nothing a later run would reuse
  monkeypatch.undo()  # space returns
  values = _attach(online, tmp_path)
  for k in teacher_cache.KEYS:
    np.testing.assert_array_equal(values[k], fresh[0][k])
  assert teacher_cache._problem(path) is None
