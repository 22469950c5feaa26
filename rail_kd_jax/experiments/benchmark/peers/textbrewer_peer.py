"""TextBrewer peer: `GeneralDistiller` doing kd and pkd on the same shapes.

TextBrewer (Yang et al. 2020) expresses Hinton KD (`kd_loss_type='ce'`, its soft
cross-entropy, whose student gradient equals that of the KL term) mixed with the
hard-label loss, and PKD-style intermediate matches (feature 'hidden', loss
'pkd': L2-normalised first-token vectors, squared L2, one match per student
layer 1..M-1 with the `pkd_mapping` teacher layer, weight beta, a student-side
linear projection when widths differ). It has no random or all-layer mappings,
so alp_kd, ckd and rail_* have no TextBrewer row.

One step is what `BasicDistiller.train_with_num_steps` does per batch:
`train_on_batch` (teacher forward under no_grad, student forward, adaptors,
`compute_loss`), `write_loss`, backward, clip, AdamW step, scheduler step.
"""

from __future__ import annotations

import tempfile

import torch
from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig

from rail_kd_jax.distill.methods import pkd_teacher_layers
from rail_kd_jax.experiments.benchmark.peers import torch_peer

METHODS = ("kd", "pkd")


def _adaptor(batch, model_outputs):
  """TextBrewer's adaptor: the logits, the hard-label loss and (when returned) the hidden states."""
  out = {"logits": model_outputs.logits, "losses": [model_outputs.loss]}
  if model_outputs.hidden_states is not None:
    out["hidden"] = list(model_outputs.hidden_states)
  return out


class TextBrewerPeer:
  """`step()` runs one optimizer update of TextBrewer's GeneralDistiller."""

  def __init__(self, shape, method: str, dcfg, opt_cfg, batch: dict, *, seed: int = 0, total_steps: int = 10_000):
    if method not in METHODS:
      raise ValueError(f"TextBrewer peer supports {METHODS}, not {method!r}")
    torch.manual_seed(seed)
    self.student = torch_peer.hf_model(shape.student).train()
    self.teacher = torch_peer.hf_model(shape.teacher).eval()
    self.teacher.requires_grad_(False)
    num_student_layers, num_teacher_layers = shape.student.num_hidden_layers, shape.teacher.num_hidden_layers
    hs, ht = shape.student.hidden_size, shape.teacher.hidden_size
    matches = []
    if method == "pkd":
      layers = pkd_teacher_layers(dcfg.pkd_mapping, num_teacher_layers, num_student_layers)
      for j, t in zip(range(1, num_student_layers), layers):
        match = {
          "layer_T": int(t),
          "layer_S": j,
          "feature": "hidden",
          "loss": "pkd",
          # TextBrewer's pkd loss sums over the features and pairs; ours averages over both.
          "weight": dcfg.pkd_beta / ((num_student_layers - 1) * ht),
        }
        if hs != ht:
          match["proj"] = ["linear", hs, ht]
        matches.append(match)
    a = dcfg.kd_alpha
    d_config = DistillationConfig(
      temperature=dcfg.temperature,
      hard_label_weight=1.0 - a,
      kd_loss_type="ce",
      kd_loss_weight=a,
      intermediate_matches=matches,
    )
    self._outdir = tempfile.TemporaryDirectory(prefix="textbrewer_peer_")
    t_config = TrainingConfig(device="cpu", output_dir=self._outdir.name, log_dir=None)
    self.distiller = GeneralDistiller(t_config, d_config, self.teacher, self.student, _adaptor, _adaptor)
    opt, sched = torch_peer.adamw(list(self.student.named_parameters()), opt_cfg, total_steps)
    self.opt, _, _ = self.distiller.initialize_training(opt, None, None, sched)
    self.sched = sched
    self.clip = opt_cfg.clip_norm
    self.batch = self._inputs(batch)
    self.args = {"output_hidden_states": method == "pkd"}

  @staticmethod
  def _inputs(batch: dict) -> dict:
    tb = torch_peer.to_torch_batch(batch)
    return {k: tb[k] for k in ("input_ids", "attention_mask", "token_type_ids", "labels")}

  def step(self, batch: dict | None = None) -> torch.Tensor:
    """One update on the fixed batch, or on `batch` (numpy arrays) when given."""
    d = self.distiller
    total_loss, losses = d.train_on_batch(self.batch if batch is None else self._inputs(batch), self.args)
    d.write_loss(total_loss, 0, losses)
    total_loss.backward()
    if self.clip and self.clip > 0:
      torch.nn.utils.clip_grad_norm_(self.student.parameters(), self.clip)
    self.opt.step()
    self.sched.step()
    self.opt.zero_grad()
    return total_loss.detach()
