"""Through the command line: kill -9 at a random step and run again == never stopped (and
a second run on the busy workdir is refused meanwhile); SIGTERM saves a checkpoint at the current step and exits 0."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rail_kd_jax.training import checkpoint as ckpt_lib
from rail_kd_jax.outputs import writers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL, EVERY = 120, 20
# A distillation run whose every random stream matters: the mapping is resampled every
# step, the student has dropout, and evaluation, logging and checkpoints interleave.
ARGS = (
  "--config=configs/tiny.py",
  "--config.mode=distill",
  "--config.distill.method=rail_l",
  "--config.distill.resample_every=step",
  "--config.student.dropout=0.1",
  f"--config.train.num_steps={TOTAL}",
  "--config.train.log_every=1",
  "--config.train.eval_every=30",
  f"--config.checkpoint.every={EVERY}",
  "--config.train.plots=False",
  "--config.data.bucket=False",
)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  # The same programs are compiled by every run: a shared persistent compilation cache
  # makes the later runs start in seconds (and changes no result).
  cache = str(tmp_path_factory.mktemp("jax_cache"))
  return dict(
    os.environ,
    XLA_FLAGS="--xla_force_host_platform_device_count=2",
    HF_HUB_OFFLINE="1",
    JAX_COMPILATION_CACHE_DIR=cache,
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
  )


def _cmd(workdir, *extra):
  return [sys.executable, "-m", "rail_kd_jax.main", f"--workdir={workdir}", *ARGS, *extra]


def _run(workdir, env, *extra):
  proc = subprocess.run(_cmd(workdir, *extra), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _last_logged_step(workdir) -> int:
  try:
    with open(os.path.join(workdir, "metrics.jsonl"), "rb") as f:
      lines = [line for line in f.read().splitlines() if line.endswith(b"}")]
  except FileNotFoundError:
    return 0
  return max((json.loads(line)["step"] for line in lines if b'"train"' in line), default=0)


def _committed_steps(workdir):
  d = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(d):
    return []
  return sorted(
    int(n) for n in os.listdir(d) if n.isdigit() and os.path.exists(os.path.join(d, n, "commit_success.txt"))
  )


def _wait_for(predicate, proc, timeout=300.0):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return
    if proc.poll() is not None:
      raise AssertionError(f"the run ended (rc {proc.returncode}) first: {proc.stderr.read()[-3000:]}")
    time.sleep(0.005)
  raise AssertionError("timed out")


def _final_state(workdir):
  ck = ckpt_lib.Checkpointer(workdir, keep=10)
  step = ck.latest_step()
  import jax

  template = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), ck.manager.item_metadata(step)["state"].tree)
  state = ck.read_state(step, template, ck.read_meta(step))
  ck.close()
  return step, state


def _strip_time(records):
  return writers.without_wall_clock(records)


@pytest.fixture(scope="module")
def reference(env, tmp_path_factory):
  """The uninterrupted run."""
  wd = str(tmp_path_factory.mktemp("uninterrupted"))
  _run(wd, env)
  return wd


@pytest.mark.slow
def test_kill_9_then_rerun_equals_uninterrupted(reference, env, tmp_path):
  wd = str(tmp_path)
  kill_at = random.Random().randint(EVERY + 1, TOTAL - 10)  # any step after the first checkpoint
  proc = subprocess.Popen(_cmd(wd), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    _wait_for(lambda: _last_logged_step(wd) >= kill_at and _committed_steps(wd), proc)
    # A second run on the busy workdir is refused, naming the first (the workdir lock).
    second = subprocess.run(_cmd(wd), cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.poll() is None, "the first run ended while the second was refused"
    assert second.returncode == 2, second.stderr[-3000:]
    assert f"is in use by another run (pid {proc.pid} on " in second.stderr, second.stderr[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
  killed_at = _last_logged_step(wd)
  assert killed_at < TOTAL, "the run finished before it was killed"
  resumed_from = max(_committed_steps(wd))
  proc2 = _run(wd, env)  # the same command again
  assert f"resumed from {os.path.join(wd, 'checkpoints', str(resumed_from))}" in proc2.stderr, proc2.stderr[-3000:]
  assert f"the previous run (pid {proc.pid} on " in proc2.stderr  # the killed run's lock, taken over

  ref_records, records = _records(reference), _records(wd)
  # The whole metrics.jsonl equals the uninterrupted run's (timing aside): nothing logged twice.
  assert _strip_time(records) == _strip_time(ref_records), (kill_at, killed_at, resumed_from)
  ref_step, ref_state = _final_state(reference)
  step, state = _final_state(wd)
  assert step == ref_step == TOTAL
  import jax

  jax.tree.map(np.testing.assert_array_equal, state, ref_state)  # bitwise
  print(f"killed at step ~{killed_at} (asked {kill_at}), resumed from {resumed_from}")


@pytest.mark.slow
def test_sigterm_saves_current_step_and_exits_0(env, reference, tmp_path):
  wd = str(tmp_path)
  proc = subprocess.Popen(_cmd(wd), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    _wait_for(lambda: _last_logged_step(wd) >= 7, proc)
    step_at_signal = _last_logged_step(wd)
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    seconds = time.perf_counter() - t0
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0, stderr[-3000:]
  saved = _committed_steps(wd)
  assert saved and step_at_signal <= saved[-1] <= step_at_signal + 3, (step_at_signal, saved)
  assert saved[-1] == _last_logged_step(wd)
  assert "preempted: stopped at step" in stderr and "run the same command again to resume" in stderr
  assert "Traceback" not in stderr
  # One step is milliseconds here; the bound is the save plus interpreter shutdown.
  assert seconds < 20, seconds
  print(f"SIGTERM at step {step_at_signal}: checkpoint at {saved[-1]}, exit 0 after {seconds:.2f} s")
