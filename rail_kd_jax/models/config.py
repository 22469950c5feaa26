"""EncoderConfig: one frozen dataclass for BERT, RoBERTa and DistilBERT checkpoints.

Field names follow the Hugging Face BERT config. DistilBERT's own names (`dim`,
`n_layers`, `n_heads`, `hidden_dim`, `activation`, `dropout`,
`attention_dropout`, `seq_classif_dropout`) are normalised in `from_hf_dict` and
written back in `to_hf_dict`, so a DistilBERT folder round-trips unchanged.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from flax.core import FrozenDict

MODEL_TYPES = ("bert", "roberta", "distilbert")
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu")

# HF architecture class names per family: (with a sequence-classification head, without).
ARCHITECTURES = {
  "bert": ("BertForSequenceClassification", "BertModel"),
  "roberta": ("RobertaForSequenceClassification", "RobertaModel"),
  "distilbert": ("DistilBertForSequenceClassification", "DistilBertModel"),
}

# Defaults of the HF config classes, used for fields a config.json leaves out.
_FAMILY_DEFAULTS = {
  "bert": dict(vocab_size=30522, pad_token_id=0, type_vocab_size=2),
  "roberta": dict(vocab_size=50265, pad_token_id=1, type_vocab_size=2),
  "distilbert": dict(vocab_size=30522, pad_token_id=0, type_vocab_size=0),
}

# DistilBERT's HF name -> our (BERT) name.
_DISTILBERT_NAMES = {
  "dim": "hidden_size",
  "n_layers": "num_hidden_layers",
  "n_heads": "num_attention_heads",
  "hidden_dim": "intermediate_size",
  "activation": "hidden_act",
  "dropout": "hidden_dropout_prob",
  "attention_dropout": "attention_probs_dropout_prob",
  "seq_classif_dropout": "classifier_dropout",
}

# HF keys that describe a saved file rather than the model; never carried over.
_DROPPED_KEYS = (
  "architectures",
  "_name_or_path",
  "transformers_version",
  "num_labels",
  "id2label",
  "label2id",
  "dtype",
  "torch_dtype",
  "gradient_checkpointing",
  "position_embedding_type",
  "layer_norm_eps",
)


def _num_labels_from_hf(d: Mapping[str, Any]) -> int:
  """Head size implied by an HF config: 0 unless the checkpoint is a sequence classifier.

  HF writes no `id2label` for the default two labels, so a `*ForSequenceClassification`
  architecture without labels means 2; a bare encoder or an MLM checkpoint means no head.
  """
  archs = d.get("architectures") or []
  has_head = any(a.endswith("ForSequenceClassification") for a in archs)
  if not has_head and archs:
    return 0
  if d.get("id2label"):
    return len(d["id2label"])
  if "num_labels" in d:
    return int(d["num_labels"])
  return 2 if has_head else 0


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """Architecture of one encoder; mirrors the HF BERT config fields.

  `num_labels` is the task-head width: 0 = no head, 1 = regression, >1 = classes.
  `type_vocab_size` is 0 for DistilBERT (no token-type embeddings).
  `extra` keeps the HF fields this code does not use (as (key, json) pairs, so the
  config stays hashable) and writes them back on save.
  """

  model_type: str = "bert"
  vocab_size: int = 30522
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  pad_token_id: int = 0
  initializer_range: float = 0.02
  num_labels: int = 0
  problem_type: str | None = None
  classifier_dropout: float | None = None
  id2label: FrozenDict | None = None
  label2id: FrozenDict | None = None
  sinusoidal_pos_embds: bool = False
  extra: tuple = ()

  def __post_init__(self):
    if self.model_type not in MODEL_TYPES:
      raise ValueError(f"EncoderConfig.model_type={self.model_type!r} is not supported; valid: {MODEL_TYPES}.")
    for name in (
      "vocab_size",
      "hidden_size",
      "num_hidden_layers",
      "num_attention_heads",
      "intermediate_size",
      "max_position_embeddings",
    ):
      value = getattr(self, name)
      if not isinstance(value, int) or value <= 0:
        raise ValueError(f"EncoderConfig.{name}={value!r} must be a positive int.")
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(
        f"EncoderConfig.hidden_size={self.hidden_size} must be divisible by "
        f"num_attention_heads={self.num_attention_heads}."
      )
    if self.hidden_act not in ACTIVATIONS:
      raise ValueError(f"EncoderConfig.hidden_act={self.hidden_act!r} is not supported; valid: {ACTIVATIONS}.")
    if not isinstance(self.num_labels, int) or self.num_labels < 0:
      raise ValueError(f"EncoderConfig.num_labels={self.num_labels!r} must be an int >= 0.")
    if self.model_type != "distilbert" and self.type_vocab_size <= 0:
      raise ValueError(
        f"EncoderConfig.type_vocab_size={self.type_vocab_size} must be >= 1 for "
        f"model_type={self.model_type!r} (only DistilBERT has no token types)."
      )
    if not 0 <= self.pad_token_id < self.vocab_size:
      raise ValueError(f"EncoderConfig.pad_token_id={self.pad_token_id} must lie in [0, vocab_size={self.vocab_size}).")
    if self.model_type == "distilbert" and self.classifier_dropout is None:
      object.__setattr__(self, "classifier_dropout", 0.2)  # HF seq_classif_dropout default
    self._normalise_labels()
    if isinstance(self.extra, Mapping):
      object.__setattr__(
        self, "extra", tuple(sorted((str(k), json.dumps(v, sort_keys=True)) for k, v in self.extra.items()))
      )

  def _normalise_labels(self):
    """Label maps as hashable FrozenDicts with int / str keys; HF's LABEL_i names when
    none are given (or when only default names of another size are), none without a head."""
    id2label, label2id = self.id2label, self.label2id
    if id2label is not None:
      id2label = {int(k): str(v) for k, v in dict(id2label).items()}
      if len(id2label) != self.num_labels and all(v == f"LABEL_{k}" for k, v in id2label.items()):
        id2label, label2id = None, None
    if self.num_labels == 0:
      id2label, label2id = None, None
    elif id2label is None:
      id2label = {i: f"LABEL_{i}" for i in range(self.num_labels)}
    if id2label is not None and len(id2label) != self.num_labels:
      raise ValueError(f"EncoderConfig.id2label has {len(id2label)} entries but num_labels={self.num_labels}.")
    if id2label is not None and label2id is None:
      label2id = {v: k for k, v in id2label.items()}
    object.__setattr__(self, "id2label", None if id2label is None else FrozenDict(id2label))
    object.__setattr__(
      self, "label2id", None if label2id is None else FrozenDict({str(k): int(v) for k, v in dict(label2id).items()})
    )

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads

  @property
  def is_regression(self) -> bool:
    return self.num_labels == 1 or self.problem_type == "regression"

  @property
  def extra_dict(self) -> dict:
    return {k: json.loads(v) for k, v in self.extra}

  def architecture(self) -> str:
    """HF class name this model saves as, e.g. 'BertForSequenceClassification'."""
    with_head, bare = ARCHITECTURES[self.model_type]
    return with_head if self.num_labels > 0 else bare

  @classmethod
  def from_hf_dict(cls, d: Mapping[str, Any]) -> "EncoderConfig":
    """Builds a config from an HF config.json dict (BERT, RoBERTa or DistilBERT names)."""
    d = dict(d)
    model_type = d.get("model_type")
    if model_type not in MODEL_TYPES:
      raise ValueError(f"config model_type={model_type!r} is not supported; valid: {MODEL_TYPES}.")
    pet = d.get("position_embedding_type", "absolute")
    if pet != "absolute":
      raise ValueError(f"config position_embedding_type={pet!r} is not supported; only 'absolute' is.")
    kw: dict[str, Any] = dict(_FAMILY_DEFAULTS[model_type])
    kw["model_type"] = model_type
    fields = {f.name for f in dataclasses.fields(cls)} - {"extra", "num_labels", "model_type"}
    extra = {}
    for key, value in d.items():
      name = _DISTILBERT_NAMES.get(key, key) if model_type == "distilbert" else key
      if key in _DROPPED_KEYS or key == "model_type":
        continue
      if model_type == "distilbert" and key in _DISTILBERT_NAMES.values():
        continue  # DistilBERT's own key wins; HF's attribute_map aliases are not stored.
      if name in fields:
        kw[name] = value
      else:
        extra[key] = value
    if model_type == "distilbert":
      kw["type_vocab_size"] = 0
      kw["layer_norm_eps"] = 1e-12  # hard-coded in HF DistilBERT
    elif "layer_norm_eps" in d:
      kw["layer_norm_eps"] = float(d["layer_norm_eps"])
    if kw.get("pad_token_id") is None:
      kw["pad_token_id"] = _FAMILY_DEFAULTS[model_type]["pad_token_id"]
    kw["num_labels"] = _num_labels_from_hf(d)
    if kw["num_labels"] and d.get("id2label"):
      kw["id2label"] = d["id2label"]
      kw["label2id"] = d.get("label2id")
    kw["extra"] = extra
    return cls(**kw)

  def to_hf_dict(self) -> dict:
    """The HF config.json dict (DistilBERT keys for DistilBERT), with `architectures`."""
    out = dict(self.extra_dict)
    common = dict(
      vocab_size=self.vocab_size,
      max_position_embeddings=self.max_position_embeddings,
      initializer_range=self.initializer_range,
      pad_token_id=self.pad_token_id,
    )
    if self.model_type == "distilbert":
      out.update(
        common,
        dim=self.hidden_size,
        n_layers=self.num_hidden_layers,
        n_heads=self.num_attention_heads,
        hidden_dim=self.intermediate_size,
        activation=self.hidden_act,
        dropout=self.hidden_dropout_prob,
        attention_dropout=self.attention_probs_dropout_prob,
        sinusoidal_pos_embds=self.sinusoidal_pos_embds,
      )
      out["seq_classif_dropout"] = self.classifier_dropout
    else:
      out.update(
        common,
        hidden_size=self.hidden_size,
        num_hidden_layers=self.num_hidden_layers,
        num_attention_heads=self.num_attention_heads,
        intermediate_size=self.intermediate_size,
        hidden_act=self.hidden_act,
        hidden_dropout_prob=self.hidden_dropout_prob,
        attention_probs_dropout_prob=self.attention_probs_dropout_prob,
        type_vocab_size=self.type_vocab_size,
        layer_norm_eps=self.layer_norm_eps,
        classifier_dropout=self.classifier_dropout,
      )
    out["model_type"] = self.model_type
    out["architectures"] = [self.architecture()]
    if self.num_labels > 0:
      out["id2label"] = {str(k): v for k, v in self.id2label.items()}
      out["label2id"] = dict(self.label2id)
    if self.problem_type is not None:
      out["problem_type"] = self.problem_type
    return dict(sorted(out.items()))
