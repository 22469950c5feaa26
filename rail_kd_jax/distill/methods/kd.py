"""none (the student without KD) and kd (Hinton et al. 2015): no heads, no intermediate term."""

from rail_kd_jax.distill.methods import base
from rail_kd_jax.distill.methods.base import MethodInputs


def none_loss(head_params, inputs: MethodInputs, dcfg):
  """CE only (plain fine-tuning)."""
  del head_params
  ce, _ = base.ce_kd(inputs, dcfg, with_kd=False)
  return ce, {"ce": ce, "loss": ce}


def kd_loss(head_params, inputs: MethodInputs, dcfg):
  """Hinton KD: (1 - a) CE + a T^2 KL, a = dcfg.kd_alpha."""
  del head_params
  ce, kd = base.ce_kd(inputs, dcfg)
  a = dcfg.kd_alpha
  total = (1.0 - a) * ce + a * kd
  return total, {"ce": ce, "kd": kd, "loss": total}


def torch_no_heads(dcfg, hs, ht, num_student_layers, num_teacher_layers) -> dict:
  del dcfg, hs, ht, num_student_layers, num_teacher_layers
  return {}


def torch_none_loss(dcfg, heads, x):
  """As `none_loss`, in torch."""
  from rail_kd_jax.distill.methods import torch_terms

  del dcfg, heads
  return torch_terms.ce(x)


def torch_kd_loss(dcfg, heads, x):
  """As `kd_loss`, in torch."""
  from rail_kd_jax.distill.methods import torch_terms

  del heads
  a = dcfg.kd_alpha
  return (1 - a) * torch_terms.ce(x) + a * torch_terms.kd(x, dcfg.temperature)


NONE = base.Method(
  base.no_heads,
  none_loss,
  needs_teacher=False,
  name="none",
  title="student without KD",
  torch_heads=torch_no_heads,
  torch_loss=torch_none_loss,
)

KD = base.Method(
  base.no_heads,
  kd_loss,
  needs_teacher=True,
  name="kd",
  title="KD",
  options=base.KD_OPTIONS + ("kd_alpha",),
  preset={"temperature": 10.0, "kd_alpha": 0.7},
  preset_source="Hinton KD on BERT as the PKD authors ran it: their kd.cls preset (src/argument_parser.py) "
  "minus the patient term",
  space=(base.T_KNOB, base.ALPHA_KNOB),
  torch_heads=torch_no_heads,
  torch_loss=torch_kd_loss,
)

ROWS = (NONE, KD)
