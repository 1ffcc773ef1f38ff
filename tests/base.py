"""The project's one test base class."""

import os
import subprocess
import sys

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


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_module(module: str, *args: str, check: bool = False, timeout: int = 600):
  """Runs `python -m module args...` from the repo root as a user would; returns CompletedProcess.

  With `check`, a non-zero exit raises AssertionError showing the job's stdout and stderr.
  """
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
  result = subprocess.run(
    [sys.executable, "-m", module, *args],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )
  if check and result.returncode != 0:
    raise AssertionError(f"{module} failed:\n{result.stdout}\n{result.stderr}")
  return result


class TestCase(tf.test.TestCase, parameterized.TestCase):
  """`tf.test.TestCase` + `parameterized.TestCase`, with a fresh Keras session per test."""

  # tf.test.TestCase's deprecated `test_session` context manager is not a test; without this,
  # pytest collects it in every class and reports it as a skip ("Not a test.").
  test_session = None

  def setUp(self):
    super().setUp()
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(0)
