"""Hostile data files: each one loads as documented, skips rows with a counted warning, or stops
with one sentence that names the file and the line, before anything is tokenized.

CASES is also the "Data files" table of docs/ERRORS.md (rendered by tests/test_validation.py).
"""

import json
import logging
import os
from typing import NamedTuple

import pytest

from rail_kd_jax.core import defaults
from rail_kd_jax.data import loader, synthetic, tasks, tokenize

LONG = "word " * 39_999 + "words"  # 200,000 characters: over csv's default field limit of 131,072.


class Case(NamedTuple):
  id: str
  input: str  # the file, as docs/ERRORS.md describes it
  name: str  # file name; the train file, or the test file when split == "test"
  data: bytes
  error: str = ""  # a substring of the one-sentence error
  warning: str = ""  # a substring of the one counted-skip warning
  texts: tuple = ()  # the split's texts after loading
  labels: tuple | None = ()  # its labels; None: unlabelled
  config: dict | None = None  # data config overrides
  split: str = "train"


def _jsonl(*rows) -> bytes:
  return "".join(json.dumps(r) + "\n" for r in rows).encode()


CASES = [
  Case(
    "csv_unclosed_quote",
    "CSV whose line 3 opens a quote that is never closed",
    "train.csv",
    b'text,label\nfine,1\n"never closed,0\nmore,1\nlast,0\n',
    error="the record starting at line 3 opens a quote that is never closed",
  ),
  Case(
    "csv_quote_then_text",
    'CSV field `"Hi" she said` (a quoted part followed by more text)',
    "train.csv",
    b'text,label\n"Hi" she said,1\nok,0\n',
    texts=("Hi she said", "ok"),
    labels=(1, 0),
  ),
  Case(
    "csv_quote_closes_later_then_text",
    'CSV whose line 3 opens a quote that closes on line 4 followed by more text (`"great" movie,0`)',
    "train.csv",
    b'text,label\nfine,1\n"I loved it,1\n"great" movie,0\nlast,0\n',
    error="the record starting at line 3 opens a quote that closes on line 4 and is followed by more text",
  ),
  Case(
    "csv_quote_spans_wrong_width",
    "CSV whose line 3 opens a quote that closes at a field's end on line 4, one field too many",
    "train.csv",
    b'text,label\nfine,1\n"I loved it,1\nbad movie",0,extra\nlast,0\n',
    error="the record at lines 3-4 is one quoted text over several lines with 3 fields where the header has 2",
  ),
  Case(
    "csv_quote_spans_whole_row",
    "CSV whose line 3 opens a quote that closes at a field's end on line 4 (`bad movie\",0`): valid CSV, "
    "but line 3 alone looks like a row",
    "train.csv",
    b'text,label\nfine,1\n"I loved it,1\nbad movie",0\nlast,0\n',
    warning="1 record(s) hold a quoted text over several lines where a line on its own has the header's 2 fields",
    texts=("fine", "I loved it,1\nbad movie", "last"),
    labels=(1, 0, 0),
  ),
  Case(
    "latin1_csv",
    "CSV in Latin-1 (`café` as byte 0xe9 on line 2)",
    "train.csv",
    "text,label\ncafé au lait,1\nok,0\n".encode("latin-1"),
    error="is not UTF-8: byte 0xe9 at line 2 (byte offset 14)",
  ),
  Case(
    "latin1_jsonl_bom",
    "JSONL with a UTF-8 BOM, then Latin-1 bytes on line 1",
    "train.jsonl",
    b"\xef\xbb\xbf" + '{"text": "café", "label": 1}\n{"text": "ok", "label": 0}\n'.encode("latin-1"),
    error="is not UTF-8: byte 0xe9 at line 1 (byte offset 16)",
  ),
  Case(
    "bom_csv",
    "CSV starting with a UTF-8 BOM",
    "train.csv",
    b"\xef\xbb\xbftext,label\nhello,1\nbye,0\n",
    texts=("hello", "bye"),
    labels=(1, 0),
  ),
  Case(
    "crlf_csv",
    "CSV with Windows line endings (CRLF), label last",
    "train.csv",
    b'text,label\r\nhello,1\r\n"two\r\nlines",0\r\n',
    texts=("hello", "two\r\nlines"),
    labels=(1, 0),
  ),
  Case(
    "crlf_tsv",
    "TSV with CRLF, text last",
    "train.tsv",
    b"label\ttext\r\n1\thello\r\n0\tbye\r\n",
    texts=("hello", "bye"),
    labels=(1, 0),
  ),
  Case(
    "crlf_jsonl",
    "JSONL with CRLF",
    "train.jsonl",
    _jsonl({"text": "hello", "label": "1"}, {"text": "bye", "label": "0"}).replace(b"\n", b"\r\n"),
    texts=("hello", "bye"),
    labels=(1, 0),
  ),
  Case(
    "empty_labels",
    "CSV train file with an empty label on line 3 and `nan` on line 5",
    "train.csv",
    b"text,label\na,1\nb,\nc,0\nd,nan\n",
    error="column 'label' has 2 empty label(s) (first at line 3)",
  ),
  Case(
    "null_label_jsonl",
    'JSONL train file with `"label": null` on line 2, `data.num_labels=2`',
    "train.jsonl",
    _jsonl({"text": "a", "label": 1}, {"text": "b", "label": None}, {"text": "c", "label": 0}),
    error="column 'label' has 1 empty label(s) (first at line 2)",
    config={"num_labels": 2},
  ),
  Case(
    "unlabelled_test",
    "test CSV whose label column is empty in every row",
    "test.csv",
    b"text,label\nx,\ny,\n",
    texts=("x", "y"),
    labels=None,
    split="test",
  ),
  Case(
    "float_labels",
    "CSV labels `1.0`, `0.0`, `1`, `0` (JSON `1.0` alike)",
    "train.csv",
    b"text,label\na,1.0\nb,0.0\nc,1\nd,0\n",
    texts=("a", "b", "c", "d"),
    labels=(1, 0, 1, 0),
  ),
  Case(
    "float_label_half",
    "CSV label `0.5` on line 3 in a classification task",
    "train.csv",
    b"text,label\na,1\nb,0.5\nc,0\n",
    error="holds the non-integer number '0.5' (line 3)",
  ),
  Case(
    "float_label_half_num_labels",
    "the same with `data.num_labels=2`",
    "train.csv",
    b"text,label\na,1\nb,0.5\nc,0\n",
    error="label '0.5' (line 3) is outside the configured classes",
    config={"num_labels": 2},
  ),
  Case(
    "ids_and_names",
    "CSV labels mixing ids and names (`1`, `pos`)",
    "train.csv",
    b"text,label\na,1\nb,pos\n",
    error="mixes class ids ('1', line 2) and names ('pos', line 3)",
  ),
  Case(
    "long_text",
    "CSV text of 200,000 characters (over csv's default field limit)",
    "train.csv",
    f"text,label\n{LONG},1\nshort,0\n".encode(),
    texts=(LONG, "short"),
    labels=(1, 0),
  ),
  Case(
    "empty_texts",
    "CSV train file with an empty text on lines 3 and 4",
    "train.csv",
    b'text,label\na,1\n,0\n"  ",1\nb,0\n',
    warning="2 row(s) with an empty 'text' skipped (first at line 3)",
    texts=("a", "b"),
    labels=(1, 0),
  ),
  Case(
    "empty_texts_test",
    "test CSV with an empty text on line 3",
    "test.csv",
    b"index,text\n0,x\n1,\n2,y\n",
    warning="1 row(s) with an empty 'text' kept as '' so that every test row gets a prediction (first at line 3)",
    texts=("x", "", "y"),
    labels=None,
    split="test",
  ),
  Case(
    "jsonl_broken_line",
    "JSONL whose line 2 is cut off",
    "train.jsonl",
    b'{"text": "a", "label": 1}\n{"text": "b", "label": 0\n{"text": "c", "label": 0}\n',
    error="line 2 is not valid JSON",
  ),
  Case(
    "tsv_header_spaces",
    "TSV header `sentence \\tlabel ` (trailing spaces)",
    "train.tsv",
    b"sentence \tlabel \nhello\t1\nbye\t0\n",
    texts=("hello", "bye"),
    labels=(1, 0),
    config={"text_column": "sentence"},
  ),
  Case(
    "duplicate_column",
    "CSV header `text,label,text`",
    "train.csv",
    b"text,label,text\na,1,b\nc,0,d\n",
    error="names the column(s) ['text'] more than once",
  ),
]

_GOOD_TRAIN = b"text,label\ngood,1\nbad,0\n"


class _Warnings(logging.Handler):
  def __init__(self):
    super().__init__(logging.WARNING)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


def load(case: Case, tmp: str) -> tuple[tasks.Task | None, str, list[str], str]:
  """(task or None, the error message or '', the warnings logged, the file's path) for one case."""
  folder = os.path.join(tmp, case.id)
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, case.name)
  with open(path, "wb") as f:
    f.write(case.data)
  cfg = defaults.data_config()
  cfg.train_file = path
  if case.split == "test":
    cfg.train_file = os.path.join(folder, "train.csv")
    cfg.test_file = path
    with open(cfg.train_file, "wb") as f:
      f.write(_GOOD_TRAIN)
  for k, v in (case.config or {}).items():
    setattr(cfg, k, v)
  handler = _Warnings()
  logging.getLogger().addHandler(handler)
  try:
    return tasks.load_task(cfg), "", handler.messages, path
  except ValueError as e:
    return None, str(e), handler.messages, path
  finally:
    logging.getLogger().removeHandler(handler)


def outcome(case: Case, tmp: str) -> str:
  """What a user sees for the case, for docs/ERRORS.md: the error, the warning, or what loads."""
  task, message, warnings, _ = load(case, tmp)
  if message:
    return message.replace(tmp, "<tmp>")
  hits = [w for w in warnings if case.warning and case.warning in w]
  if hits:
    return f"warning: {hits[0].replace(tmp, '<tmp>')}"
  split = task.splits[case.split]
  texts = [t if len(t) <= 40 else f"<{len(t):,} characters>" for t in split[task.spec.text_columns[0]]]
  labels = split.get(task.spec.label_column)
  return f"loads: texts {texts}, " + (f"labels {labels.tolist()}" if labels is not None else "unlabelled")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_file(case, tmp_path):
  task, message, warnings, path = load(case, str(tmp_path))
  if case.error:
    assert task is None, f"{case.id} loaded"
    assert case.error in message, message
    assert path in message, message
    assert "\n" not in message and "Traceback" not in message and len(message) < 400, message
    return
  assert message == "", message
  ours = [w for w in warnings if path in w]
  if case.warning:
    assert len(ours) == 1 and case.warning in ours[0], warnings
    assert "\n" not in ours[0], ours[0]
  else:
    assert not ours, ours
  split = task.splits[case.split]
  assert tuple(split[task.spec.text_columns[0]]) == case.texts
  if case.labels is None:
    assert task.spec.label_column not in split
  else:
    assert tuple(split[task.spec.label_column].tolist()) == case.labels
    assert task.spec.num_labels == 2 and task.spec.label_names is None


def test_every_case_expects_one_outcome():
  assert len({c.id for c in CASES}) == len(CASES)
  assert all(bool(c.error) != bool(c.texts) for c in CASES)


def test_long_text_encodes_to_max_length(tmp_path):
  case = next(c for c in CASES if c.id == "long_text")
  task, message, _, _ = load(case, str(tmp_path))
  assert message == ""
  tiny = synthetic.make_tiny_dataset(str(tmp_path / "tiny"), num_train=8, num_eval=8)
  tok = tokenize.load_tokenizer(tiny.tokenizer_dir, vocab_size=tiny.vocab_size)
  arrays = loader.encode(task.splits["train"], tok, task.spec, 32)
  assert arrays["input_ids"].shape == (2, 32)
  assert arrays["attention_mask"][0].sum() == 32 and arrays["labels"].tolist() == [1, 0]
