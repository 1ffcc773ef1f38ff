"""Makes sure `tf.keras` is Keras 2 (tf_keras), which TFRS 0.7.x needs.

Every top-level package sets `TF_USE_LEGACY_KERAS=1` (with `setdefault`) before TensorFlow is first
imported and then calls `check_legacy_keras()`, which fails with a clear ImportError when `tf.keras`
is Keras 3 anyway (for example because TensorFlow was imported before the variable was set).
"""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

PACKAGES = ("features", "model", "trainers", "export", "benchmarks")


def launched_as_job() -> bool:
  """True when this process is `python -m <one of the project's packages>.<module>`."""
  argv = list(getattr(sys, "orig_argv", ()))
  if "-m" not in argv[:-1]:
    return False
  return argv[argv.index("-m") + 1].split(".")[0] in PACKAGES


def configure() -> None:
  """What every package's `__init__` does: Keras 2 for tf.keras, and, only in a process launched as
  one of the project's jobs, TensorFlow's C++ INFO/WARNING start-up lines off (before TensorFlow
  loads). Importing the project from user code leaves the user's logging settings alone."""
  if launched_as_job():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  check_legacy_keras()


def check_legacy_keras() -> None:
  """Raises ImportError unless `tf.keras` resolves to tf_keras (Keras 2).

  Raises:
    ImportError: if `tf.keras` is Keras 3.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  module = tf.keras.layers.Layer.__module__
  if not module.startswith("tf_keras"):
    raise ImportError(
      "This project needs Keras 2 (the tf-keras package): TFRS 0.7 does not support Keras 3. "
      "Set TF_USE_LEGACY_KERAS=1 before TensorFlow is first imported and install "
      f"tf-keras==2.21.0. Received: tf.keras.layers.Layer from {module!r}."
    )
