"""BERT-family encoders in Flax linen, HF checkpoint conversion, and student recipes.

Typical use:

  from rail_kd_jax import models
  model, params = models.load_pretrained(folder)
  out = model.apply({"params": params}, input_ids, attention_mask)
  out.hidden_states  # [num_layers + 1, B, T, H]; out.logits [B, C] or None
  models.save_pretrained(model, params, out_dir)
"""

import jax

from rail_kd_jax.models.attention import ATTENTION_IMPLS, resolve_attention
from rail_kd_jax.models.bert import Encoder, EncoderOutput, init_params, param_shapes
from rail_kd_jax.models.config import EncoderConfig
from rail_kd_jax.models.convert import (
  convert_layout,
  is_scanned,
  load_pretrained,
  read_config,
  save_pretrained,
  stack_layers,
  unstack_layers,
)
from rail_kd_jax.models import student  # noqa: E402  (after the names it uses)

__all__ = [
  "param_count",
  "ATTENTION_IMPLS",
  "Encoder",
  "EncoderOutput",
  "EncoderConfig",
  "load_pretrained",
  "save_pretrained",
  "init_params",
  "param_shapes",
  "student",
  "stack_layers",
  "unstack_layers",
  "convert_layout",
  "is_scanned",
  "read_config",
  "resolve_attention",
]


def param_count(tree) -> int:
  """The number of parameters (array elements) in a params tree."""
  return int(sum(x.size for x in jax.tree.leaves(tree)))
