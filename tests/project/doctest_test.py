"""Runs the docstring examples (`>>>`) of every module in features/ and model/."""

import doctest
import importlib
import os

from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import tf

PACKAGES = ("features", "model")


def _module_names():
  for package in PACKAGES:
    for name in sorted(os.listdir(os.path.join(base.ROOT, package))):
      if name.endswith(".py") and name != "__init__.py":
        yield f"{package}.{name[:-3]}"


class DoctestTest(base.TestCase):
  def test_docstring_examples(self):
    attempted = 0
    for name in _module_names():
      module = importlib.import_module(name)
      with self.subTest(name):
        result = doctest.testmod(
          module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
        )
        self.assertEqual(result.failed, 0, f"{result.failed} docstring example(s) fail in {name}")
        attempted += result.attempted
    self.assertGreater(attempted, 10)


if __name__ == "__main__":
  tf.test.main()
