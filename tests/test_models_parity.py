"""Numerical parity of the Flax encoders with transformers' PyTorch models."""

import json
import os

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from rail_kd_jax import models  # noqa: E402

TOL = 1e-4
SENTENCES = [
  "The quick brown fox jumps over the lazy dog.",
  "Hello!",
  "Knowledge distillation compresses a large teacher into a small student, using randomly chosen intermediate layers.",
  "It's not a bad film, but the ending drags on far too long.",
]


def _torch_hidden(model, batch):
  with torch.no_grad():
    out = model(**{k: torch.tensor(v) for k, v in batch.items()}, output_hidden_states=True)
  hidden = np.stack([h.numpy() for h in out.hidden_states])
  logits = out.logits.numpy() if hasattr(out, "logits") else None
  return hidden, logits


def _apply(model, params, batch):
  out = jax.jit(model.apply)(
    {"params": params}, batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
  )
  logits = None if out.logits is None else np.asarray(out.logits)
  return np.asarray(out.hidden_states), logits


def test_minilm_hidden_states_match_pytorch(minilm_path):
  tok = transformers.AutoTokenizer.from_pretrained(minilm_path)
  batch = dict(tok(SENTENCES, padding=True, return_tensors="np"))
  assert (batch["attention_mask"] == 0).any(), "the batch must contain padding"
  ref_model = transformers.BertModel.from_pretrained(minilm_path).eval()
  ref, _ = _torch_hidden(ref_model, batch)

  model, params = models.load_pretrained(minilm_path)
  assert model.config.num_labels == 0
  hidden, logits = _apply(model, params, batch)
  assert logits is None
  assert hidden.shape == (7, len(SENTENCES), batch["input_ids"].shape[1], 384)
  assert hidden.dtype == np.float32
  err = np.abs(hidden - ref)
  real = batch["attention_mask"].astype(bool)
  # Every layer, every position (pads included).
  assert err.max() < TOL, err.max(axis=(1, 2, 3))
  assert err[:, real].max() < 1e-5


def _tiny(family, num_labels, seed=0):
  """A tiny random HF sequence classifier of `family`, with larger-than-default weights so
  that differences are not hidden by LayerNorm."""
  torch.manual_seed(seed)
  common = dict(vocab_size=97, max_position_embeddings=40, initializer_range=0.2, num_labels=num_labels)
  if family == "bert":
    cfg = transformers.BertConfig(
      hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, **common
    )
    cls = transformers.BertForSequenceClassification
  elif family == "roberta":
    cfg = transformers.RobertaConfig(
      hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, hidden_act="gelu_new", **common
    )
    cls = transformers.RobertaForSequenceClassification
  else:
    cfg = transformers.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, **common)
    cls = transformers.DistilBertForSequenceClassification
  return cls(cfg).eval()


def _tiny_batch(pad_id, seed=0, with_types=True):
  rng = np.random.default_rng(seed)
  ids = rng.integers(3, 97, size=(3, 9)).astype(np.int64)
  ids[ids == pad_id] = 5
  mask = np.ones_like(ids)
  mask[1, 6:] = 0
  mask[2, 3:] = 0
  ids[mask == 0] = pad_id
  batch = {"input_ids": ids, "attention_mask": mask}
  if with_types:
    types = np.zeros_like(ids)
    types[0, 4:] = 1
    batch["token_type_ids"] = types
  return batch


@pytest.mark.parametrize("family,num_labels", [("bert", 3), ("roberta", 2), ("distilbert", 3), ("roberta", 1)])
def test_tiny_family_matches_pytorch(tmp_path, family, num_labels):
  ref_model = _tiny(family, num_labels)
  ref_model.save_pretrained(tmp_path)
  batch = _tiny_batch(ref_model.config.pad_token_id, with_types=family == "bert")
  ref_hidden, ref_logits = _torch_hidden(ref_model, batch)

  model, params = models.load_pretrained(tmp_path)
  assert model.config.model_type == family
  assert model.config.num_labels == num_labels
  hidden, logits = _apply(model, params, batch)
  assert hidden.shape == ref_hidden.shape == (3, 3, 9, 32)
  assert logits.shape == ref_logits.shape == (3, num_labels)
  assert np.abs(hidden - ref_hidden).max() < TOL
  assert np.abs(logits - ref_logits).max() < TOL
  assert np.abs(ref_logits).max() > 1e-2  # the comparison is not between near-zeros


def test_roberta_positions_follow_padding_idx():
  cfg = models.EncoderConfig(model_type="roberta", pad_token_id=1, vocab_size=10)
  from rail_kd_jax.models.bert import position_ids_for

  ids = np.array([[0, 5, 6, 2, 1, 1], [1, 0, 7, 2, 1, 1]])
  pos = np.asarray(position_ids_for(cfg, ids))
  np.testing.assert_array_equal(pos, [[2, 3, 4, 5, 1, 1], [1, 2, 3, 4, 1, 1]])


def test_bare_checkpoint_without_prefix_and_fresh_head(tmp_path, caplog):
  torch.manual_seed(0)
  cfg = transformers.BertConfig(
    vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
  )
  transformers.BertModel(cfg).save_pretrained(tmp_path)  # keys without "bert." prefix
  model, params = models.load_pretrained(tmp_path)
  assert model.config.num_labels == 0 and "classifier" not in params and "pooler" in params

  with caplog.at_level("INFO"):
    model, params = models.load_pretrained(tmp_path, num_labels=4)
  assert params["classifier"]["kernel"].shape == (32, 4)
  assert "freshly initialised: classifier/kernel, classifier/bias" in caplog.text


def test_pytorch_bin_and_unexpected_keys_are_named(tmp_path, caplog):
  ref_model = _tiny("distilbert", 2)
  sd = {k: v.contiguous() for k, v in ref_model.state_dict().items()}
  sd["vocab_projector.weight"] = torch.zeros(3)  # MLM head: expected, info only
  sd["distilbert.something.odd"] = torch.zeros(2)  # unexpected: warned about
  torch.save(sd, tmp_path / "pytorch_model.bin")
  with open(tmp_path / "config.json", "w") as f:
    json.dump(ref_model.config.to_dict(), f)
  with caplog.at_level("INFO"):
    model, params = models.load_pretrained(tmp_path)
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert any("something.odd" in w for w in warnings)
  assert not any("vocab_projector" in w for w in warnings)
  batch = _tiny_batch(0, with_types=False)
  ref_hidden, ref_logits = _torch_hidden(ref_model, batch)
  hidden, logits = _apply(model, params, batch)
  assert np.abs(logits - ref_logits).max() < TOL


def test_bad_folders_raise_clear_errors(tmp_path):
  with pytest.raises(ValueError, match="config.json"):
    models.load_pretrained(tmp_path)
  with open(tmp_path / "config.json", "w") as f:
    json.dump({"model_type": "gpt2"}, f)
  with pytest.raises(ValueError, match="model_type='gpt2'"):
    models.load_pretrained(tmp_path)
  with open(tmp_path / "config.json", "w") as f:
    json.dump(
      {
        "model_type": "bert",
        "hidden_size": 32,
        "num_attention_heads": 4,
        "num_hidden_layers": 1,
        "intermediate_size": 8,
      },
      f,
    )
  with pytest.raises(ValueError, match="model.safetensors"):
    models.load_pretrained(tmp_path)
  with pytest.raises(ValueError, match="not a directory"):
    models.load_pretrained(os.path.join(tmp_path, "nope"))


def test_config_hf_dict_round_trip():
  d = {
    "model_type": "distilbert",
    "dim": 48,
    "n_layers": 3,
    "n_heads": 4,
    "hidden_dim": 96,
    "activation": "gelu",
    "dropout": 0.05,
    "attention_dropout": 0.0,
    "seq_classif_dropout": 0.3,
    "sinusoidal_pos_embds": False,
    "vocab_size": 100,
    "max_position_embeddings": 64,
    "qa_dropout": 0.1,
    "architectures": ["DistilBertForSequenceClassification"],
    "id2label": {"0": "neg", "1": "pos"},
    "label2id": {"neg": 0, "pos": 1},
  }
  cfg = models.EncoderConfig.from_hf_dict(d)
  assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (48, 3, 96)
  assert cfg.classifier_dropout == 0.3 and cfg.type_vocab_size == 0 and cfg.num_labels == 2
  assert cfg.id2label[1] == "pos"
  back = cfg.to_hf_dict()
  for k, v in d.items():
    assert back[k] == v, k
  hash(cfg)
  with pytest.raises(ValueError, match="hidden_act"):
    models.EncoderConfig(hidden_act="swish")
  with pytest.raises(ValueError, match="divisible"):
    models.EncoderConfig(hidden_size=30, num_attention_heads=4)
