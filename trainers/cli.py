"""How every command-line job starts and fails: `cli.run(main)` instead of `absl.app.run(main)`.

A user error (bad flag value, bad data file, missing or mismatched artifact) ends the job with one
line on stderr that names the problem, and exit status 2; the traceback is shown only with
`--debug`. Log levels are set here, for the jobs, not when the packages are imported (importing the
project leaves the user's own TensorFlow logging alone; `features.keras_env` quiets TensorFlow's C++
start-up lines only in a process launched as one of the project's jobs).
"""

import sys
from typing import Callable, List

import tensorflow as tf
from absl import app, flags, logging

from features import schema
from trainers import run_dir

PROJECT_PACKAGES = ("features", "model", "trainers", "export", "benchmarks")
# Errors that mean "the input is wrong", not "the code is wrong".
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, FileExistsError, schema.SchemaError)

if "debug" not in flags.FLAGS:
  flags.DEFINE_bool("debug", False, "Show the full traceback of a failed job.")
  flags.DEFINE_integer(
    "interrupt_after_epoch",
    None,
    "Testing: end the process (status 3, like a kill) right after this epoch is backed up.",
  )


def interrupt_callbacks() -> List[tf.keras.callbacks.Callback]:
  """The `--interrupt_after_epoch` callback, when the flag is set (put it last)."""
  epoch = flags.FLAGS.interrupt_after_epoch
  return [run_dir.ExitAfterEpoch(epoch)] if epoch else []


def _guarded(main: Callable[[List[str]], None]) -> Callable[[List[str]], None]:
  def run_main(argv: List[str]) -> None:
    logging.set_verbosity(logging.WARNING)
    try:
      main(argv)
    except app.UsageError as e:
      if flags.FLAGS.debug:
        raise
      print(f"error: {e} (see --help)", file=sys.stderr)
      sys.exit(2)
    except USER_ERRORS as e:
      if flags.FLAGS.debug:
        raise
      message = str(e) if not isinstance(e, KeyError) else str(e.args[0] if e.args else e)
      print(f"error: {type(e).__name__}: {message}", file=sys.stderr)
      sys.exit(2)

  return run_main


def _adopt_project_flags() -> None:
  """Makes the shared flags (data, item, job flags, `--debug`) key flags of the job, so `--help`
  lists them, not only `--helpfull`."""
  main = sys.argv[0]
  for module, module_flags in flags.FLAGS.flags_by_module_dict().items():
    if module != main and module.split(".")[0] in PROJECT_PACKAGES:
      for flag in module_flags:
        flags.FLAGS.register_key_flag_for_module(main, flag)


def run(main: Callable[[List[str]], None]) -> None:
  """`absl.app.run(main)` with the job conventions above."""
  _adopt_project_flags()
  app.run(_guarded(main))
