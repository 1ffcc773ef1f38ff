"""Runs an export through TF Serving's loader, `tensorflow::LoadSavedModel` + `Session::Run`.

The model server cannot be installed here, but the code path it uses to load and run a SavedModel
can: `export/loader_check/load_and_run.cc` is compiled with g++ against the headers and shared
libraries inside the `tensorflow` wheel, loads the export with the "serve" tag once and runs
signatures on inputs given in files. It loads no op library unless asked (`op_libraries`): the
exports of this project hold core TF ops only, so they must run on the bare TensorFlow runtime, as
on a model server whose TF Text is old or absent; the program reports every TF Text library mapped
into its address space, which must be none. `tf_text_op_libraries()` finds TF Text's kernels for
the one case that needs them (showing that a TF Text graph does not load without them). The binary
is cached under a build directory keyed by a hash of the source, the compiler flags and the
TensorFlow version, so it compiles once (about 20-50 s on two cores).

Tensors cross the process boundary in a "named tensor list" file: b"NTL1", a little-endian uint32
count, then per tensor a uint32 name length, the UTF-8 name, a uint64 length and a serialized
TensorProto.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import importlib.util
import os
import shutil
import struct
import subprocess
import tempfile
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

from features import io_utils

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "loader_check", "load_and_run.cc")
_MAGIC = b"NTL1"


class LoaderCheckError(RuntimeError):
  """The C++ loader could not be built or could not load the export."""


@dataclasses.dataclass
class RunResult:
  """One signature run of the C++ loader.

  Attributes:
    status: "OK", or the failed `Session::Run` status, e.g. "INVALID_ARGUMENT: ...".
    outputs: Output alias -> array (empty unless status is OK).
    log: The program's stdout and stderr.
    libraries_loaded: How many op libraries the program loaded with `TF_LoadLibrary`.
    tf_text_mapped: TF Text libraries mapped into the program after its runs (paths).
  """

  status: str
  outputs: dict[str, np.ndarray]
  log: str
  libraries_loaded: int = 0
  tf_text_mapped: tuple[str, ...] = ()

  @property
  def ok(self) -> bool:
    return self.status == "OK"


def write_named_tensors(path: str, tensors: Mapping[str, np.ndarray]) -> None:
  """Writes `tensors` in the named-tensor-list format (see the module docstring)."""
  with open(path, "wb") as f:
    f.write(_MAGIC + struct.pack("<I", len(tensors)))
    for name, value in tensors.items():
      proto = tf.make_tensor_proto(value).SerializeToString()
      encoded = name.encode()
      f.write(struct.pack("<I", len(encoded)) + encoded + struct.pack("<Q", len(proto)) + proto)


def read_named_tensors(path: str) -> dict[str, np.ndarray]:
  """Reads a named-tensor-list file into name -> numpy array."""
  with open(path, "rb") as f:
    data = f.read()
  if data[:4] != _MAGIC:
    raise LoaderCheckError(f"{path} is not a named tensor list (magic {data[:4]!r})")
  (count,), offset, tensors = struct.unpack_from("<I", data, 4), 8, {}
  for _ in range(count):
    (name_size,) = struct.unpack_from("<I", data, offset)
    name = data[offset + 4 : offset + 4 + name_size].decode()
    offset += 4 + name_size
    (proto_size,) = struct.unpack_from("<Q", data, offset)
    proto = tf.make_tensor_proto(0)
    proto.ParseFromString(data[offset + 8 : offset + 8 + proto_size])
    offset += 8 + proto_size
    tensors[name] = tf.make_ndarray(proto)
  return tensors


def tf_text_op_libraries() -> list[str]:
  """TF Text's kernel libraries (`tensorflow_text/python/ops/_*.so`); only a graph with TF Text
  ops needs them (this project's exports do not).

  Raises:
    LoaderCheckError: if tensorflow_text is not installed.
  """
  spec = importlib.util.find_spec("tensorflow_text")
  if spec is None or not spec.submodule_search_locations:
    raise LoaderCheckError("tensorflow_text is not installed; its op libraries are needed")
  ops_dir = os.path.join(list(spec.submodule_search_locations)[0], "python", "ops")
  return sorted(glob.glob(os.path.join(ops_dir, "_*.so")))


def default_build_dir() -> str:
  """`$XDG_CACHE_HOME/semantic_ids/loader_check` (or `~/.cache/...`): outside the repository."""
  cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(cache, "semantic_ids", "loader_check")


def _compile_command(output: str) -> list[str]:
  lib_dir = tf.sysconfig.get_lib()
  return [
    "g++",
    "-O0",
    "-w",
    *tf.sysconfig.get_compile_flags(),
    SOURCE,
    "-o",
    output,
    f"-L{lib_dir}",
    "-Wl,--no-as-needed",
    "-l:libtensorflow_cc.so.2",
    "-l:libtensorflow_framework.so.2",
    f"-Wl,-rpath,{lib_dir}",
  ]


def build_binary(build_dir: str | None = None) -> str:
  """Compiles `load_and_run.cc` unless a binary for the same source and TF version is cached.

  Args:
    build_dir: Where binaries are cached. Defaults to `default_build_dir()`.

  Returns:
    The path of the executable.

  Raises:
    LoaderCheckError: g++ is missing or the compilation failed (with the compiler's last lines).
  """
  if shutil.which("g++") is None:
    raise LoaderCheckError(
      "g++ is not on PATH; install it (apt-get install g++) to run the loader check"
    )
  build_dir = build_dir or default_build_dir()
  os.makedirs(build_dir, exist_ok=True)
  with open(SOURCE, "rb") as f:
    key = hashlib.sha256(f.read())
  key.update(" ".join(_compile_command("x")).encode() + tf.__version__.encode())
  binary = os.path.join(build_dir, f"load_and_run-{key.hexdigest()[:16]}")
  if os.path.exists(binary):
    return binary
  with io_utils.atomic_path(binary) as temp:  # A half-linked binary is never cached.
    result = subprocess.run(_compile_command(temp), capture_output=True, text=True)
    if result.returncode != 0:
      tail = "\n".join(result.stderr.splitlines()[-30:])
      raise LoaderCheckError(f"Compiling {SOURCE} failed (exit {result.returncode}):\n{tail}")
  return binary


def run_signature(
  binary: str,
  export_dir: str,
  inputs: Mapping[str, np.ndarray],
  signature: str = "serving_default",
  timeout_s: float = 300,
  op_libraries: Sequence[str] = (),
) -> RunResult:
  """Loads `export_dir` with the C++ loader and runs `signature` on `inputs`.

  Raises:
    LoaderCheckError: The program could not load the libraries or the model.
  """
  (result,) = run_signatures(binary, export_dir, [(signature, inputs)], timeout_s, op_libraries)
  return result


def run_signatures(
  binary: str,
  export_dir: str,
  requests: Sequence[tuple[str, Mapping[str, np.ndarray]]],
  timeout_s: float = 300,
  op_libraries: Sequence[str] = (),
) -> list[RunResult]:
  """Loads `export_dir` once with the C++ loader and runs each `(signature, inputs)` request.

  Args:
    binary: The compiled loader (`build_binary`).
    export_dir: A SavedModel directory.
    requests: (signature name, input name -> array) pairs, run in order.
    timeout_s: Limit for the whole program.
    op_libraries: Op libraries to `TF_LoadLibrary` before loading; none by default.

  Returns:
    One `RunResult` per request.

  Raises:
    LoaderCheckError: The program could not load the libraries or the model.
  """
  with tempfile.TemporaryDirectory() as work:
    command = [binary, f"--export_dir={export_dir}"]
    command += [f"--op_library={path}" for path in op_libraries]
    for i, (signature, inputs) in enumerate(requests):
      inputs_path = os.path.join(work, f"inputs_{i}.ntl")
      write_named_tensors(inputs_path, inputs)
      command.append(f"--run={signature}:{inputs_path}:{os.path.join(work, f'outputs_{i}.ntl')}")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env)
    log = result.stdout + result.stderr
    lines = result.stdout.splitlines()
    statuses = {}
    for line in lines:
      if line.startswith("RUN_STATUS "):
        index, status = line[len("RUN_STATUS ") :].split(": ", 1)
        statuses[int(index)] = status
    if result.returncode not in (0, 2) or len(statuses) != len(requests):
      raise LoaderCheckError(
        f"The C++ loader failed (exit {result.returncode}) on {export_dir}:\n{log}"
      )
    loaded = int(_field(lines, "LOADED_LIBRARIES: ", "0"))
    mapped = tuple(line.split(": ", 1)[1] for line in lines if line.startswith("TF_TEXT_LIBRARY: "))
    return [
      RunResult(
        status=statuses[i],
        outputs=(
          read_named_tensors(os.path.join(work, f"outputs_{i}.ntl")) if statuses[i] == "OK" else {}
        ),
        log=log,
        libraries_loaded=loaded,
        tf_text_mapped=mapped,
      )
      for i in range(len(requests))
    ]


def _field(lines: Sequence[str], prefix: str, default: str) -> str:
  return next((line[len(prefix) :] for line in lines if line.startswith(prefix)), default)
