"""Teacher cache: float32 cache == online teacher bit for bit; reuse; refusal; bfloat16 close."""

import dataclasses
import os

import jax
import numpy as np
import pytest

from rail_kd_jax import train
from rail_kd_jax.step import teacher_outputs
from rail_kd_jax.errors import ConfigError

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
  trainer = train.Trainer(config, workdir)
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
  trainer = train.Trainer(config, str(tmp_path / "run"))
  spec = dataclasses.replace(trainer.step_spec, cached_teacher=False)
  teacher_params = trainer.run.teacher_params  # None: training never holds the teacher
  assert teacher_params is None
  from rail_kd_jax import builders

  online = builders.build_run(tiny_config(**{"distill.method": "pkd", "num_devices": 2}), str(tmp_path / "o"), 2)
  per_device = jax.jit(lambda p, b: teacher_outputs(spec, p, b))
  batch = next(iter(trainer.train_batches(0)))
  for d in range(2):
    rows = slice(8 * d, 8 * (d + 1))
    out = per_device(
      online.teacher_params, {k: batch[k][rows] for k in ("input_ids", "attention_mask", "token_type_ids")}
    )
    np.testing.assert_array_equal(batch["teacher_logits"][rows], np.asarray(out["logits"]))
    np.testing.assert_array_equal(batch["teacher_pooled"][rows], np.swapaxes(np.asarray(out["pooled"]), 0, 1))
    np.testing.assert_array_equal(batch["teacher_cls"][rows], np.swapaxes(np.asarray(out["cls"]), 0, 1))


def test_cache_is_reused_and_bfloat16_is_close(tmp_path):
  kw = {"distill.method": "rail_c", "data.cache_dir": str(tmp_path / "cache"), "distill.cache_teacher": True}
  first = train.Trainer(tiny_config(**kw), str(tmp_path / "a"))
  folders = os.listdir(tmp_path / "cache" / "teacher")
  assert len(folders) == 1
  bf16 = first.run.arrays["train"]["teacher_pooled"]
  assert str(bf16.dtype) == "bfloat16" and isinstance(bf16, np.memmap)  # mapped, not loaded
  # A second run reuses the folder (same key); a float32 cache is a different entry.
  train.Trainer(tiny_config(**kw), str(tmp_path / "b"))
  assert os.listdir(tmp_path / "cache" / "teacher") == folders
  f32 = train.Trainer(tiny_config(**kw, **{"distill.cache_dtype": "float32"}), str(tmp_path / "c"))
  assert len(os.listdir(tmp_path / "cache" / "teacher")) == 2
  ref = np.asarray(f32.run.arrays["train"]["teacher_pooled"])
  got = np.asarray(bf16).astype(np.float32)
  np.testing.assert_allclose(got, ref, rtol=2**-8, atol=1e-6)


def test_token_level_ckd_is_refused(tmp_path):
  config = tiny_config(**{"distill.method": "ckd", "distill.ckd_granularity": "token", "distill.cache_teacher": True})
  with pytest.raises(ConfigError, match="ckd_granularity='token'"):
    train.Trainer(config, str(tmp_path))
