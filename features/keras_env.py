"""Makes sure `tf.keras` is Keras 2 (tf_keras), which TFRS 0.7.x needs.

Every top-level package sets `TF_USE_LEGACY_KERAS=1` (with `setdefault`) before TensorFlow is first
imported and then calls `check_legacy_keras()`, which fails with a clear ImportError when `tf.keras`
is Keras 3 anyway (for example because TensorFlow was imported before the variable was set).
"""

import atexit
import os
import sys
import threading

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

PACKAGES = ("features", "model", "trainers", "export", "benchmarks")
_configured = False


def launched_as_job() -> bool:
  """True when this process is `python -m <one of the project's packages>.<module>`."""
  argv = list(getattr(sys, "orig_argv", ()))
  if "-m" not in argv[:-1]:
    return False
  return argv[argv.index("-m") + 1].split(".")[0] in PACKAGES


# TensorFlow's native start-up lines on a machine without a GPU: noise in a job's console. They are
# printed before TensorFlow's logging is initialised, so TF_CPP_MIN_LOG_LEVEL does not hide them.
NATIVE_NOISE = (
  b"All log messages before absl::InitializeLog() is called",
  b"oneDNN custom operations are on",
  b"cudart_stub.cc",
  b"cuda_platform.cc",
  b"failed call to cuInit",
  b"cpu_feature_guard.cc",
  b"To enable the following instructions",
  b"Unable to register cu",
  b"computation_placer.cc",
)


def filter_native_stderr(patterns=NATIVE_NOISE) -> None:
  """Drops native (C++) stderr lines that contain one of `patterns`; Python's own `sys.stderr`
  keeps writing straight to the terminal, so error messages are never held back or lost."""
  saved = os.dup(2)
  sys.stderr.flush()
  sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
  read_end, write_end = os.pipe()
  os.dup2(write_end, 2)
  os.close(write_end)

  def pump():
    with os.fdopen(read_end, "rb") as source, os.fdopen(saved, "wb", buffering=0) as sink:
      for line in source:
        if not any(p in line for p in patterns):
          sink.write(line)

  thread = threading.Thread(target=pump, name="native-stderr-filter", daemon=True)
  thread.start()

  def close():
    os.dup2(sys.stderr.fileno(), 2)  # Closes the pipe's write end: the pump sees EOF.
    thread.join(timeout=2.0)

  atexit.register(close)


def configure() -> None:
  """What every package's `__init__` does: Keras 2 for tf.keras, and, only in a process launched as
  one of the project's jobs (and not with --debug), TensorFlow's start-up noise off. Importing the
  project from user code leaves the user's logging and stderr alone."""
  global _configured
  if launched_as_job() and not _configured and "--debug" not in sys.argv:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    filter_native_stderr()
  _configured = True
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
