"""A disk that fills during an export: StorageError, the previous export intact, nothing partial.

(The teacher cache's full-disk cases are in tests/test_teacher_cache.py.)
"""

import errno
import os
import stat

import jax
import numpy as np
import pytest
import safetensors.numpy
from safetensors import SafetensorError

from rail_kd_jax.training import builders, exports
from rail_kd_jax.core.errors import StorageError

import helpers


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  config = helpers.tiny_config(**{"train.export": False, "train.plots": False, "num_devices": 1})
  return builders.build_run(config, str(tmp_path_factory.mktemp("run")), 1)


def _files(folder):
  return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def _weights_fail(monkeypatch, run):
  """safetensors writes half the file, then fails as it does on a full disk."""

  def save_file(tensors, filename, metadata=None):
    with open(filename, "wb") as f:
      f.write(b"\0" * 1000)
    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

  monkeypatch.setattr(safetensors.numpy, "save_file", save_file)
  return "No space left on device (ENOSPC) writing model.safetensors"


def _tokenizer_fail(monkeypatch, run):
  """config.json and the weights are written, the tokenizer's files are not."""

  def save_pretrained(out_dir, *args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", os.path.join(out_dir, "tokenizer.json"))

  monkeypatch.setattr(run.tokenizer, "save_pretrained", save_pretrained)
  return "No space left on device (ENOSPC) writing tokenizer.json"


@pytest.mark.parametrize("fail", [_weights_fail, _tokenizer_fail], ids=["weights", "tokenizer"])
def test_disk_full_during_export_keeps_the_previous_export(run, tmp_path, monkeypatch, fail):
  out = str(tmp_path / "export" / run.export_name)
  exports.export(run, run.student_params, out)
  before = _files(out)
  assert {"config.json", "model.safetensors"} <= set(before)
  newer = jax.tree.map(lambda x: np.asarray(x) + 1, run.student_params)
  cause = fail(monkeypatch, run)
  with pytest.raises(StorageError) as info:
    exports.export(run, newer, out)
  assert str(info.value) == (
    f"the export to '{out}' could not be written ({cause}); the partial folder was removed and a previous "
    "export there, if any, is unchanged, so free space there and rerun"
  )
  assert _files(out) == before  # byte for byte
  assert os.listdir(tmp_path / "export") == [run.export_name]  # no tmp folder left
  monkeypatch.undo()  # space returns: the new export replaces the old one whole
  exports.export(run, newer, out)
  after = _files(out)
  assert set(after) == set(before) and after["model.safetensors"] != before["model.safetensors"]
  assert os.listdir(tmp_path / "export") == [run.export_name]


def test_an_error_that_is_not_storage_passes_through(run, tmp_path, monkeypatch):
  def save_pretrained(*args, **kwargs):
    raise ValueError("not a storage error")

  monkeypatch.setattr(exports.models, "save_pretrained", save_pretrained)
  with pytest.raises(ValueError, match="not a storage error"):
    exports.export(run, run.student_params, str(tmp_path / "export" / "m"))
  assert os.listdir(tmp_path / "export") == []


def test_atomic_outputs_get_the_umask_permissions_not_tempfiles(tmp_path):
  """An output renamed into place from a temporary sibling is readable as a plain `open` makes it."""
  from rail_kd_jax.core import files

  old = os.umask(0o022)
  try:
    fd, path = files.mkstemp(dir=str(tmp_path), suffix=".tmp")
    os.close(fd)
    folder = files.mkdtemp(dir=str(tmp_path), prefix=".tmp-")
  finally:
    os.umask(old)
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
  assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755
