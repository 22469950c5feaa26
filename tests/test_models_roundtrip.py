"""save_pretrained -> transformers (PyTorch) -> load_pretrained, for students of each recipe."""

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from rail_kd_jax import models  # noqa: E402
from rail_kd_jax.models import student  # noqa: E402

TOL = 1e-4


def _batch(pad_id, vocab=97, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(3, vocab, size=(3, 8)).astype(np.int64)
  ids[ids == pad_id] = 4
  mask = np.ones_like(ids)
  mask[1, 5:] = 0
  ids[mask == 0] = pad_id
  return ids, mask


def _check_round_trip(model, params, out_dir):
  """Saved folder loads in PyTorch cleanly, agrees on logits, and loads back identically."""
  models.save_pretrained(model, params, out_dir)
  ref, info = transformers.AutoModelForSequenceClassification.from_pretrained(out_dir, output_loading_info=True)
  assert not info["missing_keys"], info["missing_keys"]
  assert not info["unexpected_keys"], info["unexpected_keys"]
  assert not info["mismatched_keys"], info["mismatched_keys"]
  assert type(ref).__name__ == model.config.architecture()
  ref.eval()

  ids, mask = _batch(model.config.pad_token_id, model.config.vocab_size)
  with torch.no_grad():
    ref_logits = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
  logits = np.asarray(jax.jit(model.apply)({"params": params}, ids, mask).logits)
  assert logits.shape == ref_logits.shape == (3, model.config.num_labels)
  assert np.abs(logits - ref_logits).max() < TOL

  back_model, back = models.load_pretrained(out_dir, scan_layers=model.scan_layers)
  assert back_model.config == model.config
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), back, params)
  assert jax.tree.structure(back) == jax.tree.structure(params)


def test_teacher_layers_student_of_minilm(minilm_path, tmp_path):
  teacher, tparams = models.load_pretrained(minilm_path)
  model, params = student.from_teacher_layers(teacher, tparams, layers=(0, 2, 4), num_labels=2)
  assert model.config.num_hidden_layers == 3
  np.testing.assert_array_equal(
    params["encoder"]["layer_1"]["attention"]["self"]["query"]["kernel"],
    tparams["encoder"]["layer_2"]["attention"]["self"]["query"]["kernel"],
  )
  # The student equals the teacher's layer 0 on the embedding and first layer outputs.
  ids, mask = _batch(0, 1000)
  hs = model.apply({"params": params}, ids, mask).hidden_states
  ht = teacher.apply({"params": tparams}, ids, mask).hidden_states
  np.testing.assert_allclose(hs[:2], ht[:2], atol=1e-6)
  _check_round_trip(model, params, tmp_path / "a")


def _tiny_hf_folder(path, family, num_labels=3, layers=4):
  torch.manual_seed(1)
  common = dict(vocab_size=97, max_position_embeddings=40, initializer_range=0.2, num_labels=num_labels)
  if family == "distilbert":
    cfg = transformers.DistilBertConfig(dim=32, n_layers=layers, n_heads=4, hidden_dim=64, **common)
  else:
    cfg = transformers.AutoConfig.for_model(
      family, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=64, **common
    )
  transformers.AutoModelForSequenceClassification.from_config(cfg).save_pretrained(path)
  return path


@pytest.mark.parametrize("family,scan", [("bert", True), ("roberta", False), ("distilbert", True)])
def test_teacher_layers_student_tiny(tmp_path, family, scan):
  teacher, tparams = models.load_pretrained(_tiny_hf_folder(tmp_path / "t", family), scan_layers=scan)
  model, params = student.from_teacher_layers(teacher, tparams, layers=(1, 3))
  assert model.scan_layers == scan and models.is_scanned(params) == scan
  assert model.config.num_labels == 3
  np.testing.assert_array_equal(
    params["classifier"][next(iter(params["classifier"]))]["kernel"]
    if family == "roberta"
    else params["classifier"]["kernel"],
    tparams["classifier"][next(iter(tparams["classifier"]))]["kernel"]
    if family == "roberta"
    else tparams["classifier"]["kernel"],
  )
  _check_round_trip(model, params, tmp_path / "s")


@pytest.mark.parametrize("family,scan", [("bert", False), ("roberta", True), ("distilbert", False)])
def test_fresh_student(tmp_path, family, scan):
  cfg = models.EncoderConfig(
    model_type=family,
    vocab_size=97,
    hidden_size=24,
    num_hidden_layers=2,
    num_attention_heads=3,
    intermediate_size=48,
    max_position_embeddings=40,
    num_labels=2,
    pad_token_id=1 if family == "roberta" else 0,
    type_vocab_size=0 if family == "distilbert" else 2,
    initializer_range=0.2,
  )
  model, params = student.fresh(cfg, jax.random.PRNGKey(3), scan_layers=scan)
  assert models.is_scanned(params) == scan
  emb = np.asarray(params["embeddings"]["word_embeddings"]["embedding"])
  assert np.all(emb[cfg.pad_token_id] == 0) and 0.15 < emb.std() < 0.25
  ln = params["embeddings"]["LayerNorm"]
  assert np.all(np.asarray(ln["scale"]) == 1) and np.all(np.asarray(ln["bias"]) == 0)
  _check_round_trip(model, params, tmp_path / "b")


def test_pretrained_student_regression(tmp_path):
  folder = _tiny_hf_folder(tmp_path / "c", "distilbert", num_labels=1, layers=2)
  model, params = student.from_pretrained(folder)
  assert model.config.is_regression
  _check_round_trip(model, params, tmp_path / "c2")


def test_bare_encoder_saves_as_base_model(minilm_path, tmp_path):
  model, params = models.load_pretrained(minilm_path)
  small, sparams = student.from_teacher_layers(model, params, layers=(5,))
  models.save_pretrained(small, sparams, tmp_path)
  ref, info = transformers.AutoModel.from_pretrained(tmp_path, output_loading_info=True)
  assert type(ref).__name__ == "BertModel"
  assert not info["missing_keys"] and not info["unexpected_keys"]


def test_layout_helpers_round_trip():
  cfg = models.EncoderConfig(
    vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32
  )
  plain = models.init_params(models.Encoder(cfg), jax.random.PRNGKey(0))
  scanned = models.stack_layers(plain)
  assert scanned["encoder"]["layer"]["intermediate"]["dense"]["kernel"].shape == (3, 16, 32)
  assert models.is_scanned(scanned) and not models.is_scanned(plain)
  back = models.unstack_layers(scanned)
  jax.tree.map(np.testing.assert_array_equal, back, plain)
  assert models.convert_layout(scanned, scan_layers=True) is not None


def test_student_errors():
  cfg = models.EncoderConfig(
    vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32
  )
  teacher = models.Encoder(cfg)
  params = models.init_params(teacher, jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match=r"layers\[1\]=3 is out of range .* 3 layers"):
    student.from_teacher_layers(teacher, params, layers=(0, 3))
  with pytest.raises(ValueError, match="empty"):
    student.from_teacher_layers(teacher, params, layers=())
  with pytest.raises(ValueError, match="hidden_size"):
    student.from_teacher_layers(teacher, params, layers=(0,), hidden_size=8)
  with pytest.raises(ValueError, match="unknown override 'colour'"):
    student.fresh(cfg, jax.random.PRNGKey(0), colour="red")
  bad = dict(params, distill_head={"kernel": np.zeros((2, 2))})
  with pytest.raises(ValueError, match="distill_head"):
    models.save_pretrained(teacher, bad, "/tmp/unused_rail_kd_models_test")
