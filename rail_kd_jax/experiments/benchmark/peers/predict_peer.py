"""PyTorch peer of `python -m rail_kd_jax.predict`, and a lines/s and memory comparison of the two.

  python -m rail_kd_jax.experiments.benchmark.peers.predict_peer --model=runs/rail/export/student --lines=200000 \
      --out=/tmp/predict_speed

`torch_predict` applies an export folder as a user would with PyTorch: transformers'
`AutoModelForSequenceClassification.from_pretrained(folder)`, eval mode, eager, under
`torch.inference_mode()`; the export's tokenizer; the input read as `predict` reads it
(`text_input.iter_texts`), `chunk_rows` rows at a time, each chunk's rows sorted by token count into
batches of `batch_size` padded to their longest (dynamic padding); float32, or the forward under
`torch.autocast(bfloat16)` (weights stay float32).

`compare` writes an input of N generated lines and runs `python -m rail_kd_jax.predict` and this
peer, float32 and bfloat16, each in its own process, one after the other: lines/s over the
process's wall time (start-up, loading and compilation included: what a user waits for, so N
should be large), the peer's rate over its loop alone, the process's peak RSS (ru_maxrss), and
the share of rows whose label equals predict float32's.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
import transformers
from absl import app, flags

from rail_kd_jax.data import synthetic, text_input, tokenize
from rail_kd_jax.experiments.benchmark.peers.torch_peer import resolve_device

PRECISIONS = ("float32", "bfloat16")
_WORDS = synthetic.FILLER + synthetic.NOUNS + synthetic.POSITIVE + synthetic.NEGATIVE


def _padded(enc, rows: np.ndarray, pad_id: int, device: str) -> dict[str, torch.Tensor]:
  """The tokenized rows `rows` of `enc` as int64 tensors [B, longest], right-padded."""
  length = max(len(enc["input_ids"][i]) for i in rows)
  out = {}
  for key in ("input_ids", "attention_mask", "token_type_ids"):
    if key in enc:
      arr = np.full((len(rows), length), pad_id if key == "input_ids" else 0, np.int64)
      for r, i in enumerate(rows):
        arr[r, : len(enc[key][i])] = enc[key][i]
      out[key] = torch.from_numpy(arr).to(device)
  return out


def _chunk_labels(model, tokenizer, texts: list[tuple[str, ...]], max_length: int, batch_size: int, precision: str):
  """Class ids [n] (argmax of the logits) of one chunk's texts, run in length-sorted batches."""
  columns = list(zip(*texts))
  enc = tokenizer(
    list(columns[0]), list(columns[1]) if len(columns) > 1 else None, truncation=True, max_length=max_length
  )
  order = np.argsort([len(ids) for ids in enc["input_ids"]], kind="stable")
  device = model.device.type
  labels = np.empty(len(texts), np.int64)
  for start in range(0, len(order), batch_size):
    rows = order[start : start + batch_size]
    batch = _padded(enc, rows, tokenizer.pad_token_id or 0, device)
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
      logits = model(**batch).logits
    labels[rows] = logits.float().argmax(-1).cpu().numpy()
  return labels


def torch_predict(
  folder: str,
  input_path: str,
  *,
  text_columns=("text",),
  max_length: int = 128,
  batch_size: int = 64,
  precision: str = "float32",
  device: str = "auto",
  chunk_rows: int = 4096,
) -> dict:
  """The export in `folder` applied to every text of `input_path` with PyTorch eager (module docstring).

  Returns {'labels': int64 [N] class ids in input order, 'seconds': the loop's wall time (reading,
  tokenizing, running; not loading), 'lines_per_s': N / seconds}.
  """
  if precision not in PRECISIONS:
    raise ValueError(f"precision={precision!r}; choose one of {PRECISIONS}")
  model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True)
  model = model.to(resolve_device(device)).eval()
  tokenizer = tokenize.load_tokenizer(folder)
  rows = text_input.iter_texts(input_path, list(text_columns), what="input")
  labels, t0 = [], time.perf_counter()
  with torch.inference_mode():
    while block := list(itertools.islice(rows, chunk_rows)):
      texts = [t for _, t in block]
      labels.append(_chunk_labels(model, tokenizer, texts, max_length, batch_size, precision))
  seconds = time.perf_counter() - t0
  labels = np.concatenate(labels)
  return {"labels": labels, "seconds": seconds, "lines_per_s": len(labels) / max(seconds, 1e-9)}


def make_input(path: str, lines: int, seed: int = 0) -> str:
  """Writes `lines` generated texts of 4 to 60 words (from `synthetic`'s word lists), one a line."""
  rng = np.random.default_rng(seed)
  with open(path, "w", encoding="utf-8") as f:
    for n in rng.integers(4, 61, size=lines):
      f.write(" ".join(rng.choice(_WORDS, size=n)) + "\n")
  return path


def _timed_child(cmd: list[str], log_path: str) -> tuple[int, float, float]:
  """Runs `cmd` (output to `log_path`): (exit code, wall seconds, peak RSS in MiB)."""
  env = dict(os.environ, HF_HUB_OFFLINE="1")
  with open(log_path, "w") as log:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
  proc.returncode = os.waitstatus_to_exitcode(status)
  return proc.returncode, seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def _predict_labels(path: str) -> np.ndarray:
  """Class ids from a predictions .csv (the index of `label` among its `prob_<class>` columns)."""
  with open(path, encoding="utf-8", newline="") as f:
    reader = csv.DictReader(f)
    names = [c[len("prob_") :] for c in reader.fieldnames if c.startswith("prob_")]
    return np.asarray([names.index(r["label"]) for r in reader], np.int64)


def _run(runner: str, precision: str, model: str, input_path: str, out: str, max_length: int, batch_size: int, device):
  """One timed process: `predict` or the peer in `precision`; its row and its labels."""
  stem = os.path.join(out, f"{runner}-{precision}")
  if runner == "predict":
    flags_ = [f"--model={model}", f"--input={input_path}", f"--output={stem}.csv", f"--dtype={precision}"]
    cmd = [sys.executable, "-m", "rail_kd_jax.predict", *flags_]
  else:
    flags_ = [f"--model={model}", f"--peer_input={input_path}", f"--peer_labels={stem}.npy"]
    cmd = [
      sys.executable,
      "-m",
      "rail_kd_jax.experiments.benchmark.peers.predict_peer",
      *flags_,
      f"--precisions={precision}",
    ]
    cmd.append(f"--device={device}")
  cmd += [f"--max_length={max_length}", f"--batch_size={batch_size}"]
  code, seconds, rss = _timed_child(cmd, f"{stem}.log")
  if code != 0:
    raise RuntimeError(f"{' '.join(cmd)} exited with {code}; see {stem}.log")
  labels = _predict_labels(f"{stem}.csv") if runner == "predict" else np.load(f"{stem}.npy")
  row = {"runner": runner, "precision": precision, "wall_s": round(seconds, 2), "peak_rss_mib": round(rss, 1)}
  if runner == "peer":
    with open(f"{stem}.log") as f:
      row["loop_lines_per_s"] = round(json.loads(f.read().strip().splitlines()[-1])["lines_per_s"], 1)
  return row, labels


def compare(
  model: str,
  lines: int,
  out: str,
  *,
  max_length: int = 128,
  batch_size: int = 64,
  precisions=PRECISIONS,
  device: str = "auto",
) -> list[dict]:
  """Times `predict` and the peer on `lines` generated lines (module docstring): one dict a run
  with runner, precision, lines, wall_s, lines_per_s, peak_rss_mib, agreement (with predict's
  first precision) and, for the peer, loop_lines_per_s."""
  os.makedirs(out, exist_ok=True)
  input_path = make_input(os.path.join(out, "input.txt"), lines)
  rows, reference = [], None
  for runner, precision in itertools.product(("predict", "peer"), precisions):
    row, labels = _run(runner, precision, model, input_path, out, max_length, batch_size, device)
    reference = labels if reference is None else reference
    row.update(lines=lines, lines_per_s=round(lines / row["wall_s"], 1))
    row["agreement"] = round(float(np.mean(labels == reference)), 4)
    rows.append(row)
  with open(os.path.join(out, "predict_speed.json"), "w") as f:
    json.dump(rows, f, indent=2)
  return rows


def table(rows: list[dict]) -> str:
  """The rows of `compare` as a markdown table."""
  keys = ("runner", "precision", "lines", "wall_s", "lines_per_s", "loop_lines_per_s", "peak_rss_mib", "agreement")
  lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
  lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
  return "\n".join(lines)


def _define_flags() -> None:
  flags.DEFINE_string("model", None, "An export folder (<workdir>/export/<name>).")
  flags.DEFINE_integer("lines", 100_000, "Generated input lines.")
  flags.DEFINE_string("out", "/tmp/predict_speed", "Folder for the input, outputs, logs and predict_speed.json.")
  flags.DEFINE_integer("max_length", 128, "Tokens per text, for both.")
  flags.DEFINE_integer("batch_size", 64, "Texts per forward pass, for both.")
  flags.DEFINE_list("precisions", list(PRECISIONS), "float32 and/or bfloat16.")
  flags.DEFINE_string("device", "auto", "The peer's torch device: auto | cpu | cuda.")
  flags.DEFINE_string("peer_input", "", "Internal: run only the peer on this input (the first precision).")
  flags.DEFINE_string("peer_labels", "", "Internal: where the peer saves its labels (.npy).")
  flags.mark_flags_as_required(["model"])


def main(argv):
  del argv
  f = flags.FLAGS
  if f.peer_input:
    kw = dict(max_length=f.max_length, batch_size=f.batch_size, precision=f.precisions[0], device=f.device)
    result = torch_predict(f.model, f.peer_input, **kw)
    np.save(f.peer_labels, result.pop("labels"))
    print(json.dumps(result))
    return
  rows = compare(
    f.model, f.lines, f.out, max_length=f.max_length, batch_size=f.batch_size, precisions=f.precisions, device=f.device
  )
  print(table(rows))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
