"""Multi-host: two local processes joined by jax.distributed (loopback, CPU, gloo) == one process.

Each process owns one CPU device and reads its own half of every global batch;
the reference is one process with two (fake) CPU devices. Same losses, same
eval, same exported weights.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = [
  "--config=configs/tiny.py",
  "--config.mode=distill",
  "--config.distill.method=rail_l",
  "--config.distill.resample_every=step",
  "--config.train.num_steps=6",
  "--config.train.log_every=1",
  "--config.train.plots=False",
  "--config.checkpoint.enabled=False",
  "--config.data.bucket=False",
]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  env = dict(os.environ)
  # JAX's CPU collectives across processes are gloo (the default in current JAX; set for older ones).
  env.update(
    JAX_PLATFORMS="cpu",
    JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
    HF_HUB_OFFLINE="1",
    XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
    PYTHONPATH=REPO + os.pathsep + env.get("PYTHONPATH", ""),
  )
  return env


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _weights(workdir):
  from safetensors.numpy import load_file

  return load_file(os.path.join(workdir, "export", "student", "model.safetensors"))


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
  port = _free_port()
  multi = str(tmp_path / "multi")
  procs = []
  for pid in range(2):
    cmd = [
      sys.executable,
      "-m",
      "rail_kd_jax.main",
      *COMMON,
      f"--workdir={multi}",
      "--config.distributed.enabled=True",
      f"--config.distributed.coordinator=127.0.0.1:{port}",
      "--config.distributed.num_processes=2",
      f"--config.distributed.process_id={pid}",
    ]
    procs.append(
      subprocess.Popen(cmd, cwd=REPO, env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    )
  single = str(tmp_path / "single")
  ref = subprocess.run(
    [sys.executable, "-m", "rail_kd_jax.main", *COMMON, f"--workdir={single}"],
    cwd=REPO,
    env=_env(2),
    capture_output=True,
    text=True,
    timeout=300,
  )
  outs = [p.communicate(timeout=300)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  assert ref.returncode == 0, ref.stderr[-3000:]
  assert "process 1 of 2" in outs[1] or "2 process(es)" in outs[0] + outs[1]

  got, want = _records(multi), _records(single)
  train = lambda recs: [(r["step"], r["loss"], r["mapping"]) for r in recs if r["split"] == "train"]
  assert len(train(got)) == 6
  for (s1, l1, m1), (s2, l2, m2) in zip(train(got), train(want)):
    assert s1 == s2 and m1 == m2
    np.testing.assert_allclose(l1, l2, rtol=0, atol=1e-6)
  dev = lambda recs: [r for r in recs if r["split"] == "dev"][-1]
  np.testing.assert_allclose(dev(got)["loss"], dev(want)["loss"], rtol=0, atol=1e-6)
  w_got, w_want = _weights(multi), _weights(single)
  assert w_got.keys() == w_want.keys()
  for k in w_got:
    np.testing.assert_allclose(w_got[k], w_want[k], rtol=0, atol=1e-6, err_msg=k)
