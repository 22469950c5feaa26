"""Three ways to build a student encoder.

(a) `from_teacher_layers`: the DistilBERT recipe. Embeddings, the chosen teacher layers
    and the task head are copied; width stays the teacher's.
(b) `fresh`: a new (usually smaller) config with HF-style random init; any width.
(c) `from_pretrained` (= `load_pretrained`): another checkpoint, e.g. a smaller model of
    the same family.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
from absl import logging
from flax.traverse_util import flatten_dict

from rail_kd_jax.models.bert import Encoder, hf_init, init_params, param_shapes
from rail_kd_jax.models.config import EncoderConfig
from rail_kd_jax.models.convert import HEAD_ROOTS, convert_layout, is_scanned, load_pretrained, unstack_layers

from_pretrained = load_pretrained

_MODULE_FIELDS = ("dtype", "param_dtype", "scan_layers", "remat", "attention")
# Config fields that fix the shape of copied weights; a teacher-layer student keeps them.
_FIXED_BY_TEACHER = (
  "model_type",
  "vocab_size",
  "hidden_size",
  "intermediate_size",
  "max_position_embeddings",
  "type_vocab_size",
  "num_hidden_layers",
)


def _split_overrides(overrides: Mapping[str, Any]) -> tuple[dict, dict]:
  config_fields = {f.name for f in dataclasses.fields(EncoderConfig)}
  module_kw, config_kw = {}, {}
  for key, value in overrides.items():
    if key in _MODULE_FIELDS:
      module_kw[key] = value
    elif key in config_fields:
      config_kw[key] = value
    else:
      raise ValueError(
        f"unknown override {key!r}; valid: Encoder fields {_MODULE_FIELDS} or "
        f"EncoderConfig fields {sorted(config_fields)}."
      )
  return module_kw, config_kw


def from_teacher_layers(
  model: Encoder,
  params: Mapping[str, Any],
  layers: Sequence[int],
  *,
  rng: jax.Array | None = None,
  **overrides: Any,
) -> tuple[Encoder, dict]:
  """A student made of the teacher's embeddings, the teacher layers `layers` (0-based
  indices into the teacher's transformer layers, e.g. (0, 2, 4)) in the given order, and
  the teacher's task head (pooler included for BERT).

  overrides: Encoder fields (dtype, param_dtype, scan_layers, remat, attention; default:
  the teacher's) or EncoderConfig fields that do not change weight shapes (num_labels,
  dropout rates, ...). A changed num_labels gives a fresh head initialised from `rng`.
  Returns (student model, student params) in the student's layout.
  """
  tcfg = model.config
  n = tcfg.num_hidden_layers
  layers = tuple(layers)
  if not layers:
    raise ValueError("from_teacher_layers: layers is empty; give at least one teacher layer index.")
  for j, layer in enumerate(layers):
    if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < n:
      raise ValueError(
        f"from_teacher_layers: layers[{j}]={layer!r} is out of range for a teacher with {n} layers (valid: 0..{n - 1})."
      )
  module_kw, config_kw = _split_overrides(overrides)
  fixed = [k for k in config_kw if k in _FIXED_BY_TEACHER and config_kw[k] != getattr(tcfg, k)]
  if fixed:
    raise ValueError(
      f"from_teacher_layers: {fixed} cannot differ from the teacher's (copied weights "
      "fix them); use student.fresh for another architecture."
    )
  if "num_labels" in config_kw and config_kw["num_labels"] != tcfg.num_labels:
    config_kw.setdefault("id2label", None)
    config_kw.setdefault("label2id", None)
  scfg = dataclasses.replace(tcfg, num_hidden_layers=len(layers), **config_kw)
  kw = dict(
    dtype=model.dtype,
    param_dtype=model.param_dtype,
    scan_layers=model.scan_layers,
    remat=model.remat,
    attention=model.attention,
  )
  kw.update(module_kw)
  student = Encoder(scfg, **kw)

  tparams = unstack_layers(params)
  sparams: dict = {
    "embeddings": tparams["embeddings"],
    "encoder": {f"layer_{j}": tparams["encoder"][f"layer_{t}"] for j, t in enumerate(layers)},
  }
  if "pooler" in tparams:
    sparams["pooler"] = tparams["pooler"]
  fresh_head = scfg.num_labels > 0 and scfg.num_labels != tcfg.num_labels
  if scfg.num_labels > 0 and not fresh_head:
    for key in HEAD_ROOTS:
      if key in tparams:
        sparams[key] = tparams[key]
  if fresh_head:
    rng = jax.random.PRNGKey(0) if rng is None else rng
    plain = student.clone(scan_layers=False, remat=False)
    head_paths = [p for p in flatten_dict(param_shapes(plain)) if p[0] in HEAD_ROOTS]
    for path, value in hf_init(plain, rng, head_paths).items():
      sub = sparams.setdefault(path[0], {})
      for k in path[1:-1]:
        sub = sub.setdefault(k, {})
      sub[path[-1]] = value
    logging.info(
      "from_teacher_layers: fresh task head for num_labels=%d (teacher has %d).", scfg.num_labels, tcfg.num_labels
    )
  pdtype = jnp.dtype(student.param_dtype)
  sparams = jax.tree.map(lambda x: jnp.asarray(x, pdtype), sparams)
  logging.info("from_teacher_layers: student with teacher layers %s of %d.", list(layers), n)
  return student, convert_layout(sparams, student.scan_layers)


def fresh(config: EncoderConfig, rng: jax.Array, **kw: Any) -> tuple[Encoder, dict]:
  """A randomly initialised student (HF-style init) from `config` with EncoderConfig field
  overrides and Encoder fields in `kw`, e.g.
  fresh(teacher.config, rng, num_hidden_layers=3, hidden_size=256, num_attention_heads=4,
        intermediate_size=1024, scan_layers=True)."""
  module_kw, config_kw = _split_overrides(kw)
  if config_kw:
    config = dataclasses.replace(config, **config_kw)
  model = Encoder(config, **module_kw)
  return model, init_params(model, rng)


__all__ = ["from_teacher_layers", "fresh", "from_pretrained", "is_scanned"]
