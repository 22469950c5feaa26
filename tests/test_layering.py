"""The package's import graph: no cycles, and no module imports from a layer above its own.

Layers are folders, top to bottom (README "Layout" draws the same):

  main, predict, benchmark, sweep   the commands (python -m rail_kd_jax.<command>)
  experiments/                      demo, study, sweep, benchmark: applications built on training
  training/                         building a run, the step, the loop, checkpoints, the teacher cache
  outputs/                          metric writers, task metrics, plots, statistics, model cards
  data/, models/, distill/          the library
  core/                             defaults, errors, checks, files

A module may import its own layer or any layer below. Imports inside functions are
allowed only where listed in IN_FUNCTION (each with its reason); never to dodge a cycle.
No module above MAX_LINES lines, and no module at the package root but the commands.
"""

import ast
import os


PACKAGE = "rail_kd_jax"
ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), PACKAGE)
LAYERS = (
  ("main", "predict", "benchmark", "sweep"),
  ("experiments",),
  ("training",),
  ("outputs",),
  ("data", "models", "distill"),
  ("core",),
)
COMMANDS = ("main", "predict", "benchmark", "sweep")  # the only modules at the package root
MAX_LINES = 500
# (importing module, imported module) pairs allowed inside a function, and why.
IN_FUNCTION = {
  # `--help` and flag errors answer before JAX is imported.
  ("main", "training.parallel"): "fast --help",
  ("main", "training.train"): "fast --help",
  ("main", "core.errors"): "fast --help",
  ("main", "experiments.demo"): "fast --help",
  ("main", "experiments.study"): "fast --help",
  ("main", "distill.methods"): "fast --help",
  ("main", "training.workdir_lock"): "fast --help",
  # torch is optional: the peers are imported only when a peer row runs.
  ("experiments.benchmark.sections", "experiments.benchmark.peers.torch_peer"): "torch is optional",
  ("experiments.benchmark.sections", "experiments.benchmark.peers.textbrewer_peer"): "torch is optional",
  ("experiments.benchmark.workload", "experiments.benchmark.peers.torch_peer"): "torch is optional",
  ("experiments.benchmark.workload", "experiments.benchmark.peers.textbrewer_peer"): "torch is optional",
  # Each method family's PyTorch loss (for the peer) imports the shared torch terms in itself.
  ("distill.methods.kd", "distill.methods.torch_terms"): "torch is optional",
  ("distill.methods.pkd", "distill.methods.torch_terms"): "torch is optional",
  ("distill.methods.alp_kd", "distill.methods.torch_terms"): "torch is optional",
  ("distill.methods.ckd", "distill.methods.torch_terms"): "torch is optional",
  ("distill.methods.rail", "distill.methods.torch_terms"): "torch is optional",
}


def _modules():
  """{dotted module name below the package: (path, is_package)}."""
  out = {}
  for dirpath, _, files in os.walk(ROOT):
    for f in files:
      if f.endswith(".py"):
        rel = os.path.relpath(os.path.join(dirpath, f), ROOT)[:-3].replace(os.sep, ".")
        is_pkg = rel.endswith("__init__") or rel == "__init__"
        name = rel[: -len(".__init__")] if rel.endswith(".__init__") else ("" if rel == "__init__" else rel)
        out[name] = (os.path.join(dirpath, f), is_pkg)
  return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
  """'rail_kd_jax.distill.methods.METHODS' -> 'distill.methods' (the longest module prefix)."""
  if not name.startswith(PACKAGE):
    return None
  parts = name.split(".")[1:]
  for k in range(len(parts), -1, -1):
    cand = ".".join(parts[:k])
    if cand in MODULES:
      return cand
  return None


def _imports(module: str):
  """[(imported module, inside a function?)] of one module (the package's own imports only)."""
  path, is_pkg = MODULES[module]
  tree = ast.parse(open(path).read(), path)
  found = []

  def visit(node, in_function):
    for child in ast.iter_child_nodes(node):
      inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
      names = []
      if isinstance(child, ast.Import):
        names = [a.name for a in child.names]
      elif isinstance(child, ast.ImportFrom):
        if child.level:
          base = [PACKAGE] + (module.split(".") if module else [])
          base = base if is_pkg else base[:-1]
          base = base[: len(base) - (child.level - 1)]
          prefix = ".".join(base + ([child.module] if child.module else []))
        else:
          prefix = child.module or ""
        # `from pkg import sub` imports the module pkg.sub; `from mod import name`, mod.
        names = [
          f"{prefix}.{a.name}" if _resolve(f"{prefix}.{a.name}") == f"{prefix}.{a.name}"[len(PACKAGE) + 1 :] else prefix
          for a in child.names
        ]
      for n in names:
        target = _resolve(n)
        if target is not None and target != module:
          found.append((target, in_function))
      visit(child, inside)

  visit(tree, False)
  return sorted(set(found))


def _layer(module: str) -> int:
  top = module.split(".")[0]
  for i, names in enumerate(LAYERS):
    if top in names:
      return i
  raise AssertionError(f"{PACKAGE}.{module} is in no layer: add it to LAYERS (and to README's Layout)")


GRAPH = {m: _imports(m) for m in MODULES if m}


def test_every_module_has_a_layer():
  for m in GRAPH:
    _layer(m)


def test_only_commands_at_the_package_root():
  """Everything else lives in the folder of its layer."""
  root = sorted(m for m, (_, is_pkg) in MODULES.items() if m and "." not in m and not is_pkg)
  assert root == sorted(COMMANDS), (
    f"modules at the package root that are not commands: {sorted(set(root) - set(COMMANDS))}"
  )


def test_no_module_above_the_line_limit():
  long = {
    m or "__init__": n for m, (path, _) in MODULES.items() if (n := len(open(path).read().splitlines())) > MAX_LINES
  }
  assert not long, f"modules above {MAX_LINES} lines (split them by concern): {long}"


def test_no_upward_import():
  bad = upward_imports(GRAPH)
  assert not bad, "\n".join(bad)


def test_every_listed_in_function_import_is_used():
  used = {(m, t) for m, deps in GRAPH.items() for t, inner in deps if inner}
  assert set(IN_FUNCTION) <= used, sorted(set(IN_FUNCTION) - used)


def test_in_function_imports_only_where_listed():
  bad = [
    f"{m} imports {t} inside a function"
    for m, deps in GRAPH.items()
    for t, inner in deps
    if inner and (m, t) not in IN_FUNCTION
  ]
  assert not bad, "\n".join(bad)


def find_cycle(edges: dict) -> list | None:
  """One import cycle of the graph {module: [imported modules]} as a path, or None."""
  state, stack = {}, []

  def dfs(m):
    state[m] = 1
    stack.append(m)
    for t in edges.get(m, ()):
      if state.get(t) == 1:
        return stack[stack.index(t) :] + [t]
      if t not in state:
        found = dfs(t)
        if found:
          return found
    stack.pop()
    state[m] = 2
    return None

  for m in sorted(edges):
    if m not in state:
      found = dfs(m)
      if found:
        return found
  return None


def upward_imports(graph: dict) -> list[str]:
  return [
    f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
    for m, deps in graph.items()
    for t, _ in deps
    if _layer(t) < _layer(m)
  ]


def test_no_import_cycle():
  edges = {m: sorted({t for t, _ in deps if t in GRAPH}) for m, deps in GRAPH.items()}
  cycle = find_cycle(edges)
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checks_catch_a_cycle_and_an_upward_import():
  assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
  assert upward_imports({"data.loader": [("training.train", False)]}) == [
    "data.loader (layer 4) imports training.train (layer 2)"
  ]
  assert upward_imports({"training.train": [("data.loader", False)]}) == []
