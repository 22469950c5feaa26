"""The benchmarked shapes (teacher, student, batch size, length) and their random batches."""

from __future__ import annotations

import dataclasses

import numpy as np

from rail_kd_jax import models

NUM_LABELS = 2


@dataclasses.dataclass(frozen=True)
class Shape:
  """A teacher/student pair (random weights) with its batch size and length."""

  name: str
  teacher: models.EncoderConfig
  student: models.EncoderConfig
  batch_size: int
  length: int

  @property
  def label(self) -> str:
    """'name: type layers x width -> layers x width, bBATCH, TLENGTH', the heading of its table."""
    t, s = self.teacher, self.student
    return (
      f"{self.name}: {t.model_type} {t.num_hidden_layers}x{t.hidden_size} -> "
      f"{s.num_hidden_layers}x{s.hidden_size}, b{self.batch_size}, T{self.length}"
    )


def _bert(num_layers: int, hidden: int, heads: int, ff: int, **kw) -> models.EncoderConfig:
  """A BERT-type EncoderConfig (BERT's vocabulary unless `kw` says otherwise) with NUM_LABELS labels."""
  kw.setdefault("vocab_size", 30522)
  return models.EncoderConfig(
    model_type=kw.pop("model_type", "bert"),
    hidden_size=hidden,
    num_hidden_layers=num_layers,
    num_attention_heads=heads,
    intermediate_size=ff,
    num_labels=NUM_LABELS,
    **kw,
  )


def _roberta(num_layers: int, hidden: int, heads: int, ff: int) -> models.EncoderConfig:
  """A RoBERTa-type EncoderConfig (RoBERTa's vocabulary, padding id and positions)."""
  return _bert(
    num_layers,
    hidden,
    heads,
    ff,
    model_type="roberta",
    vocab_size=50265,
    pad_token_id=1,
    max_position_embeddings=514,
    layer_norm_eps=1e-5,
    type_vocab_size=1,
  )


SHAPES = {
  # Test-sized: 4 -> 2 layers, 32 wide.
  "tiny": Shape(
    "tiny",
    _bert(4, 32, 4, 64, vocab_size=128, max_position_embeddings=64),
    _bert(2, 32, 4, 64, vocab_size=128, max_position_embeddings=64),
    16,
    32,
  ),
  # MiniLM-L6 (all-MiniLM-L6-v2 shape) -> 3 layers.
  "minilm6-3": Shape("minilm6-3", _bert(6, 384, 12, 1536), _bert(3, 384, 12, 1536), 32, 128),
  # BERT-base -> 6 layers of the same width.
  "bert-base-6": Shape("bert-base-6", _bert(12, 768, 12, 3072), _bert(6, 768, 12, 3072), 32, 128),
  # RoBERTa-large -> DistilRoBERTa shape (6 x 768), the paper's main pair.
  "roberta-large-6": Shape("roberta-large-6", _roberta(24, 1024, 16, 4096), _roberta(6, 768, 12, 3072), 32, 128),
}


def with_batch(shape: Shape, batch_size: int = 0, length: int = 0) -> Shape:
  """`shape` with another batch size and/or length (0 keeps its own)."""
  return dataclasses.replace(shape, batch_size=batch_size or shape.batch_size, length=length or shape.length)


def make_batch(shape: Shape, seed: int = 0) -> dict[str, np.ndarray]:
  """Random token ids with real lengths in [T/2, T] (right padding), labels and example mask."""
  rng = np.random.default_rng(seed)
  b, t = shape.batch_size, shape.length
  cfg = shape.teacher
  lo = 5 if cfg.model_type == "roberta" else 1  # above the special/pad ids
  ids = rng.integers(lo, min(cfg.vocab_size, shape.student.vocab_size), size=(b, t)).astype(np.int32)
  lengths = rng.integers(max(2, t // 2), t + 1, size=b)
  mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.int32)
  ids = np.where(mask > 0, ids, cfg.pad_token_id).astype(np.int32)
  return {
    "input_ids": ids,
    "attention_mask": mask,
    "token_type_ids": np.zeros((b, t), np.int32),
    "labels": rng.integers(0, NUM_LABELS, size=b).astype(np.int32),
    "example_mask": np.ones(b, np.float32),
  }
