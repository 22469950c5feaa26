"""Plain PyTorch peer: the same teacher/student shapes and losses, trained as a user would.

Teacher and student are transformers `*ForSequenceClassification` models built
from the same `EncoderConfig`s as the JAX side (random weights; transformers'
default attention implementation, SDPA). The loss of every method is the
formula of `distill.methods`, written with torch ops; the optimizer is
`torch.optim.AdamW` with the same hyper-parameters, weight-decay groups, global
norm clipping and linear warmup/decay as `optim.make_optimizer`. The teacher
runs in eval mode under `torch.no_grad()`; the student trains with dropout.

What a user would pick instead of this project, three ways: eager float32;
`precision='bfloat16'`, the forward passes and the loss under
`torch.autocast(device, dtype=torch.bfloat16)` (params, gradients and AdamW stay
float32, as autocast is meant to be used); `compile=True`, teacher and student
wrapped by `torch.compile` (inductor; the first step of each new input shape pays
the compilation). `device='cuda'` runs all of it on the GPU.
"""

from __future__ import annotations

import numpy as np
import torch
import transformers
from torch import nn

from rail_kd_jax.distill import methods as methods_lib
from rail_kd_jax.distill.methods import torch_terms


def hf_model(config, dtype=torch.float32) -> nn.Module:
  """A randomly initialised transformers model for an `models.EncoderConfig`."""
  d = config.to_hf_dict()
  hf_config = transformers.AutoConfig.for_model(**d)
  model = transformers.AutoModelForSequenceClassification.from_config(hf_config)
  return model.to(dtype)


class Heads(nn.Module):
  """The trainable distillation heads of one method (same names and shapes as its
  `init_heads`), built by its row's `torch_heads`."""

  def __init__(self, method: str, dcfg, hs: int, ht: int, num_student_layers: int, num_teacher_layers: int):
    super().__init__()
    row = methods_lib.get_method(method)
    for name, module in row.torch_heads(dcfg, hs, ht, num_student_layers, num_teacher_layers).items():
      setattr(self, name, module)


def method_loss(method: str, dcfg, heads: Heads, s_out, t_out, batch: dict, mapping: torch.Tensor | None):
  """The total loss of `method`: its row's `torch_loss` (the formulas of `distill.methods`)."""
  row = methods_lib.get_method(method)
  hidden = lambda out: None if out is None or out.hidden_states is None else torch.stack(out.hidden_states).float()
  inputs = torch_terms.TorchInputs(
    student_logits=s_out.logits.float(),
    labels=batch["labels"],
    example_mask=batch["example_mask"],
    token_mask=batch["attention_mask"],
    teacher_logits=None if t_out is None else t_out.logits.float(),
    student_hidden=hidden(s_out),
    teacher_hidden=hidden(t_out),
    mapping=mapping,
  )
  return row.torch_loss(dcfg, heads, inputs)


def adamw(params_named, opt_cfg, total_steps: int):
  """torch AdamW + LambdaLR with the groups and schedule of `optim.make_optimizer`."""
  decay, no_decay = [], []
  for name, p in params_named:
    (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(p)
  opt = torch.optim.AdamW(
    [{"params": decay, "weight_decay": opt_cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
    lr=opt_cfg.learning_rate,
    betas=(opt_cfg.b1, opt_cfg.b2),
    eps=opt_cfg.eps,
  )
  warmup = int(opt_cfg.warmup_ratio * total_steps)

  def factor(step):
    if step < warmup:
      return step / max(1, warmup)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

  return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def to_torch_batch(batch: dict) -> dict:
  out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
  for k in ("input_ids", "attention_mask", "token_type_ids", "labels"):
    out[k] = out[k].long()
  return out


PRECISIONS = ("float32", "bfloat16")


def resolve_device(name: str = "auto") -> str:
  """'cpu' or 'cuda': `name`, or for 'auto' cuda when torch sees a GPU."""
  if name == "auto":
    return "cuda" if torch.cuda.is_available() else "cpu"
  if name == "cuda" and not torch.cuda.is_available():
    raise ValueError("--torch_device=cuda, but torch sees no CUDA device")
  if name not in ("cpu", "cuda"):
    raise ValueError(f"torch device {name!r} is not one of auto, cpu, cuda")
  return name


def synchronizer(device: str):
  """A `block(x)` for `timing.time_interleaved`: waits for the device's queued work."""
  if device == "cuda":
    return lambda x: torch.cuda.synchronize()
  return lambda x: None  # CPU ops return when done


def compile_unavailable() -> str | None:
  """None when `torch.compile` can build a kernel here, else why not (one line)."""
  try:
    f = torch.compile(lambda x: torch.sin(x) + 1.0)
    f(torch.ones(4))
  except Exception as e:  # inductor needs a C++ compiler and a working toolchain
    return f"torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
  return None


class TorchPeer:
  """One method's train step in plain PyTorch: `step()` runs one optimizer update.

  `precision`: 'float32' (eager float32) or 'bfloat16' (autocast); `compile`: wrap the
  models in `torch.compile`; `device`: 'cpu' or 'cuda'. `step(batch)` trains on another
  (numpy) batch instead of the one given here, e.g. dynamically padded real data.
  """

  def __init__(
    self,
    shape,
    method: str,
    dcfg,
    opt_cfg,
    batch: dict,
    *,
    seed: int = 0,
    total_steps: int = 10_000,
    precision: str = "float32",
    compile: bool = False,
    device: str = "cpu",
  ):
    if precision not in PRECISIONS:
      raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    torch.manual_seed(seed)
    self.method, self.dcfg, self.row = method, dcfg, methods_lib.get_method(method)
    self.precision, self.device = precision, device
    self.needs_teacher = self.row.needs_teacher
    self.needs_hidden = self.row.pairs_layers  # a method that pairs layers reads their hidden states
    self.student = hf_model(shape.student).to(device).train()
    self.teacher = hf_model(shape.teacher).to(device).eval() if self.needs_teacher else None
    if self.teacher is not None:
      self.teacher.requires_grad_(False)
    self.num_student_layers = shape.student.num_hidden_layers
    self.num_teacher_layers = shape.teacher.num_hidden_layers
    self.heads = Heads(
      method,
      dcfg,
      shape.student.hidden_size,
      shape.teacher.hidden_size,
      self.num_student_layers,
      self.num_teacher_layers,
    )
    self.heads.to(device)
    named = list(self.student.named_parameters()) + [("heads." + k, v) for k, v in self.heads.named_parameters()]
    self.params = [p for _, p in named]
    self.opt, self.sched = adamw(named, opt_cfg, total_steps)
    self.clip = opt_cfg.clip_norm
    self.batch = self._to_device(batch)
    self.gen = torch.Generator().manual_seed(seed)
    # The modules the step calls: compiled wrappers share the parameters of the originals.
    self.student_fn = torch.compile(self.student) if compile else self.student
    self.teacher_fn = torch.compile(self.teacher) if (compile and self.teacher is not None) else self.teacher

  def _to_device(self, batch: dict) -> dict:
    return {k: v.to(self.device) for k, v in to_torch_batch(batch).items()}

  def _mapping(self) -> torch.Tensor | None:
    """The row's layer mapping (1-based teacher layers, ascending), drawn each step; None without one."""
    if self.row.torch_mapping is None:
      return None
    return self.row.torch_mapping(self.gen, self.num_teacher_layers, self.num_student_layers)

  def step(self, batch: dict | None = None) -> torch.Tensor:
    b = self.batch if batch is None else self._to_device(batch)
    inputs = {k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    mapping = self._mapping()
    if mapping is not None:
      mapping = mapping.to(self.device)
    with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
      t_out = None
      if self.needs_teacher:
        with torch.no_grad():
          t_out = self.teacher_fn(**inputs, output_hidden_states=self.needs_hidden)
      s_out = self.student_fn(**inputs, output_hidden_states=self.needs_hidden)
      loss = method_loss(self.method, self.dcfg, self.heads, s_out, t_out, b, mapping)
    self.opt.zero_grad(set_to_none=True)
    loss.backward()
    if self.clip and self.clip > 0:
      torch.nn.utils.clip_grad_norm_(self.params, self.clip)
    self.opt.step()
    self.sched.step()
    return loss.detach()
