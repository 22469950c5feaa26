"""A tiny, learnable 2-class text task with its own WordPiece tokenizer, for tests and smoke runs.

Each sentence mixes neutral filler words with a few sentiment keywords; the label
is the side with more keywords (1 = positive). A bag-of-words classifier solves it
and a 2-layer, 32-wide encoder learns it in a few hundred steps.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os

import numpy as np

from rail_kd_jax.core import files

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
POSITIVE = (
  "good",
  "great",
  "fine",
  "superb",
  "lovely",
  "bright",
  "warm",
  "happy",
  "joyful",
  "brilliant",
  "charming",
  "clever",
  "vivid",
  "sweet",
  "gentle",
  "calm",
  "fresh",
  "noble",
  "kind",
  "witty",
)
NEGATIVE = (
  "bad",
  "awful",
  "poor",
  "dull",
  "grim",
  "cold",
  "sad",
  "boring",
  "bleak",
  "clumsy",
  "weak",
  "harsh",
  "sour",
  "dim",
  "flat",
  "gloomy",
  "murky",
  "stale",
  "rough",
  "bitter",
)
FILLER = (
  "the",
  "a",
  "this",
  "that",
  "movie",
  "film",
  "story",
  "plot",
  "actor",
  "scene",
  "music",
  "it",
  "was",
  "is",
  "and",
  "but",
  "with",
  "very",
  "quite",
  "really",
  "some",
  "of",
  "in",
  "on",
  "for",
  "by",
  "an",
  "its",
  "cast",
  "ending",
  "script",
  "show",
  "day",
  "night",
  "time",
  "place",
  "people",
  "book",
  "song",
  "line",
)
NOUNS = ("movie", "film", "story", "plot", "actor", "scene", "song", "line", "book")
PUNCT = (".", ",")
SUFFIXES = ("##s",)  # 'movies' -> movie ##s: the tokenizer really splits words.
LABEL_NAMES = ("negative", "positive")
_VERSION = 1


@dataclasses.dataclass(frozen=True)
class TinyDataset:
  """Paths of a generated tiny dataset."""

  data_dir: str
  train_file: str
  dev_file: str
  test_file: str
  tokenizer_dir: str
  vocab_size: int
  label_names: tuple[str, ...] = LABEL_NAMES


def vocabulary() -> list[str]:
  """The tokenizer's vocabulary, in id order ([PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4)."""
  return list(SPECIAL_TOKENS) + list(FILLER) + list(POSITIVE) + list(NEGATIVE) + list(PUNCT) + list(SUFFIXES)


def _sentence(rng: np.random.Generator, label: int) -> str:
  own, other = (POSITIVE, NEGATIVE) if label == 1 else (NEGATIVE, POSITIVE)
  n_own = int(rng.integers(1, 4))
  n_other = int(rng.integers(0, n_own))
  n_fill = int(rng.integers(4, 17))
  words = [own[i] for i in rng.integers(0, len(own), n_own)] + [other[i] for i in rng.integers(0, len(other), n_other)]
  for _ in range(n_fill):
    w = FILLER[int(rng.integers(0, len(FILLER)))]
    if w in NOUNS and rng.random() < 0.3:
      w += "s"
    words.append(w)
  words = [words[i] for i in rng.permutation(len(words))]
  if rng.random() < 0.5:
    words[0] = words[0].capitalize()  # the tokenizer lower-cases.
  return " ".join(words) + ("." if rng.random() < 0.7 else "")


def _write_csv(path: str, rows) -> None:
  fd, tmp = files.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
  with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
    w = csv.writer(f)
    w.writerow(["text", "label"])
    w.writerows(rows)
  os.replace(tmp, path)


def build_tokenizer(vocab: list[str], out_dir: str):
  """A BERT-style uncased WordPiece tokenizer over `vocab`, saved with save_pretrained."""
  from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors  # pylint: disable=g-import-not-at-top,g-multiple-import
  from transformers import BertTokenizerFast  # pylint: disable=g-import-not-at-top

  ids = {w: i for i, w in enumerate(vocab)}
  wp = Tokenizer(models.WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
  wp.normalizer = normalizers.BertNormalizer(
    lowercase=True, strip_accents=None, clean_text=True, handle_chinese_chars=True
  )
  wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  wp.post_processor = processors.TemplateProcessing(
    single="[CLS] $A [SEP]",
    pair="[CLS] $A [SEP] $B:1 [SEP]:1",
    special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
  )
  wp.decoder = decoders.WordPiece(prefix="##")
  tok = BertTokenizerFast(
    tokenizer_object=wp,
    unk_token="[UNK]",
    sep_token="[SEP]",
    pad_token="[PAD]",
    cls_token="[CLS]",
    mask_token="[MASK]",
    do_lower_case=True,
    model_max_length=512,
  )
  os.makedirs(out_dir, exist_ok=True)
  tok.save_pretrained(out_dir)
  # vocab.txt too, for tools that build a slow BERT tokenizer from it.
  with open(os.path.join(out_dir, "vocab.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(vocab) + "\n")
  return tok


def make_tiny_dataset(out_dir: str, num_train: int = 512, num_eval: int = 128, seed: int = 0) -> TinyDataset:
  """Writes train.csv / dev.csv / test.csv (columns text,label) and tokenizer/ under out_dir.

  Idempotent: a folder already generated with the same arguments is reused as is.
  Returns the paths and the vocabulary size (< 200).
  """
  out_dir = os.path.abspath(os.path.expanduser(out_dir))
  vocab = vocabulary()
  result = TinyDataset(
    data_dir=out_dir,
    train_file=os.path.join(out_dir, "train.csv"),
    dev_file=os.path.join(out_dir, "dev.csv"),
    test_file=os.path.join(out_dir, "test.csv"),
    tokenizer_dir=os.path.join(out_dir, "tokenizer"),
    vocab_size=len(vocab),
  )
  info_path = os.path.join(out_dir, "info.json")
  info = {
    "version": _VERSION,
    "num_train": num_train,
    "num_eval": num_eval,
    "seed": seed,
    "vocab_size": len(vocab),
    "label_names": list(LABEL_NAMES),
  }
  if os.path.isfile(info_path):
    with open(info_path, encoding="utf-8") as f:
      if json.load(f) == info and all(
        os.path.exists(p)
        for p in (
          result.train_file,
          result.dev_file,
          result.test_file,
          os.path.join(result.tokenizer_dir, "tokenizer.json"),
        )
      ):
        return result
  os.makedirs(out_dir, exist_ok=True)
  rng = np.random.default_rng(seed)
  for path, n in ((result.train_file, num_train), (result.dev_file, num_eval), (result.test_file, num_eval)):
    labels = rng.permutation(np.arange(n) % 2)  # balanced classes
    _write_csv(path, [(_sentence(rng, int(y)), int(y)) for y in labels])
  build_tokenizer(vocab, result.tokenizer_dir)
  fd, tmp = files.mkstemp(dir=out_dir, suffix=".tmp")
  with os.fdopen(fd, "w", encoding="utf-8") as f:
    json.dump(info, f, indent=1)
  os.replace(tmp, info_path)
  return result
