"""Each package's `__all__` names exactly its public modules, and importing the project leaves the
user's TensorFlow logging settings alone."""

import ast
import os
import subprocess
import sys

from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import tf

PACKAGES = ("features", "model", "trainers", "export")


def _declared_all(path):
  """The names in the `__all__ = [...]` of `path`, read with ast (as written, whatever Bazel's
  runfiles put on sys.path)."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  for node in tree.body:
    if isinstance(node, ast.Assign) and any(
      getattr(t, "id", "") == "__all__" for t in node.targets
    ):
      return [ast.literal_eval(e) for e in node.value.elts]
  raise AssertionError(f"{path} has no __all__")


class PackageApiTest(base.TestCase):
  def test_all_lists_the_public_modules(self):
    for package in PACKAGES:
      with self.subTest(package):
        folder = os.path.join(base.ROOT, package)
        modules = sorted(
          name[:-3]
          for name in os.listdir(folder)
          if name.endswith(".py") and not name.startswith("_")
        )
        self.assertEqual(sorted(_declared_all(os.path.join(folder, "__init__.py"))), modules)

  def test_import_keeps_the_users_log_level(self):
    code = "import os, model, trainers; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL', 'unset'))"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run(
      [sys.executable, "-c", code],
      cwd=base.ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=120,
    )
    self.assertEqual(out.stdout.strip().splitlines()[-1], "unset", out.stderr[-2000:])


if __name__ == "__main__":
  tf.test.main()
