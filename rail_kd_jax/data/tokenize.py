"""Loading a tokenizer from a model folder, offline, with a sanity check on its vocabulary."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import weakref
from typing import Any

_TOKENIZER_FILES = (
  "tokenizer.json",
  "vocab.txt",
  "vocab.json",
  "merges.txt",
  "sentencepiece.bpe.model",
  "spiece.model",
  "tokenizer_config.json",
)


def _config_vocab_size(path: str) -> int | None:
  cfg = os.path.join(path, "config.json")
  if not os.path.isfile(cfg):
    return None
  with open(cfg, encoding="utf-8") as f:
    size = json.load(f).get("vocab_size")
  return int(size) if size else None


def load_tokenizer(path: str, vocab_size: int | None = None):
  """`AutoTokenizer.from_pretrained(path)` from a local folder, checked against the model.

  Args:
    path: a folder with tokenizer files (tokenizer.json and/or vocab.txt, ...).
    vocab_size: the model's embedding rows; when None and the folder has a
      config.json, its `vocab_size` is used.

  Raises ValueError when the folder has no tokenizer, when the tokenizer's ids do
  not fit in the model's embedding table, or when its vocabulary is far smaller than
  the model's (the symptom of a fast tokenizer built from `vocab_file=` alone).
  """
  path = os.path.expanduser(str(path))
  if not os.path.isdir(path):
    raise ValueError(f"Tokenizer folder {path!r} does not exist.")
  if not any(os.path.isfile(os.path.join(path, f)) for f in _TOKENIZER_FILES):
    raise ValueError(
      f"Tokenizer folder {path!r} has none of {list(_TOKENIZER_FILES)}; "
      "point at a Hugging Face model or tokenizer folder."
    )
  from transformers import AutoTokenizer  # pylint: disable=g-import-not-at-top

  tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
  if vocab_size is None:
    vocab_size = _config_vocab_size(path)
  check_vocab(tok, vocab_size, where=path)
  return tok


def check_vocab(tokenizer, vocab_size: int | None, where: str = "tokenizer") -> None:
  """Raises ValueError when the tokenizer cannot feed a model with `vocab_size` rows."""
  if tokenizer.pad_token_id is None:
    raise ValueError(f"Tokenizer {where!r} has no pad token; batches need one.")
  if vocab_size is None:
    return
  num_ids = max(tokenizer.get_vocab().values()) + 1
  if num_ids > vocab_size:
    raise ValueError(
      f"Tokenizer {where!r} produces ids up to {num_ids - 1}, beyond the model's "
      f"vocab_size={vocab_size}; the tokenizer belongs to another model."
    )
  if num_ids < vocab_size // 2:
    raise ValueError(
      f"Tokenizer {where!r} has only {num_ids} ids for a model with "
      f"vocab_size={vocab_size}; it was probably built from vocab_file= alone or "
      "from the wrong folder; load the model folder's tokenizer.json."
    )


# tokenizer -> its fingerprint: hashing a 30k-token vocabulary takes ~0.1 s, and every split of
# every run asks (the token cache's key). The package never changes a tokenizer after loading it.
_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def tokenizer_fingerprint(tokenizer: Any) -> str:
  """A hash of everything that decides the tokenizer's output (vocab, rules, specials);
  computed once per tokenizer object."""
  try:
    return _FINGERPRINTS[tokenizer]
  except (KeyError, TypeError):
    pass
  digest = _fingerprint(tokenizer)
  with contextlib.suppress(TypeError):  # an object that cannot be weakly referenced: not kept
    _FINGERPRINTS[tokenizer] = digest
  return digest


def _fingerprint(tokenizer: Any) -> str:
  h = hashlib.sha256()
  h.update(type(tokenizer).__name__.encode())
  backend = getattr(tokenizer, "backend_tokenizer", None)
  if backend is not None and hasattr(backend, "to_str"):
    state = json.loads(backend.to_str())
    # Calling the tokenizer stores its last padding/truncation arguments here.
    state.pop("padding", None)
    state.pop("truncation", None)
    h.update(json.dumps(state, sort_keys=True, ensure_ascii=False).encode())
  else:
    vocab = sorted(tokenizer.get_vocab().items())
    h.update(json.dumps(vocab, ensure_ascii=False).encode())
    h.update(repr(getattr(tokenizer, "do_lower_case", None)).encode())
  specials = {k: str(v) for k, v in sorted(getattr(tokenizer, "special_tokens_map", {}).items())}
  h.update(json.dumps(specials, sort_keys=True).encode())
  h.update(str(getattr(tokenizer, "truncation_side", "right")).encode())
  return h.hexdigest()
