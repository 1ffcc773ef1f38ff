"""Runs several invocations of one job in ONE interpreter, as `base.run_module_probes` asks:

  python -m tests.cli_probes MODULE PROBES_JSON OUTPUT_JSON

PROBES_JSON is a list of argument lists. MODULE is imported once; then, for each argument list,
the flags go back to their defaults (`FLAGS.unparse_flags()`), `sys.argv` becomes what
`python -m MODULE ARGS...` would see, and the module's own `if __name__ == "__main__":` block
runs (`cli.run(main)`: absl's flag parsing and the job's one-line errors), with file descriptors
1 and 2 sent to files, so every line the job, absl or TensorFlow writes is caught. The exit status
is the one the interpreter would give: `SystemExit`'s code, 1 after an uncaught exception (whose
traceback goes to the caught stderr), else 0. OUTPUT_JSON gets one {"returncode", "stdout",
"stderr"} per probe.

For probes that fail before the job does any work (bad flags, missing or mismatched inputs): a
process each would only repeat TensorFlow's import. A job that trains or writes runs in a process
of its own (`base.run_module`).
"""

import ast
import importlib
import json
import os
import sys
import tempfile
import traceback
from types import CodeType, ModuleType

from absl import flags


def main_block(module: ModuleType) -> CodeType:
  """The compiled body of the module's `if __name__ == "__main__":` block."""
  path = module.__file__
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  for node in tree.body:
    if isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'":
      return compile(ast.Module(body=node.body, type_ignores=[]), path, "exec")
  raise ValueError(f'{path} has no `if __name__ == "__main__":` block')


def _exit_status(code) -> int:
  """The interpreter's exit status for `SystemExit(code)`."""
  if code is None:
    return 0
  if isinstance(code, int):
    return code
  print(code, file=sys.stderr)
  return 1


def run_probe(module: ModuleType, block: CodeType, args: list, work: str) -> dict:
  """Runs `block` as `python -m module *args` would; returns its status, stdout and stderr."""
  flags.FLAGS.unparse_flags()
  sys.argv = [module.__file__, *args]
  paths = os.path.join(work, "stdout"), os.path.join(work, "stderr")
  sys.stdout.flush()
  sys.stderr.flush()
  saved = os.dup(1), os.dup(2)
  with open(paths[0], "wb") as out, open(paths[1], "wb") as err:
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    try:
      exec(block, vars(module))
      status = 0
    except SystemExit as e:
      status = _exit_status(e.code)
    except BaseException:  # What the interpreter would print before exiting with 1.
      traceback.print_exc()
      status = 1
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      os.dup2(saved[0], 1)
      os.dup2(saved[1], 2)
      os.close(saved[0])
      os.close(saved[1])
  streams = []
  for path in paths:
    with open(path, encoding="utf-8", errors="replace") as f:
      streams.append(f.read())
  return {"returncode": status, "stdout": streams[0], "stderr": streams[1]}


def main(argv: list) -> None:
  module_name, probes, output = argv[1], json.loads(argv[2]), argv[3]
  module = importlib.import_module(module_name)
  block = main_block(module)
  with tempfile.TemporaryDirectory() as work:
    results = [run_probe(module, block, args, work) for args in probes]
  with open(output, "w", encoding="utf-8") as f:
    json.dump(results, f)


if __name__ == "__main__":
  main(sys.argv)
