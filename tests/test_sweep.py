"""launch/sweep: commands for methods x seeds, and the results table (mean +/- std over seeds)."""

import csv
import json
import os
import subprocess
import sys

import pytest

from rail_kd_jax.experiments import sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fake_run(root, method, seed, dev_acc, test_acc, finished=True, mode="distill"):
  """A run folder as the Trainer leaves it: config.json + metrics.jsonl (two evals)."""
  wd = os.path.join(root, method, f"seed_{seed}")
  os.makedirs(wd)
  with open(os.path.join(wd, "config.json"), "w") as f:
    json.dump(
      {"mode": mode, "seed": seed, "distill": {"method": method}, "data": {"task": "sst2", "main_metric": ""}}, f
    )
  with open(os.path.join(wd, "metrics.jsonl"), "w") as f:
    f.write(json.dumps({"step": 10, "split": "train", "loss": 0.5}) + "\n")
    # Epoch 1 is the best on validation; epoch 2 is the final one.
    f.write(json.dumps({"step": 10, "split": "validation", "accuracy": dev_acc + 0.01, "loss": 0.3}) + "\n")
    f.write(json.dumps({"step": 10, "split": "hans", "accuracy": test_acc - 0.1}) + "\n")
    f.write(json.dumps({"step": 20, "split": "validation", "accuracy": dev_acc, "loss": 0.35}) + "\n")
    f.write(json.dumps({"step": 20, "split": "hans", "accuracy": test_acc}) + "\n")
    if finished:
      f.write(json.dumps({"step": 20, "split": "summary", "train_seconds": 100.0 + seed, "steps": 20}) + "\n")
  return wd


@pytest.fixture
def sweep_root(tmp_path):
  root = str(tmp_path / "sweep")
  for seed, (d, t) in enumerate([(0.90, 0.60), (0.92, 0.62), (0.94, 0.64)]):
    _fake_run(root, "rail_l", seed, d, t)
  for seed, (d, t) in enumerate([(0.88, 0.55), (0.88, 0.57)]):
    _fake_run(root, "kd", seed, d, t, finished=seed == 0)
  return root


def test_collect_mean_std_final(sweep_root):
  columns, rows = sweep.collect(sweep_root)
  assert columns == ["validation/accuracy", "hans/accuracy"]  # eval loss left out by default
  by = {r["group"]: r for r in rows}
  assert set(by) == {"rail_l", "kd"}
  rail = by["rail_l"]
  assert rail["n"] == 3 and rail["seeds"] == [0, 1, 2] and rail["method"] == "rail_l"
  assert rail["validation/accuracy"][0] == pytest.approx(0.92)
  assert rail["validation/accuracy"][1] == pytest.approx(0.02)  # sample std (ddof=1)
  assert rail["hans/accuracy"][0] == pytest.approx(0.62)
  assert rail["train_seconds"] == pytest.approx((101.0, 1.0))
  assert by["kd"]["unfinished"] == 1 and by["kd"]["validation/accuracy"][1] == pytest.approx(0.0)


def test_collect_best_selects_on_first_eval_split(sweep_root):
  _, rows = sweep.collect(sweep_root, select="best")
  rail = {r["group"]: r for r in rows}["rail_l"]
  assert rail["validation/accuracy"][0] == pytest.approx(0.93)
  assert rail["hans/accuracy"][0] == pytest.approx(0.52)  # the other splits at that same step


def test_markdown_and_csv_files(sweep_root):
  assert sweep.main(["collect", f"--root={sweep_root}"]) == 0
  md = open(os.path.join(sweep_root, "results.md")).read()
  assert "| rail_l | rail_l | 3 | 92.00 ± 2.00 | 62.00 ± 2.00 | 101 ± 1 |" in md
  assert "2 (1 unfinished)" in md
  with open(os.path.join(sweep_root, "results.csv")) as f:
    rows = {r["group"]: r for r in csv.DictReader(f)}
  assert float(rows["rail_l"]["validation/accuracy_mean"]) == pytest.approx(0.92)
  assert float(rows["rail_l"]["hans/accuracy_std"]) == pytest.approx(0.02)
  assert rows["rail_l"]["seeds"] == "0 1 2"


def test_collect_with_no_runs_is_an_error(tmp_path):
  with pytest.raises(SystemExit, match="no runs"):
    sweep.main(["collect", f"--root={tmp_path}"])


def test_build_commands_methods_times_seeds(tmp_path):
  root = str(tmp_path)
  cmds = sweep.build_commands(
    "configs/glue.py:sst2,{method},bert",
    ["kd", "rail_l"],
    [0, 1],
    root,
    extra=["--config.teacher.path=/t"],
    python="py",
  )
  assert [wd for wd, _ in cmds] == [os.path.join(root, m, f"seed_{s}") for m in ("kd", "rail_l") for s in (0, 1)]
  wd, argv = cmds[3]
  assert argv == [
    "py",
    "-m",
    "rail_kd_jax.main",
    "--config=configs/glue.py:sst2,rail_l,bert",
    f"--workdir={wd}",
    "--config.seed=1",
    "--config.teacher.path=/t",
  ]
  # Without the placeholder the method becomes an override; a launcher prefixes the command.
  _, argv = sweep.build_commands("configs/tiny.py", ["ckd"], [3], root, python="py", launcher="srun -N1")[0]
  assert argv[:2] == ["srun", "-N1"] and "--config.distill.method=ckd" in argv and "--config.seed=3" in argv


def test_run_skips_finished_and_dry_run_prints(sweep_root, capsys):
  cmds = [(os.path.join(sweep_root, "rail_l", "seed_0"), ["false"])]
  assert sweep.run_sweep(cmds) == 0  # finished: not run again
  assert "done already" in capsys.readouterr().out
  assert sweep.run_sweep([(os.path.join(sweep_root, "new"), ["echo", "hi"])], dry_run=True) == 0
  assert capsys.readouterr().out.strip() == "echo hi"
  assert sweep.run_sweep([(os.path.join(sweep_root, "new"), [sys.executable, "-c", "raise SystemExit(3)"])]) == 1


def test_glue_commands_parse_and_shell_wrapper(tmp_path):
  """Every command of a GLUE sweep names a valid configs/glue.py arg; launch/sweep runs the module."""
  import importlib.util

  spec = importlib.util.spec_from_file_location("glue_cfg", os.path.join(REPO, "configs", "glue.py"))
  glue = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(glue)
  for _, argv in sweep.build_commands(
    "configs/glue.py:mnli,{method},roberta",
    ["none", "kd", "pkd", "alp_kd", "ckd", "rail_l", "rail_c"],
    [0],
    str(tmp_path),
  ):
    arg = argv[3].split(":", 1)[1]
    assert glue.get_config(arg).mode == "distill"
  proc = subprocess.run(
    [
      "bash",
      os.path.join(REPO, "launch", "sweep"),
      "run",
      "--root",
      str(tmp_path),
      "--config=configs/glue.py:sst2,{method}",
      "--methods=kd,rail_l",
      "--seeds=0,1",
      "--dry_run",
      "--",
      "--config.teacher.path=/t",
    ],
    capture_output=True,
    text=True,
    cwd=REPO,
    env=dict(os.environ, PYTHON=sys.executable),
  )
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.strip().splitlines()
  assert len(lines) == 4 and all("--config.teacher.path=/t" in ln for ln in lines)
  bad = subprocess.run(
    [
      "bash",
      os.path.join(REPO, "launch", "sweep"),
      "run",
      "--root",
      str(tmp_path),
      "--config=configs/tiny.py",
      "--methods=banana",
    ],
    capture_output=True,
    text=True,
    cwd=REPO,
    env=dict(os.environ, PYTHON=sys.executable),
  )
  assert bad.returncode != 0 and "banana" in bad.stderr
