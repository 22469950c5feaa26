"""Helpers shared by the tests (importable because pytest puts tests/ on sys.path)."""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**overrides):
  """configs/tiny.py's config with dotted-key overrides, e.g. **{"distill.method": "kd"}."""
  sys.path.insert(0, os.path.join(REPO, "configs"))
  try:
    import tiny  # pylint: disable=g-import-not-at-top
  finally:
    sys.path.pop(0)
  config = tiny.get_config()
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config
