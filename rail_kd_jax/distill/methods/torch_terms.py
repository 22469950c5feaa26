"""The shared terms of the methods' PyTorch losses (the peer's side of `base`).

torch is optional: only the rows' `torch_*` functions (inside themselves) and the PyTorch
peer import this module. Shapes follow `base.MethodInputs`: hidden states `[L+1, B, T, H]`
with the embedding output at index 0.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class TorchInputs(NamedTuple):
  """What a method's `torch_loss` may read (float32; None where the step has no such thing)."""

  student_logits: torch.Tensor  # [B, C]
  labels: torch.Tensor  # long [B]
  example_mask: torch.Tensor  # [B]
  token_mask: torch.Tensor  # [B, T]
  teacher_logits: torch.Tensor | None = None  # [B, C]
  student_hidden: torch.Tensor | None = None  # [M+1, B, T, Hs]
  teacher_hidden: torch.Tensor | None = None  # [N+1, B, T, Ht]
  mapping: torch.Tensor | None = None  # long [K], teacher layers 1..N


def linear_stack(num: int, din: int, dout: int, bias: bool = True) -> nn.ModuleList:
  return nn.ModuleList([nn.Linear(din, dout, bias=bias) for _ in range(num)])


def init_normal(*modules: nn.Module) -> None:
  """Every Linear in `modules`: weight N(0, 0.02^2), zero bias (the JAX heads' 'random')."""
  for module in modules:
    for mod in module.modules():
      if isinstance(mod, nn.Linear):
        nn.init.normal_(mod.weight, std=0.02)
        if mod.bias is not None:
          nn.init.zeros_(mod.bias)


def normalize(x: torch.Tensor) -> torch.Tensor:
  return x * torch.rsqrt(torch.clamp((x * x).sum(-1, keepdim=True), min=1e-12))


def distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
  if kind == "sq_l2":
    return (normalize(a) - normalize(b)).pow(2).sum(-1)
  if kind == "cosine":
    return 1.0 - (normalize(a) * normalize(b)).sum(-1)
  if kind == "mse":
    return (a - b).pow(2).mean(-1)
  raise ValueError(f"distance={kind!r} (the PyTorch peer runs on one device: no infonce)")


def center(x: torch.Tensor, example_mask: torch.Tensor) -> torch.Tensor:
  """x [K, B, D] minus its (detached) mean over the real examples."""
  keep = (example_mask > 0).to(x.dtype)[None, :, None]
  mean = (x * keep).sum(1, keepdim=True) / torch.clamp(keep.sum(1, keepdim=True), min=1.0)
  return x - mean.detach()


def pool(hidden: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
  """hidden [L+1, B, T, H], mask [B, T] -> [L+1, B, H]."""
  if kind == "cls":
    return hidden[:, :, 0]
  m = mask.to(hidden.dtype)[None, :, :, None]
  return (hidden * m).sum(2) / torch.clamp(m.sum(2), min=1.0)


def masked_mean(x: torch.Tensor, example_mask: torch.Tensor) -> torch.Tensor:
  keep = (example_mask > 0).to(x.dtype)
  return (x * keep).sum() / torch.clamp(keep.sum(), min=1.0)


def ce(x: TorchInputs) -> torch.Tensor:
  """Cross-entropy with the labels, averaged over the real examples."""
  return masked_mean(F.cross_entropy(x.student_logits, x.labels, reduction="none"), x.example_mask)


def kd(x: TorchInputs, temperature: float) -> torch.Tensor:
  """T^2 KL(softmax(z_T/T) || softmax(z_S/T)), averaged over the real examples."""
  log_pt = F.log_softmax(x.teacher_logits / temperature, -1)
  kl = (log_pt.exp() * (log_pt - F.log_softmax(x.student_logits / temperature, -1))).sum(-1)
  return masked_mean(temperature**2 * kl, x.example_mask)


def weighted_total(dcfg, ce_term, kd_term, inter) -> torch.Tensor:
  return dcfg.ce_weight * ce_term + dcfg.kd_weight * kd_term + dcfg.int_weight * inter


def project_stack(stack: nn.ModuleList, x: torch.Tensor, index=None) -> torch.Tensor:
  """x [K, B, D] through the maps of `stack` (map index[k] for pair k; default k)."""
  index = range(len(x)) if index is None else index
  return torch.stack([stack[i](v) for i, v in zip(index, x)])


def uniform_mapping(generator, num_teacher_layers: int, num_student_layers: int) -> torch.Tensor:
  """M distinct teacher layers of 1..N, ascending, drawn uniformly (as `layer_sampling`)."""
  perm = torch.randperm(num_teacher_layers, generator=generator)
  return torch.sort(perm[:num_student_layers]).values + 1
