"""The project's one test base class."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from absl.testing import parameterized  # noqa: E402

# The shared ml-latest-small copy: $SEMANTIC_IDS_SHARED_DATA when set (scripts/bazel_test.sh sets
# it), else ../shared/data next to the repository. realpath() sees through Bazel's runfiles links.
SHARED_DATA = os.environ.get("SEMANTIC_IDS_SHARED_DATA") or os.path.normpath(
  os.path.join(
    os.path.dirname(os.path.realpath(__file__)), "..", "..", "shared", "data", "ml-latest-small"
  )
)


class TestCase(tf.test.TestCase, parameterized.TestCase):
  """`tf.test.TestCase` + `parameterized.TestCase`, with a fresh Keras session per test."""

  def setUp(self):
    super().setUp()
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(0)
