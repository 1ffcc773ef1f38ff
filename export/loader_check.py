"""Runs an export through TF Serving's loader, `tensorflow::LoadSavedModel` + `Session::Run`.

The model server cannot be installed here, but the code path it uses to load and run a SavedModel
can: `export/loader_check/load_and_run.cc` is compiled with g++ against the headers and shared
libraries inside the `tensorflow` wheel, loads TF Text's op libraries with `TF_LoadLibrary` (the
stock model server links them in), loads the export with the "serve" tag and runs a signature on
inputs given in a file. The binary is cached under a build directory keyed by a hash of the source,
the compiler flags and the TensorFlow version, so it compiles once (about 20-50 s on two cores).

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
from typing import Mapping

import numpy as np
import tensorflow as tf

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "loader_check", "load_and_run.cc")
_MAGIC = b"NTL1"


class LoaderCheckError(RuntimeError):
  """The C++ loader could not be built or could not load the export."""


@dataclasses.dataclass
class RunResult:
  """One run of the C++ loader.

  Attributes:
    status: "OK", or the failed `Session::Run` status, e.g. "INVALID_ARGUMENT: ...".
    outputs: Output alias -> array (empty unless status is OK).
    log: The program's stdout and stderr.
  """

  status: str
  outputs: dict[str, np.ndarray]
  log: str

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


def op_libraries() -> list[str]:
  """TF Text's kernel libraries (`tensorflow_text/python/ops/_*.so`), linked by the model server."""
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
  fd, temp = tempfile.mkstemp(dir=build_dir, prefix=".load_and_run-")
  os.close(fd)
  result = subprocess.run(_compile_command(temp), capture_output=True, text=True)
  if result.returncode != 0:
    os.unlink(temp)
    tail = "\n".join(result.stderr.splitlines()[-30:])
    raise LoaderCheckError(f"Compiling {SOURCE} failed (exit {result.returncode}):\n{tail}")
  os.replace(temp, binary)
  return binary


def run_signature(
  binary: str,
  export_dir: str,
  inputs: Mapping[str, np.ndarray],
  signature: str = "serving_default",
  timeout_s: float = 300,
) -> RunResult:
  """Loads `export_dir` with the C++ loader and runs `signature` on `inputs`.

  Raises:
    LoaderCheckError: The program could not load the libraries or the model.
  """
  with tempfile.TemporaryDirectory() as work:
    inputs_path, outputs_path = os.path.join(work, "inputs.ntl"), os.path.join(work, "outputs.ntl")
    write_named_tensors(inputs_path, inputs)
    command = [
      binary,
      f"--export_dir={export_dir}",
      f"--inputs={inputs_path}",
      f"--outputs={outputs_path}",
      f"--signature={signature}",
      *(f"--op_library={path}" for path in op_libraries()),
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env)
    log = result.stdout + result.stderr
    status = next(
      (
        line[len("RUN_STATUS: ") :]
        for line in result.stdout.splitlines()
        if line.startswith("RUN_STATUS: ")
      ),
      None,
    )
    if result.returncode not in (0, 2) or status is None:
      raise LoaderCheckError(
        f"The C++ loader failed (exit {result.returncode}) on {export_dir}:\n{log}"
      )
    outputs = read_named_tensors(outputs_path) if result.returncode == 0 else {}
  return RunResult(status=status, outputs=outputs, log=log)
