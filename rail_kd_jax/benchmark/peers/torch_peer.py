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
import torch.nn.functional as F
import transformers
from torch import nn

from rail_kd_jax.distill import layer_sampling
from rail_kd_jax.distill import methods as methods_lib
from rail_kd_jax.distill.methods import pkd_teacher_layers


def hf_model(config, dtype=torch.float32) -> nn.Module:
  """A randomly initialised transformers model for an `models.EncoderConfig`."""
  d = config.to_hf_dict()
  hf_config = transformers.AutoConfig.for_model(**d)
  model = transformers.AutoModelForSequenceClassification.from_config(hf_config)
  return model.to(dtype)


def _linear_stack(num: int, din: int, dout: int, bias: bool = True) -> nn.ModuleList:
  return nn.ModuleList([nn.Linear(din, dout, bias=bias) for _ in range(num)])


def _normalize(x: torch.Tensor) -> torch.Tensor:
  return x * torch.rsqrt(torch.clamp((x * x).sum(-1, keepdim=True), min=1e-12))


def _distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
  if kind == "sq_l2":
    return (_normalize(a) - _normalize(b)).pow(2).sum(-1)
  if kind == "cosine":
    return 1.0 - (_normalize(a) * _normalize(b)).sum(-1)
  if kind == "mse":
    return (a - b).pow(2).mean(-1)
  raise ValueError(f"distance={kind!r} (the PyTorch peer runs on one device: no infonce)")


def _center(x: torch.Tensor, example_mask: torch.Tensor) -> torch.Tensor:
  """x [K, B, D] minus its (detached) mean over the real examples."""
  keep = (example_mask > 0).to(x.dtype)[None, :, None]
  mean = (x * keep).sum(1, keepdim=True) / torch.clamp(keep.sum(1, keepdim=True), min=1.0)
  return x - mean.detach()


def _pool(hidden: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
  """hidden [L+1, B, T, H], mask [B, T] -> [L+1, B, H]."""
  if kind == "cls":
    return hidden[:, :, 0]
  m = mask.to(hidden.dtype)[None, :, :, None]
  return (hidden * m).sum(2) / torch.clamp(m.sum(2), min=1.0)


class Heads(nn.Module):
  """The trainable distillation heads of one method (same shapes as `init_heads`)."""

  def __init__(self, method: str, dcfg, hs: int, ht: int, num_student_layers: int, num_teacher_layers: int):
    super().__init__()
    u = dcfg.proj_dim
    if method == "pkd" and hs != ht and num_student_layers > 1:
      self.student_proj = _linear_stack(num_student_layers - 1, hs, ht)
    elif method == "alp_kd" and hs != ht:
      self.student_proj = _linear_stack(num_student_layers, hs, ht)
    elif method == "ckd":
      bounds = layer_sampling.block_bounds(num_teacher_layers, num_student_layers)
      self.student_proj = nn.ModuleList([nn.Linear(hs, (hi - lo) * ht) for lo, hi in bounds])
    elif method in ("rail_l", "rail_c") and dcfg.projection != "none":
      per_layer = num_teacher_layers if dcfg.proj_index == "teacher_layer" else num_student_layers
      count = 1 if method == "rail_c" else per_layer
      din_s, din_t = (num_student_layers * hs, num_student_layers * ht) if method == "rail_c" else (hs, ht)
      bias = not dcfg.center
      if dcfg.projection == "student_to_teacher":
        self.student_proj = _linear_stack(count, din_s, din_t, bias)
        self._identity = din_s == din_t  # as methods._rail_heads: start at the identity
      else:
        self.student_proj = _linear_stack(count, din_s, u, bias)
        self.teacher_proj = _linear_stack(count, din_t, u, bias)
        if dcfg.projection == "frozen_random":
          self.teacher_proj.requires_grad_(False)
    elif method == "rail_paper" and num_student_layers > 1:
      k = num_student_layers - 1  # both sides of the concatenated M-1 layers to u, as methods.rail_paper_init_heads
      self.student_proj = nn.Linear(k * hs, u)
      self.teacher_proj = nn.Linear(k * ht, u)
    for mod in self.modules():
      if isinstance(mod, nn.Linear):
        nn.init.normal_(mod.weight, std=0.02)
        if mod.bias is not None:
          nn.init.zeros_(mod.bias)
    if getattr(self, "_identity", False):
      for mod in self.student_proj:
        nn.init.eye_(mod.weight)


def _masked_mean(x: torch.Tensor, example_mask: torch.Tensor) -> torch.Tensor:
  keep = (example_mask > 0).to(x.dtype)
  return (x * keep).sum() / torch.clamp(keep.sum(), min=1.0)


def method_loss(method: str, dcfg, heads: Heads, s_out, t_out, batch: dict, mapping: torch.Tensor | None):
  """The total loss of `method` (same formulas as `distill.methods`)."""
  labels, em = batch["labels"], batch["example_mask"]
  zs = s_out.logits.float()
  ce = _masked_mean(F.cross_entropy(zs, labels, reduction="none"), em)
  if method == "none":
    return ce
  zt = t_out.logits.float()
  temp = dcfg.temperature
  log_pt = F.log_softmax(zt / temp, -1)
  kd = _masked_mean(temp**2 * (log_pt.exp() * (log_pt - F.log_softmax(zs / temp, -1))).sum(-1), em)
  a = dcfg.kd_alpha
  if method == "kd":
    return (1 - a) * ce + a * kd
  mask = batch["attention_mask"]
  s_hidden = torch.stack(s_out.hidden_states).float()  # [M+1, B, T, Hs]
  t_hidden = torch.stack(t_out.hidden_states).float()  # [N+1, B, T, Ht]
  num_student_layers, num_teacher_layers = s_hidden.shape[0] - 1, t_hidden.shape[0] - 1
  w = lambda inter: dcfg.ce_weight * ce + dcfg.kd_weight * kd + dcfg.int_weight * inter
  if method == "pkd":
    layers = pkd_teacher_layers(dcfg.pkd_mapping, num_teacher_layers, num_student_layers)
    s, t = s_hidden[1:num_student_layers, :, 0], t_hidden[layers, :, 0]
    if hasattr(heads, "student_proj"):
      s = torch.stack([p(x) for p, x in zip(heads.student_proj, s)])
    pt = _masked_mean(_distance(s, t, "sq_l2").mean(0) / s.shape[-1], em)
    return (1 - a) * ce + a * kd + dcfg.pkd_beta * pt
  if method == "alp_kd":
    s, t = s_hidden[1:, :, 0], t_hidden[1:, :, 0]
    if hasattr(heads, "student_proj"):
      s = torch.stack([p(x) for p, x in zip(heads.student_proj, s)])
    weights = torch.softmax(torch.einsum("mbh,nbh->bmn", s, t), -1)
    context = torch.einsum("bmn,nbh->mbh", weights, t)
    return w(_masked_mean(_distance(s, context, "mse").mean(0), em))
  if method == "ckd":
    token = dcfg.ckd_granularity == "token"
    s, t = (
      (s_hidden, t_hidden)
      if token
      else (_pool(s_hidden, mask, methods_lib.pooling_of(dcfg)), _pool(t_hidden, mask, methods_lib.pooling_of(dcfg)))
    )
    per_layer = []
    for j, (lo, hi) in enumerate(layer_sampling.block_bounds(num_teacher_layers, num_student_layers)):
      target = torch.cat([t[i] for i in range(lo, hi)], -1)
      per_layer.append(_distance(heads.student_proj[j](s[j + 1]), target, "sq_l2"))  # [B] or [B, T]
    d = torch.stack(per_layer).sum(0)
    if token:
      tm = ((mask > 0) & (em[:, None] > 0)).to(d.dtype)
      return w((d * tm).sum() / torch.clamp(tm.sum(), min=1.0))
    return w(_masked_mean(d, em))
  if method in ("rail_l", "rail_c"):
    s = _pool(s_hidden, mask, methods_lib.pooling_of(dcfg))[1:]
    t = _pool(t_hidden, mask, methods_lib.pooling_of(dcfg))[mapping]
    if method == "rail_c":  # [1, B, M*H]
      s = s.permute(1, 0, 2).reshape(1, s.shape[1], -1)
      t = t.permute(1, 0, 2).reshape(1, t.shape[1], -1)
      index = [0]
    else:
      index = (mapping - 1).tolist() if dcfg.proj_index == "teacher_layer" else list(range(num_student_layers))
    if dcfg.center:
      s, t = _center(s, em), _center(t, em)
    if dcfg.projection != "none":
      s = torch.stack([heads.student_proj[i](x) for i, x in zip(index, s)])
      if dcfg.projection != "student_to_teacher":
        t = torch.stack([heads.teacher_proj[i](x) for i, x in zip(index, t)])
    return w(_masked_mean(_distance(s, t, dcfg.distance).mean(0), em))
  if method == "rail_paper":  # as methods.rail_paper_loss: KD without T^2, the term summed over the batch
    kd = kd / temp**2
    w = lambda inter: dcfg.ce_weight * ce + dcfg.kd_weight * kd + dcfg.int_weight * inter
    if num_student_layers < 2:
      return w(torch.zeros((), device=zs.device))
    s = _pool(s_hidden, mask, methods_lib.pooling_of(dcfg))[1:num_student_layers]
    t = _pool(t_hidden, mask, methods_lib.pooling_of(dcfg))[mapping]
    s = heads.student_proj(s.permute(1, 0, 2).reshape(s.shape[1], -1))
    t = heads.teacher_proj(t.permute(1, 0, 2).reshape(t.shape[1], -1))
    return w((_distance(s, t, "sq_l2") * (em > 0).to(s.dtype)).sum())
  raise ValueError(f"unknown method {method!r}")


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
    self.method, self.dcfg = method, dcfg
    self.precision, self.device = precision, device
    self.needs_teacher = method != "none"
    self.needs_hidden = method not in ("none", "kd")
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
    """rail_*: distinct teacher layers (1-based, ascending), one per student layer, drawn uniformly each step."""
    if self.method not in ("rail_l", "rail_c", "rail_paper"):
      return None
    if self.method == "rail_paper":  # M-1 of 1..N-1 (the student's top layer and the teacher's left out)
      perm = torch.randperm(self.num_teacher_layers - 1, generator=self.gen)
      return torch.sort(perm[: self.num_student_layers - 1]).values + 1
    perm = torch.randperm(self.num_teacher_layers, generator=self.gen)
    return torch.sort(perm[: self.num_student_layers]).values + 1

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
