"""The project's one test base class."""

import json
import os
import subprocess
import sys
import tempfile

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


def run_module_probes(module: str, *probes, timeout: int = 600):
  """`run_module(module, *args)` for each `args` in `probes`, all in ONE fresh interpreter.

  `tests/cli_probes.py` runs them one after another, each through the module's own `__main__`
  block with the flags reset, and catches each one's exit status, stdout and stderr: what a
  process per probe would give, for the price of one TensorFlow import. Use it for probes that
  fail before the job does any work; a job that trains or writes gets `run_module`.

  Returns:
    One CompletedProcess per probe, in order.
  """
  with tempfile.TemporaryDirectory() as work:
    output = os.path.join(work, "probes.json")
    probes = [list(args) for args in probes]
    driver = run_module("tests.cli_probes", module, json.dumps(probes), output, timeout=timeout)
    if driver.returncode != 0 or not os.path.exists(output):
      raise AssertionError(f"The probes of {module} did not run:\n{driver.stdout}\n{driver.stderr}")
    with open(output, encoding="utf-8") as f:
      results = json.load(f)
  return [
    subprocess.CompletedProcess(
      [sys.executable, "-m", module, *args], r["returncode"], r["stdout"], r["stderr"]
    )
    for args, r in zip(probes, results)
  ]


class TestCase(tf.test.TestCase, parameterized.TestCase):
  """`tf.test.TestCase` + `parameterized.TestCase`, with a fresh Keras session per test."""

  # tf.test.TestCase's deprecated `test_session` context manager is not a test; without this,
  # pytest collects it in every class and reports it as a skip ("Not a test.").
  test_session = None

  def setUp(self):
    super().setUp()
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(0)
