"""One run per workdir: a held lock refuses a second run; a killed holder's lock is taken over."""

import errno
import fcntl
import os
import signal
import subprocess
import sys
import time

import pytest

from rail_kd_jax.training import workdir_lock
from rail_kd_jax.core.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLD = "import sys, time; from rail_kd_jax.training import workdir_lock\nwith workdir_lock.held(sys.argv[1], 0):\n  print('held', flush=True); time.sleep(600)\n"


def _holder(workdir):
  proc = subprocess.Popen([sys.executable, "-c", HOLD, workdir], cwd=REPO, stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "held"
  return proc


def test_busy_workdir_is_refused_and_a_killed_holders_lock_is_taken_over(tmp_path, caplog):
  wd = str(tmp_path)
  proc = _holder(wd)
  try:
    with pytest.raises(ConfigError, match=rf"is in use by another run \(pid {proc.pid} on .*, started .*\)"):
      with workdir_lock.held(wd, 0):
        pass
    with workdir_lock.held(wd, 1):  # another process index of a multi-process run: its own file
      pass
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
  finally:
    if proc.poll() is None:
      proc.kill()
  with caplog.at_level("WARNING"):
    with workdir_lock.held(wd, 0) as path:
      with workdir_lock.held(wd, 0):  # re-entrant in one process
        pass
      assert f'"pid": {os.getpid()}' in open(path).read()
  assert any(f"the previous run (pid {proc.pid} on " in r.getMessage() for r in caplog.records), caplog.text
  assert open(path).read() == ""  # released: names no one, and the next run says nothing
  caplog.clear()
  with caplog.at_level("WARNING"):
    with workdir_lock.held(wd, 0):
      pass
  assert not caplog.records


def test_without_flock_a_live_pid_on_this_host_still_refuses(tmp_path, monkeypatch):
  wd = str(tmp_path)
  proc = _holder(wd)
  try:

    def no_flock(fd, op):
      raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    with pytest.raises(ConfigError, match=f"pid {proc.pid} on"):
      with workdir_lock.held(wd, 0):
        pass
  finally:
    proc.kill()
    proc.wait(timeout=30)
  time.sleep(0.1)
  with workdir_lock.held(wd, 0):  # the recorded pid is dead: taken over
    pass
