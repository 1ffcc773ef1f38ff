"""The import structure: one direction (features -> model -> trainers -> export -> trainers.tfx),
no import circles, and no imports of project modules inside functions (which would hide a circle).

`trainers.tfx` (the TFX component, Trainer module and pipeline) is the orchestration layer above
`export`: its Trainer module writes the serving export, so it may import every package, and no
module outside it may import it (it needs the optional TFX environment). It lives in `trainers/`
because DESIGN.md places the TFX component there.

Reads the source with `ast` (nothing is imported), so it checks every module, including the jobs.
"""

import ast
import os

from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import tf

ORCHESTRATION = "trainers.tfx"
LAYERS = ("features", "model", "trainers", "export", ORCHESTRATION)
PACKAGES = ("features", "model", "trainers", "export", "benchmarks")


def _modules():
  """{module name: path} for every .py file of the project's packages."""
  out = {}
  for package in PACKAGES:
    for root, _, files in os.walk(os.path.join(base.ROOT, package)):
      for name in files:
        if name.endswith(".py"):
          path = os.path.join(root, name)
          rel = os.path.relpath(path, base.ROOT)[: -len(".py")].replace(os.sep, ".")
          out[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
  return out


def _imports(tree, modules):
  """(imported project module, line, inside a function) for every import in `tree`."""
  found = []

  def visit(node, in_function):
    for child in ast.iter_child_nodes(node):
      nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
      if isinstance(child, ast.Import):
        for alias in child.names:
          if alias.name.split(".")[0] in PACKAGES:
            found.append((alias.name, child.lineno, in_function))
      elif isinstance(child, ast.ImportFrom) and child.module:
        if child.module.split(".")[0] in PACKAGES:
          for alias in child.names:
            target = f"{child.module}.{alias.name}"
            found.append((target if target in modules else child.module, child.lineno, in_function))
      visit(child, nested)

  visit(tree, False)
  return found


def import_graph():
  modules = _modules()
  graph, inline = {}, []
  for name, path in modules.items():
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read(), path)
    edges = set()
    for target, line, in_function in _imports(tree, modules):
      if in_function:
        inline.append(f"{name}:{line} imports {target}")
      if target != name:
        edges.add(target)
    graph[name] = edges
  return graph, inline


def layer(module: str) -> str:
  """The layer of a module: its top-level package, or `trainers.tfx` for the orchestration layer."""
  if module == ORCHESTRATION or module.startswith(ORCHESTRATION + "."):
    return ORCHESTRATION
  return module.split(".")[0]


def direction_violations(graph):
  """Every import against the one direction, as "a imports b" (see the module docstring)."""
  wrong = []
  for name, targets in sorted(graph.items()):
    for target in sorted(targets):
      mine, other = layer(name), layer(target)
      if other == ORCHESTRATION and mine != ORCHESTRATION:
        wrong.append(f"{name} imports {target}")
      elif mine in LAYERS and other == "benchmarks":
        wrong.append(f"{name} imports {target}")
      elif mine in LAYERS and other in LAYERS and LAYERS.index(other) > LAYERS.index(mine):
        wrong.append(f"{name} imports {target}")
  return wrong


def find_cycle(graph):
  """One import circle as a list of modules, or None."""
  state, stack = {}, []

  def dfs(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if nxt not in graph:
        continue
      if state.get(nxt) == "open":
        return stack[stack.index(nxt) :] + [nxt]
      if nxt not in state:
        cycle = dfs(nxt)
        if cycle:
          return cycle
    stack.pop()
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = dfs(node)
      if cycle:
        return cycle
  return None


class LayeringTest(base.TestCase):
  def test_finds_a_planted_cycle(self):
    self.assertEqual(find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}), ["a", "b", "c", "a"])
    self.assertIsNone(find_cycle({"a": {"b"}, "b": set()}))

  def test_no_import_circles(self):
    graph, _ = import_graph()
    self.assertGreater(len(graph), 50)
    self.assertIsNone(find_cycle(graph))

  def test_no_project_imports_inside_functions(self):
    _, inline = import_graph()
    self.assertEqual(inline, [])

  def test_finds_planted_direction_violations(self):
    graph = {
      "model.a": {"features.b", "trainers.c"},
      "export.d": {"trainers.tfx.e"},
      "benchmarks.f": {"export.d", "trainers.tfx"},
      "trainers.tfx.e": {"export.d", "features.b", "trainers.c"},
      "trainers.c": {"benchmarks.f"},
    }
    self.assertEqual(
      direction_violations(graph),
      [
        "benchmarks.f imports trainers.tfx",
        "export.d imports trainers.tfx.e",
        "model.a imports trainers.c",
        "trainers.c imports benchmarks.f",
      ],
    )

  def test_one_direction(self):
    graph, _ = import_graph()
    self.assertTrue(any(layer(name) == ORCHESTRATION for name in graph))
    self.assertEqual(direction_violations(graph), [])


if __name__ == "__main__":
  tf.test.main()
