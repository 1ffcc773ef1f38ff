"""How every command-line job starts and fails: `cli.run(main)` instead of `absl.app.run(main)`.

A user error (bad flag value, bad data file, missing or mismatched artifact) ends the job with one
line on stderr that names the problem, and exit status 2; the traceback is shown only with
`--debug`. Log levels are set here, for the jobs, not when the packages are imported (importing the
project leaves the user's own TensorFlow logging alone; `features.keras_env` quiets TensorFlow's C++
start-up lines only in a process launched as one of the project's jobs).
"""

import sys
from typing import Callable, List

from absl import app, flags, logging

from features import schema

# Errors that mean "the input is wrong", not "the code is wrong".
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, FileExistsError, schema.SchemaError)

if "debug" not in flags.FLAGS:
  flags.DEFINE_bool("debug", False, "Show the full traceback of a failed job.")


def _guarded(main: Callable[[List[str]], None]) -> Callable[[List[str]], None]:
  def run_main(argv: List[str]) -> None:
    logging.set_verbosity(logging.WARNING)
    try:
      main(argv)
    except app.UsageError:
      raise
    except USER_ERRORS as e:
      if flags.FLAGS.debug:
        raise
      message = str(e) if not isinstance(e, KeyError) else str(e.args[0] if e.args else e)
      print(f"error: {type(e).__name__}: {message}", file=sys.stderr)
      sys.exit(2)

  return run_main


def run(main: Callable[[List[str]], None]) -> None:
  """`absl.app.run(main)` with the job conventions above."""
  app.run(_guarded(main))
