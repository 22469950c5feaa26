"""Multi-host: two local processes joined by jax.distributed (loopback, CPU, gloo) == one process.

Each process owns one CPU device and reads its own half of every global batch;
the reference is one process with two (fake) CPU devices. Same losses, same
eval, same exported weights. And the two-process run, checkpointing as it goes,
killed -9 on one host and started again on both, ends bitwise equal to the
uninterrupted two-process run.
"""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL, EVERY = 20, 5
COMMON = [
  "--config=configs/tiny.py",
  "--config.mode=distill",
  "--config.distill.method=rail_l",
  "--config.distill.resample_every=step",
  f"--config.train.num_steps={TOTAL}",
  "--config.train.log_every=1",
  "--config.train.plots=False",
  "--config.data.bucket=False",
]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int, cache: str = "") -> dict:
  env = dict(os.environ)
  # JAX's CPU collectives across processes are gloo (the default in current JAX; set for older ones).
  env.update(
    JAX_PLATFORMS="cpu",
    JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
    HF_HUB_OFFLINE="1",
    XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
    PYTHONPATH=REPO + os.pathsep + env.get("PYTHONPATH", ""),
  )
  if cache:  # the runs compile the same programs: later ones start sooner (no result changes)
    env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  return env


def _launch_two(workdir: str, cache: str) -> list[subprocess.Popen]:
  """Both processes of one run (each its own host in a pod), checkpointing every EVERY steps."""
  port = _free_port()
  procs = []
  for pid in range(2):
    cmd = [
      sys.executable,
      "-m",
      "rail_kd_jax.main",
      *COMMON,
      f"--workdir={workdir}",
      f"--config.checkpoint.every={EVERY}",
      "--config.distributed.enabled=True",
      f"--config.distributed.coordinator=127.0.0.1:{port}",
      "--config.distributed.num_processes=2",
      f"--config.distributed.process_id={pid}",
    ]
    log = open(f"{workdir}.p{pid}.log", "w")
    procs.append(subprocess.Popen(cmd, cwd=REPO, env=_env(1, cache), stdout=log, stderr=subprocess.STDOUT))
    log.close()
  return procs


def _finish(procs, workdir, timeout=300) -> list[str]:
  outs = []
  for pid, p in enumerate(procs):
    p.wait(timeout=timeout)
    with open(f"{workdir}.p{pid}.log") as f:
      outs.append(f.read())
    assert p.returncode == 0, outs[-1][-3000:]
  return outs


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
  """The uninterrupted two-process run (checkpointing), and the compilation cache it filled."""
  root = tmp_path_factory.mktemp("multihost")
  cache, wd = str(root / "jax_cache"), str(root / "uninterrupted")
  outs = _finish(_launch_two(wd, cache), wd)
  return {"workdir": wd, "cache": cache, "outs": outs}


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _weights(workdir):
  from safetensors.numpy import load_file

  return load_file(os.path.join(workdir, "export", "student", "model.safetensors"))


@pytest.mark.slow
def test_two_processes_equal_one(two_process_run, tmp_path):
  multi, outs = two_process_run["workdir"], two_process_run["outs"]
  single = str(tmp_path / "single")
  ref = subprocess.run(
    [sys.executable, "-m", "rail_kd_jax.main", *COMMON, f"--workdir={single}"],
    cwd=REPO,
    env=_env(2),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert ref.returncode == 0, ref.stderr[-3000:]
  assert "process 1 of 2" in outs[1] or "2 process(es)" in outs[0] + outs[1]

  got, want = _records(multi), _records(single)
  train = lambda recs: [(r["step"], r["loss"], r["mapping"]) for r in recs if r["split"] == "train"]
  assert len(train(got)) == TOTAL
  for (s1, l1, m1), (s2, l2, m2) in zip(train(got), train(want)):
    assert s1 == s2 and m1 == m2
    np.testing.assert_allclose(l1, l2, rtol=0, atol=1e-6)
  dev = lambda recs: [r for r in recs if r["split"] == "dev"][-1]
  np.testing.assert_allclose(dev(got)["loss"], dev(want)["loss"], rtol=0, atol=1e-6)
  w_got, w_want = _weights(multi), _weights(single)
  assert w_got.keys() == w_want.keys()
  for k in w_got:
    np.testing.assert_allclose(w_got[k], w_want[k], rtol=0, atol=1e-6, err_msg=k)


def _logged_steps(workdir) -> int:
  try:
    with open(os.path.join(workdir, "metrics.jsonl"), "rb") as f:
      return sum(b'"train"' in line and line.endswith(b"}") for line in f.read().splitlines())
  except FileNotFoundError:
    return 0


def _committed(workdir) -> list[int]:
  d = os.path.join(workdir, "checkpoints")
  names = os.listdir(d) if os.path.isdir(d) else []
  return sorted(int(n) for n in names if n.isdigit() and os.path.exists(os.path.join(d, n, "commit_success.txt")))


@pytest.mark.slow
def test_kill_9_one_host_then_rerun_both_equals_uninterrupted(two_process_run, tmp_path):
  """A pod preempted: one host is killed -9 after a committed checkpoint, the other falls
  with it (its next collective fails; a scheduler stops it); both start again with the same
  command, resume from the newest complete checkpoint and end bitwise equal."""
  ref = two_process_run["workdir"]
  wd = str(tmp_path / "killed")
  victim = random.Random().randrange(2)
  kill_at = random.Random().randint(EVERY + 1, TOTAL - 3)
  procs = _launch_two(wd, two_process_run["cache"])
  try:
    deadline = time.time() + 300
    while not (_logged_steps(wd) >= kill_at and _committed(wd)):
      assert time.time() < deadline, "timed out waiting for the run"
      assert all(p.poll() is None for p in procs), "a process ended before it was killed"
      time.sleep(0.005)
    procs[victim].send_signal(signal.SIGKILL)
    procs[victim].wait(timeout=30)
    survivor = procs[1 - victim]
    try:  # its next collective fails; jax.distributed ends it after a heartbeat timeout
      survivor.wait(timeout=5)
    except subprocess.TimeoutExpired:
      survivor.send_signal(signal.SIGKILL)  # as a pod scheduler does
      survivor.wait(timeout=30)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  killed_at = _logged_steps(wd)
  assert killed_at < TOTAL, "the run finished before it was killed"
  resumed_from = _committed(wd)[-1]

  outs = _finish(_launch_two(wd, two_process_run["cache"]), wd)
  for out in outs:
    assert f"resumed from {os.path.join(wd, 'checkpoints', str(resumed_from))}: step {resumed_from}" in out, out[-3000:]
    assert "do not break resume" not in out  # a new coordinator port and the host's own index are not changes
  assert "ended without releasing its lock (killed?); taking it over" in outs[victim]

  from rail_kd_jax.outputs import writers

  assert writers.without_wall_clock(_records(wd)) == writers.without_wall_clock(_records(ref))
  got, want = _weights(wd), _weights(ref)
  assert got.keys() == want.keys()
  for k in got:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)  # bitwise
  for name in os.listdir(os.path.join(ref, "predictions")):
    with open(os.path.join(wd, "predictions", name)) as f, open(os.path.join(ref, "predictions", name)) as g:
      assert f.read() == g.read(), name
  print(f"killed host {victim} at step ~{killed_at} (asked {kill_at}), resumed from {resumed_from}")
