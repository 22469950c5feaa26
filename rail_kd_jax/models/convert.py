"""Hugging Face checkpoints in and out: the name mapping, load_pretrained, save_pretrained.

Also the plain <-> scanned params layout helpers.

The mapping below is the one place that knows how HF names a weight. A Flax `kernel` is the
transpose of the HF Linear `weight` ([in, out] vs [out, in]); LayerNorm `scale` is `weight`;
an embedding table is `weight` as is.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax.core import unfreeze

from rail_kd_jax.core import files
from rail_kd_jax.models.bert import Encoder, hf_init, param_shapes
from rail_kd_jax.models.config import EncoderConfig

CONFIG_NAME = "config.json"
SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
TORCH_WEIGHTS_NAME = "pytorch_model.bin"
TORCH_WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"

LINEAR, LAYER_NORM, EMBEDDING = "linear", "layer_norm", "embedding"

# HF prefix of the base model inside a *For* task model.
BASE_PREFIX = {"bert": "bert.", "roberta": "roberta.", "distilbert": "distilbert."}

# Flax module path -> (BERT/RoBERTa HF module name, DistilBERT HF module name, kind).
# None: the module does not exist in that family.
EMBEDDING_MODULES = {
  "embeddings/word_embeddings": ("embeddings.word_embeddings", "embeddings.word_embeddings", EMBEDDING),
  "embeddings/position_embeddings": ("embeddings.position_embeddings", "embeddings.position_embeddings", EMBEDDING),
  "embeddings/token_type_embeddings": ("embeddings.token_type_embeddings", None, EMBEDDING),
  "embeddings/LayerNorm": ("embeddings.LayerNorm", "embeddings.LayerNorm", LAYER_NORM),
}
# Inside one layer; HF layer prefix is 'encoder.layer.{i}.' (DistilBERT: 'transformer.layer.{i}.').
LAYER_MODULES = {
  "attention/self/query": ("attention.self.query", "attention.q_lin", LINEAR),
  "attention/self/key": ("attention.self.key", "attention.k_lin", LINEAR),
  "attention/self/value": ("attention.self.value", "attention.v_lin", LINEAR),
  "attention/output/dense": ("attention.output.dense", "attention.out_lin", LINEAR),
  "attention/output/LayerNorm": ("attention.output.LayerNorm", "sa_layer_norm", LAYER_NORM),
  "intermediate/dense": ("intermediate.dense", "ffn.lin1", LINEAR),
  "output/dense": ("output.dense", "ffn.lin2", LINEAR),
  "output/LayerNorm": ("output.LayerNorm", "output_layer_norm", LAYER_NORM),
}
LAYER_PREFIX = {"bert": "encoder.layer.{i}.", "roberta": "encoder.layer.{i}.", "distilbert": "transformer.layer.{i}."}
# Modules outside the layer stack: Flax path -> (HF name, inside the base model?, kind).
# `needs_head`: only present when num_labels > 0.
EXTRA_MODULES = {
  "bert": [("pooler/dense", "pooler.dense", True, LINEAR, False), ("classifier", "classifier", False, LINEAR, True)],
  "roberta": [
    ("classifier/dense", "classifier.dense", False, LINEAR, True),
    ("classifier/out_proj", "classifier.out_proj", False, LINEAR, True),
  ],
  "distilbert": [
    ("pre_classifier", "pre_classifier", False, LINEAR, True),
    ("classifier", "classifier", False, LINEAR, True),
  ],
}
# Flax leaf name -> (HF leaf name, transpose) per kind.
LEAVES = {
  LINEAR: (("kernel", "weight", True), ("bias", "bias", False)),
  LAYER_NORM: (("scale", "weight", False), ("bias", "bias", False)),
  EMBEDDING: (("embedding", "weight", False),),
}
HEAD_ROOTS = ("classifier", "pre_classifier")

# Checkpoint keys that are never used by an encoder + sequence head: buffers and the
# MLM / pretraining heads. Logged at info level, not warned about.
_EXPECTED_UNUSED_PREFIXES = ("cls.", "lm_head.", "vocab_transform.", "vocab_layer_norm.", "vocab_projector.")
_EXPECTED_UNUSED_SUFFIXES = ("position_ids", "embeddings.token_type_ids")


def name_map(config: EncoderConfig) -> list[tuple[tuple[str, ...], str, bool, bool]]:
  """Every param of the plain (unscanned) layout, as
  (flax path tuple, HF key without base prefix, transpose, inside base model)."""
  fam = config.model_type
  col = 1 if fam == "distilbert" else 0
  entries = []

  def add(flax_module: str, hf_module: str, kind: str, in_base: bool):
    for flax_leaf, hf_leaf, transpose in LEAVES[kind]:
      entries.append((tuple(flax_module.split("/")) + (flax_leaf,), f"{hf_module}.{hf_leaf}", transpose, in_base))

  for flax_module, names in EMBEDDING_MODULES.items():
    if names[col] is not None:
      add(flax_module, names[col], names[2], True)
  for i in range(config.num_hidden_layers):
    for flax_module, names in LAYER_MODULES.items():
      add(f"encoder/layer_{i}/{flax_module}", LAYER_PREFIX[fam].format(i=i) + names[col], names[2], True)
  for flax_module, hf_module, in_base, kind, needs_head in EXTRA_MODULES[fam]:
    if needs_head and config.num_labels == 0:
      continue
    add(flax_module, hf_module, kind, in_base)
  return entries


def _is_head(path: tuple[str, ...]) -> bool:
  return path[0] in HEAD_ROOTS


# ----------------------------------------------------------------------------- layouts


def is_scanned(params: Mapping[str, Any]) -> bool:
  """True when the layer params are stacked under encoder/layer (scan_layers=True layout)."""
  return "layer" in params.get("encoder", {})


def stack_layers(params: Mapping[str, Any]) -> dict:
  """Plain layout (encoder/layer_{i}/...) -> scanned layout (encoder/layer/... with a leading
  [num_layers] axis). Numpy leaves stay numpy; others become jax arrays. Idempotent."""
  params = dict(unfreeze(params))
  if is_scanned(params):
    return params
  enc = dict(params["encoder"])
  n = len([k for k in enc if k.startswith("layer_")])
  if n == 0:
    raise ValueError("params['encoder'] has no layer_{i} entries to stack.")
  layers = [enc.pop(f"layer_{i}") for i in range(n)]

  def stack(*xs):
    return np.stack(xs) if all(isinstance(x, np.ndarray) for x in xs) else jnp.stack(xs)

  enc["layer"] = jax.tree.map(stack, *layers)
  params["encoder"] = enc
  return params


def unstack_layers(params: Mapping[str, Any]) -> dict:
  """Scanned layout -> plain layout (encoder/layer_{i}/...). Idempotent."""
  params = dict(unfreeze(params))
  if not is_scanned(params):
    return params
  enc = dict(params["encoder"])
  stacked = enc.pop("layer")
  n = jax.tree.leaves(stacked)[0].shape[0]
  for i in range(n):
    enc[f"layer_{i}"] = jax.tree.map(lambda x, i=i: x[i], stacked)
  params["encoder"] = enc
  return params


def convert_layout(params: Mapping[str, Any], scan_layers: bool) -> dict:
  """Returns params in the layout an Encoder(scan_layers=scan_layers) expects."""
  return stack_layers(params) if scan_layers else unstack_layers(params)


def _set(tree: dict, path: tuple[str, ...], value) -> None:
  for k in path[:-1]:
    tree = tree.setdefault(k, {})
  tree[path[-1]] = value


def flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict:
  """{path tuple: leaf} for a nested dict of params."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(flatten(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


# ----------------------------------------------------------------------------- reading


def read_config(path: str | os.PathLike) -> EncoderConfig:
  """EncoderConfig from `path/config.json`; ValueError naming the file when it is unusable."""
  path = os.fspath(path)
  if not os.path.isdir(path):
    raise ValueError(f"load_pretrained: {path!r} is not a directory (expected an HF model folder).")
  cfg_file = os.path.join(path, CONFIG_NAME)
  if not os.path.isfile(cfg_file):
    raise ValueError(f"load_pretrained: {cfg_file!r} is missing; an HF model folder needs config.json.")
  with open(cfg_file) as f:
    try:
      d = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"load_pretrained: {cfg_file!r} is not valid JSON ({e}).") from e
  try:
    return EncoderConfig.from_hf_dict(d)
  except ValueError as e:
    raise ValueError(f"{cfg_file}: {e}") from e


def _load_torch_file(file: str) -> dict[str, np.ndarray]:
  try:
    import torch
  except ImportError as e:
    raise ValueError(
      f"{file!r} is a PyTorch checkpoint and torch is not installed; "
      f"install torch or convert it to {SAFE_WEIGHTS_NAME}."
    ) from e
  sd = torch.load(file, map_location="cpu", weights_only=True)
  return {k: (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in sd.items()}


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """HF weights of a folder as {key: numpy array}: model.safetensors (or its sharded index),
  else pytorch_model.bin (or its index) when torch is installed."""
  from safetensors.numpy import load_file

  path = os.fspath(path)
  single = os.path.join(path, SAFE_WEIGHTS_NAME)
  if os.path.isfile(single):
    return load_file(single)
  index = os.path.join(path, SAFE_WEIGHTS_INDEX_NAME)
  if os.path.isfile(index):
    with open(index) as f:
      shards = sorted(set(json.load(f)["weight_map"].values()))
    out = {}
    for shard in shards:
      out.update(load_file(os.path.join(path, shard)))
    return out
  single = os.path.join(path, TORCH_WEIGHTS_NAME)
  if os.path.isfile(single):
    return _load_torch_file(single)
  index = os.path.join(path, TORCH_WEIGHTS_INDEX_NAME)
  if os.path.isfile(index):
    with open(index) as f:
      shards = sorted(set(json.load(f)["weight_map"].values()))
    out = {}
    for shard in shards:
      out.update(_load_torch_file(os.path.join(path, shard)))
    return out
  raise ValueError(
    f"load_pretrained: no weights in {path!r}; expected {SAFE_WEIGHTS_NAME} "
    f"(or {SAFE_WEIGHTS_INDEX_NAME}, {TORCH_WEIGHTS_NAME})."
  )


def _normalise_keys(sd: Mapping[str, np.ndarray], config: EncoderConfig) -> dict[str, np.ndarray]:
  """Strips the base-model prefix ('bert.' etc.) and renames old LayerNorm gamma/beta."""
  prefix = BASE_PREFIX[config.model_type]
  out = {}
  for key, value in sd.items():
    if key.startswith(prefix):
      key = key[len(prefix) :]
    if key.endswith(".gamma"):
      key = key[: -len("gamma")] + "weight"
    elif key.endswith(".beta"):
      key = key[: -len("beta")] + "bias"
    out[key] = value
  return out


def _expected_unused(key: str, config: EncoderConfig) -> bool:
  if key.startswith(_EXPECTED_UNUSED_PREFIXES) or key.endswith(_EXPECTED_UNUSED_SUFFIXES):
    return True
  # RobertaModel carries a pooler that RobertaForSequenceClassification (and this code) lacks.
  return config.model_type == "roberta" and key.startswith("pooler.")


def params_from_state_dict(
  sd: Mapping[str, np.ndarray],
  model: Encoder,
  rng: jax.Array | None = None,
  *,
  source: str = "state dict",
  head_resized: bool = False,
) -> dict:
  """Maps an HF state dict onto `model`'s params (plain layout, numpy/jax leaves).

  Shapes come from jax.eval_shape; params the checkpoint lacks are freshly initialised
  (one jitted init that only computes those leaves) and named in a warning; unused
  checkpoint keys are named too. head_resized: the caller changed num_labels, so a head of
  another size in the checkpoint is replaced by a fresh one instead of raising.
  """
  config = model.config
  plain = model.clone(scan_layers=False, remat=False)
  shapes = flatten(param_shapes(plain))
  sd = _normalise_keys(sd, config)
  pdtype = np.dtype(model.param_dtype)

  flat: dict[tuple[str, ...], Any] = {}
  used, missing, resized = set(), [], []
  for path, hf_key, transpose, _ in name_map(config):
    if path not in shapes:
      raise AssertionError(f"mapping names {'/'.join(path)}, which the model lacks")
    if hf_key not in sd:
      missing.append(path)
      continue
    used.add(hf_key)
    arr = np.asarray(sd[hf_key])
    if transpose:
      arr = arr.T
    want = tuple(shapes[path].shape)
    if arr.shape != want:
      if _is_head(path) and head_resized:
        resized.append(f"{hf_key} {arr.shape}")
        missing.append(path)
        continue
      raise ValueError(
        f"{source}: weight {hf_key!r} has shape {arr.shape}{' (transposed)' if transpose else ''} "
        f"but {'/'.join(path)} needs {want}; config.json and the weights disagree."
      )
    flat[path] = np.ascontiguousarray(arr.astype(pdtype, copy=False))

  extra_paths = set(shapes) - {e[0] for e in name_map(config)}
  if extra_paths:
    raise AssertionError(f"params without a mapping entry: {sorted(extra_paths)}")

  unused = sorted(set(sd) - used)
  expected = [k for k in unused if _expected_unused(k, config)]
  dropped_head = [k for k in unused if k.split(".")[0] in HEAD_ROOTS and config.num_labels == 0]
  unexpected = [k for k in unused if k not in expected and k not in dropped_head]
  if expected:
    logging.info(
      "%s: %d checkpoint weights are not used by an encoder (expected): %s", source, len(expected), ", ".join(expected)
    )
  if dropped_head:
    logging.info("%s: num_labels=0, so the checkpoint's task head is dropped: %s", source, ", ".join(dropped_head))
  if unexpected:
    logging.warning(
      "%s: %d unexpected checkpoint weights were ignored: %s", source, len(unexpected), ", ".join(unexpected)
    )
  if resized:
    logging.warning(
      "%s: task head of another size in the checkpoint was replaced by a fresh one for num_labels=%d: %s",
      source,
      config.num_labels,
      ", ".join(resized),
    )

  if missing:
    head = [p for p in missing if _is_head(p)]
    body = [p for p in missing if not _is_head(p)]
    if head:
      logging.warning(
        "%s: the checkpoint has no task head for num_labels=%d; freshly initialised: %s",
        source,
        config.num_labels,
        ", ".join("/".join(p) for p in head),
      )
    if body:
      logging.warning(
        "%s: %d weights are missing from the checkpoint and were freshly initialised: %s",
        source,
        len(body),
        ", ".join("/".join(p) for p in body),
      )
    rng = jax.random.PRNGKey(0) if rng is None else rng
    fresh = hf_init(plain, rng, missing)
    for path in missing:
      flat[path] = fresh[path]

  tree: dict = {}
  for path, value in flat.items():
    _set(tree, path, value)
  return tree


def load_pretrained(
  path: str | os.PathLike,
  num_labels: int | None = None,
  dtype: Any = jnp.float32,
  param_dtype: Any = jnp.float32,
  scan_layers: bool = False,
  remat: bool = False,
  attention: str = "auto",
  *,
  rng: jax.Array | None = None,
) -> tuple[Encoder, dict]:
  """Loads an HF folder (config.json + model.safetensors / pytorch_model.bin).

  Args:
    path: the folder.
    num_labels: task-head width; None keeps the checkpoint's (0 when it has no sequence
      head), 0 drops the head, another value makes a fresh head of that size.
    dtype, param_dtype: compute and param dtypes.
    scan_layers, remat: see Encoder; scanned params get a leading [num_layers] axis.
    attention: the attention form, see Encoder ('auto' | 'matmul' | 'dot_product').
    rng: key for weights the checkpoint lacks (default PRNGKey(0)).

  Returns:
    (Encoder, params) with params as jax arrays.
  """
  config = read_config(path)
  head_resized = False
  if num_labels is not None and num_labels != config.num_labels:
    if not isinstance(num_labels, int) or num_labels < 0:
      raise ValueError(f"load_pretrained: num_labels={num_labels!r} must be an int >= 0.")
    config = dataclasses.replace(config, num_labels=num_labels, id2label=None, label2id=None)
    head_resized = True
  model = Encoder(
    config, dtype=dtype, param_dtype=param_dtype, scan_layers=scan_layers, remat=remat, attention=attention
  )
  sd = read_state_dict(path)
  params = params_from_state_dict(sd, model, rng, source=os.fspath(path), head_resized=head_resized)
  if scan_layers:
    params = stack_layers(params)
  params = jax.tree.map(jnp.asarray, params)
  logging.info(
    "Loaded %s (%s, %d layers, hidden %d, num_labels %d) from %s",
    config.architecture(),
    config.model_type,
    config.num_hidden_layers,
    config.hidden_size,
    config.num_labels,
    os.fspath(path),
  )
  return model, params


# ----------------------------------------------------------------------------- writing


def state_dict_from_params(model: Encoder, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """HF state dict {key: numpy} for `params` (plain or scanned). Base-model keys get the
  'bert.'/'roberta.'/'distilbert.' prefix when the model has a task head, as HF's
  *ForSequenceClassification expects."""
  config = model.config
  params = unstack_layers(params)
  flat = flatten(params)
  entries = name_map(config)
  unknown = sorted(set(flat) - {e[0] for e in entries})
  if unknown:
    raise ValueError(
      "save_pretrained: params have entries that are not part of an HF "
      f"{config.architecture()}: {['/'.join(p) for p in unknown]}; pass the encoder params only."
    )
  prefix = BASE_PREFIX[config.model_type] if config.num_labels > 0 else ""
  out = {}
  for path, hf_key, transpose, in_base in entries:
    if path not in flat:
      raise ValueError(f"save_pretrained: params lack {'/'.join(path)}.")
    arr = np.asarray(jax.device_get(flat[path]))
    if transpose:
      arr = arr.T
    out[(prefix if in_base else "") + hf_key] = np.ascontiguousarray(arr)
  return out


def save_pretrained(
  model: Encoder, params: Mapping[str, Any], out_dir: str | os.PathLike, tokenizer: Any = None
) -> str:
  """Writes an HF folder: config.json (with `architectures`), model.safetensors, and the
  tokenizer files when `tokenizer` (an HF tokenizer) is given. Loadable by
  transformers.AutoModelForSequenceClassification (or AutoModel when num_labels == 0).
  Returns out_dir."""
  from safetensors.numpy import save_file

  out_dir = os.fspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  tensors = state_dict_from_params(model, params)
  hf = model.config.to_hf_dict()
  dtypes = {str(v.dtype) for v in tensors.values()}
  hf["dtype"] = dtypes.pop() if len(dtypes) == 1 else "float32"
  with open(os.path.join(out_dir, CONFIG_NAME), "w") as f:
    json.dump(hf, f, indent=2, sort_keys=True)
    f.write("\n")
  weights = os.path.join(out_dir, SAFE_WEIGHTS_NAME)
  save_file(tensors, weights, metadata={"format": "pt"})
  files.chmod_like_open(weights)  # safetensors creates it 0600: unreadable to the other users
  if tokenizer is not None:
    tokenizer.save_pretrained(out_dir)
  logging.info("Saved %s (%d tensors) to %s", hf["architectures"][0], len(tensors), out_dir)
  return out_dir


__all__ = [
  "load_pretrained",
  "save_pretrained",
  "read_config",
  "read_state_dict",
  "name_map",
  "params_from_state_dict",
  "state_dict_from_params",
  "stack_layers",
  "unstack_layers",
  "convert_layout",
  "is_scanned",
]
