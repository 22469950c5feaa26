"""Every config file in configs/ builds and validates; configs/glue.py's arg grammar."""

import glob
import importlib.util
import os

import pytest

from rail_kd_jax import models
from rail_kd_jax.training import builders
from rail_kd_jax.core import defaults
from rail_kd_jax.training import train
from rail_kd_jax.data import synthetic
from rail_kd_jax.core.errors import ConfigError
from rail_kd_jax.training.validation import validate_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))
GLUE_FIXTURES = os.path.join(REPO, "tests", "fixtures", "glue")
# A representative arg of every config file (the demo and tiny need none).
ARGS = {
  "glue": ["sst2", "sst2,distill,rail_l,bert", "mnli,kd,roberta", "stsb,runlocal"],
  "local": ["DATA"],
  "demo": ["", "runlocal"],
  "tiny": ["", "shard_map"],
  "study": ["", "quick", "runlocal", "glue/sst2", "glue/mnli,runlocal"],
}
PATH_FIELDS = ("model", "teacher", "student")


def load_config_module(name):
  spec = importlib.util.spec_from_file_location(f"configs_{name}", os.path.join(REPO, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def tiny_assets(tmp_path_factory):
  """A tiny HF model folder (stands in for every model path) and the tiny dataset + tokenizer."""
  root = tmp_path_factory.mktemp("assets")
  data = synthetic.make_tiny_dataset(str(root / "data"))
  config = models.EncoderConfig(
    model_type="bert",
    vocab_size=data.vocab_size,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    num_labels=0,
  )
  import jax

  model, params = models.student.fresh(config, jax.random.PRNGKey(0))
  from rail_kd_jax.data import tokenize

  model_dir = str(root / "model")
  models.save_pretrained(model, params, model_dir, tokenizer=tokenize.load_tokenizer(data.tokenizer_dir))
  return {"model": model_dir, "data": data}


def test_every_config_file_has_args_listed():
  names = {os.path.splitext(os.path.basename(p))[0] for p in CONFIGS}
  assert names <= set(ARGS), f"add the new config files to ARGS: {sorted(names - set(ARGS))}"


@pytest.mark.parametrize("name,arg", [(n, a) for n in ARGS for a in ARGS[n]])
def test_config_builds_and_validates(name, arg, tiny_assets):
  if not os.path.isfile(os.path.join(REPO, "configs", f"{name}.py")):
    pytest.skip(f"configs/{name}.py is not in this checkout")
  arg = arg.replace("DATA", tiny_assets["data"].data_dir)
  config = load_config_module(name).get_config(arg)
  # Every field the config sets exists in the defaults (no typo'd new sections), except the demo's own block.
  base = defaults.base_config()
  for key in config:
    assert key in base or (name in ("demo", "study") and key == name), (
      f"configs/{name}.py:{arg} sets unknown field {key!r}"
    )
  # Model folders come from the command line; stand in the tiny one.
  for field in PATH_FIELDS:
    if config[field].init == "pretrained":
      config[field].path = tiny_assets["model"]
  validate_config(config)
  validate_config(config, num_devices=1)


def test_demo_config_fields():
  demo_mod = load_config_module("demo")
  c = demo_mod.get_config()
  assert c.mode == "demo" and tuple(c.demo.methods) == ("none", "kd", "rail_l")
  assert c.distill.resample_every == "step"  # the demo trains < 1 epoch: per-epoch resampling would fix one mapping
  local = demo_mod.get_config("runlocal")
  assert local.data.max_train_examples > 0
  with pytest.raises(ValueError, match="runlocal"):
    demo_mod.get_config("sst2")


def test_study_config_fields():
  study_mod = load_config_module("study")
  c = study_mod.get_config()
  assert c.mode == "study" and len(c.study.seeds) == 5 and c.study.ood == "tweets"
  assert len(study_mod.get_config("quick").study.seeds) == 3
  g = study_mod.get_config("glue/rte")
  assert (g.study.task, g.data.task, len(g.study.student_layers)) == ("glue", "rte", 6)
  for bad in ("sst2", "glue/", "fast"):
    with pytest.raises(ValueError, match="configs/study.py arg"):
      study_mod.get_config(bad)


@pytest.mark.parametrize(
  "arg,expected",
  [
    ("sst2", ("sst2", "finetune", None, "bert", False)),
    ("sst2,distill,rail_l,bert", ("sst2", "distill", "rail_l", "bert", False)),
    ("sst2,distill", ("sst2", "distill", "rail_l", "bert", False)),
    ("rte,kd,roberta", ("rte", "distill", "kd", "roberta", False)),
    ("MNLI,roberta,finetune", ("mnli", "finetune", None, "roberta", False)),
    ("sts-b,none,runlocal", ("stsb", "distill", "none", "bert", True)),
  ],
)
def test_glue_arg_grammar(arg, expected):
  glue = load_config_module("glue")
  a = glue.parse_arg(arg)
  assert (a["task"], a["mode"], a["method"], a["family"], a["runlocal"]) == expected
  c = glue.get_config(arg)
  assert c.mode == expected[1] and c.data.task == expected[0]
  if expected[1] == "distill":
    assert c.distill.method == expected[2]
    assert c.train.num_epochs == (0 if expected[4] else glue.STUDENT_EPOCHS)
  if not expected[4]:
    assert (c.train.batch_size, c.data.max_length, c.optim.learning_rate) == (32, 128, 2e-5)


@pytest.mark.parametrize(
  "arg,match",
  [
    ("", "needs an arg"),
    ("imdb", "not a GLUE task"),
    ("sst2,banana", "banana"),
    ("sst2,kd,rail_l", "two method tokens"),
    ("sst2,finetune,kd", "needs mode distill"),
    ("sst2,bert,roberta", "two family tokens"),
  ],
)
def test_glue_arg_errors(arg, match):
  glue = load_config_module("glue")
  with pytest.raises(ValueError, match=match):
    glue.get_config(arg)


def _runlocal(family, method, tiny_assets):
  config = load_config_module("glue").get_config(f"sst2,{method},{family},runlocal")
  config.data.data_dir = os.path.join(GLUE_FIXTURES, "SST-2")
  config.data.tokenizer = tiny_assets["data"].tokenizer_dir
  config.train.plots = False
  config.train.export = False
  return config


def test_glue_runlocal_builds_on_the_fixtures(tiny_assets, tmp_path):
  config = _runlocal("bert", "rail_l", tiny_assets)
  run = builders.build_run(config, str(tmp_path), 1)
  assert run.student.config.num_hidden_layers == 2 and run.teacher.config.num_hidden_layers == 4
  assert run.eval_splits == ("validation",) and run.test_splits == ("test",)


@pytest.mark.slow
def test_glue_runlocal_distills_on_the_fixtures(tiny_assets, tmp_path):
  """The runlocal variant of a paper setup trains end to end on the GLUE fixture files."""
  config = _runlocal("roberta", "rail_c", tiny_assets)
  trainer = train.Trainer.create(config, str(tmp_path))
  assert trainer.run.student.config.model_type == "roberta"
  result = trainer.fit()
  assert "validation" in result and 0.0 <= result["validation"]["accuracy"] <= 1.0
  # The unlabelled GLUE test split gets a submission file.
  assert os.path.isfile(os.path.join(tmp_path, "predictions", "SST-2.tsv"))


def test_glue_pretrained_paths_are_required():
  glue = load_config_module("glue")
  config = glue.get_config("sst2,rail_l")
  with pytest.raises(ConfigError, match="teacher.path"):
    validate_config(config)
