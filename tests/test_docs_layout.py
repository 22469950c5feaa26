"""README's Layout section is the package as it is: every module, by layer, with the first
line of its docstring.

After adding, moving or re-describing a module, rewrite the section with
  RAIL_KD_WRITE_LAYOUT=1 .venv/bin/python -m pytest tests/test_docs_layout.py
"""

import ast
import os

from test_layering import LAYERS, MODULES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
START, END = "<!-- layout:start -->", "<!-- layout:end -->"
LAYER_NAMES = ("commands", "experiments", "training", "outputs", "library", "core")
OTHER = [
  ("configs/", "ml_collections configs: tiny.py, local.py, glue.py, demo.py, study.py (`get_config(arg)`)"),
  ("launch/", "setup.sh (the .venv), local.sh, gpu_node.sh, tpu_pod.sh, sweep/"),
  ("tests/", "pytest suite (tests/test_layering.py checks the layers above)"),
  ("docs/", "one page per topic (methods, data, checkpoints, benchmark, study, errors, ...)"),
]


def _first_line(path: str) -> str:
  doc = ast.get_docstring(ast.parse(open(path).read())) or ""
  return doc.strip().splitlines()[0] if doc.strip() else ""


def render() -> str:
  lines = ["```", "rail_kd_jax/            layers top to bottom; a module imports only its own layer or lower"]
  for name, layer in zip(LAYER_NAMES, LAYERS):
    lines.append(f"  [{name}]")
    for top in layer:
      entries = sorted(m for m in MODULES if m == top or m.startswith(top + "."))
      for m in entries:
        path, is_pkg = MODULES[m]
        shown = m.replace(".", "/") + ("/" if is_pkg else ".py")
        depth = m.count(".")
        lines.append(f"    {'  ' * depth}{shown:<{34 - 2 * depth}} {_first_line(path)}")
  for path, text in OTHER:
    lines.append(f"{path:<24}{text}")
  lines.append("```")
  return "\n".join(lines)


def test_readme_layout_is_the_package():
  text = open(README).read()
  assert START in text and END in text, f"README.md needs the markers {START} ... {END}"
  head, rest = text.split(START, 1)
  _, tail = rest.split(END, 1)
  want = f"{START}\n{render()}\n{END}"
  if os.environ.get("RAIL_KD_WRITE_LAYOUT"):
    with open(README, "w") as f:
      f.write(head + want + tail)
  assert f"{START}{rest.split(END, 1)[0]}{END}" == want, (
    "README.md's Layout section differs from the package; rewrite it with RAIL_KD_WRITE_LAYOUT=1 (see this file)"
  )


def test_every_path_named_in_the_layout_exists():
  for m, (path, _) in MODULES.items():
    assert os.path.isfile(path), m
  for path, _ in OTHER:
    assert os.path.isdir(os.path.join(ROOT, path)), path
