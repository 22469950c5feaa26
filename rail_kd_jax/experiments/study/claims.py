"""The study's statistics: the claims with per-example statistics and Holm, the seed-level differences.

A claim is "RAIL-KD variant r beats baseline b on split x" for r in `study.claims_for`, b in
`study.claim_baselines` and x in test / ood. Its statistic is `stats.clustered_bootstrap`
over the reported seeds and the split's examples together (examples resampled in clusters
where the task has them: movies for Rotten Tomatoes), with the paired t over seeds beside it.
The bootstrap p-values of all claims of a study form one family, Holm-corrected
(`stats.holm`). Verdict at level 0.05 after correction: "holds" (r better), "does not hold"
(b better), "not separated".

The seed-level differences (`differences`): every method minus each of `REFERENCES` over the
reported seeds (`stats.paired_difference` with `study.interval`), kept for reading.
"""

from __future__ import annotations

import numpy as np

from rail_kd_jax.outputs import stats

REFERENCES = ("kd", "rail_l")  # the paired (seed-level) differences are taken against these
ALPHA = 0.05


def _scores(per_seed: dict, m: str, seeds: list[int], split: str) -> np.ndarray | None:
  """float [S, E]: 1 where the run of (m, seed) got example e of `split` right."""
  rows = []
  for x in seeds:
    f = per_seed[m][x]
    if split not in f.get("predictions", {}):
      return None
    rows.append((f["predictions"][split] == f["labels"][split]).astype(np.float64))
  return np.stack(rows)


def _verdict(p_holm: float, mean: float) -> str:
  if p_holm < ALPHA:
    return "holds" if mean > 0 else "does not hold"
  return "not separated"


def claims(config, per_seed: dict, clusters: dict) -> list[dict]:
  """Every claim of the family (module doc) with its bootstrap, paired t, Holm p and verdict."""
  s = config.study
  seeds = [int(x) for x in s.seeds]
  out = []
  for r in s.claims_for:
    for b in s.claim_baselines:
      if b not in per_seed or r not in per_seed or b == r:
        continue
      for split in ("test", "ood"):
        a, z = _scores(per_seed, r, seeds, split), _scores(per_seed, b, seeds, split)
        if a is None or z is None:
          continue
        boot = stats.clustered_bootstrap(
          a, z, clusters.get(split), resamples=int(s.bootstrap_resamples), seed=int(s.bootstrap_seed)
        )
        t = stats.paired_difference(a.mean(axis=1), z.mean(axis=1), method="t")
        out.append(
          {
            "claim": f"{r} beats {b} ({split})",
            "rail": r,
            "baseline": b,
            "split": split,
            "bootstrap": {k: v for k, v in boot.items() if k != "per_seed"},
            "t": {k: t[k] for k in ("mean", "low", "high", "p_value", "wins", "losses", "n")},
          }
        )
  adjusted = stats.holm([c["bootstrap"]["p_value"] for c in out]) if out else []
  for c, p in zip(out, adjusted):
    c["p_holm"] = p
    c["verdict"] = _verdict(p, c["bootstrap"]["mean"])
  return out


def differences(config, per_seed: dict, methods: list[str]) -> dict:
  """{'<m>-<ref>/<field>': paired difference over the reported seeds} for every method m and
  reference ref in `REFERENCES` that ran, for test, ood and train_seconds where every seed has them."""
  s = config.study
  seeds = [int(x) for x in s.seeds]
  diffs = {}
  for ref in REFERENCES:
    if ref not in methods:
      continue
    for m in methods:
      if m == ref:
        continue
      for field in ("test", "ood", "train_seconds"):
        a = [per_seed[m][x].get(field) for x in seeds]
        b = [per_seed[ref][x].get(field) for x in seeds]
        if all(v is not None for v in a + b):
          diffs[f"{m}-{ref}/{field}"] = stats.paired_difference(a, b, method=s.interval)
  return diffs
