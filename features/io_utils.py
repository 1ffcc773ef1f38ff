"""Atomic writes, the one helper every writer uses: a crash never leaves half a file or folder.

A file is written to a uniquely named temp file next to its target, then renamed over it
(`atomic_path`, `write_bytes`, `write_text`, `write_json`). A folder is written into a unique temp
folder next to its target (`temp_dir_next_to`), then swapped in (`atomic_dir`): the old folder is
renamed aside, the new one renamed into place, and the old one deleted; if anything fails the old
folder is put back (or, with `overwrite=False`, an existing target is refused). Temp names are never
predictable: a local temp folder is made by `tempfile.mkdtemp` (created exclusively, so no other
process can have made or linked it first), a remote one gets a random uuid. Everything else goes
through `tf.io.gfile`, so remote paths (gs://, hdfs://) work too (there a rename is a copy, as
TensorFlow's own checkpoint writer accepts).

Example:
>>> import tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "a.json")
>>> write_json(path, {"x": 1})
>>> open(path).read()
'{\\n  "x": 1\\n}\\n'
"""

import contextlib
import io
import json
import os
import tempfile
import uuid
from typing import Any, Iterator

import numpy as np
import tensorflow as tf


def _temp_name(path: str) -> str:
  folder, name = os.path.split(path.rstrip("/"))
  return os.path.join(folder, f".{name}.{uuid.uuid4().hex[:12]}.tmp")


def remove(path: str) -> None:
  """Removes a file or a folder tree at `path`; nothing when it does not exist."""
  if tf.io.gfile.isdir(path):
    tf.io.gfile.rmtree(path)
  elif tf.io.gfile.exists(path):
    tf.io.gfile.remove(path)


@contextlib.contextmanager
def atomic_path(path: str, keep_identical: bool = False) -> Iterator[str]:
  """Yields a fresh temp path in `path`'s folder; renamed to `path` on success, removed on error.

  Args:
    path: The file to write.
    keep_identical: bool. True: when the new bytes equal `path`'s, `path` is left untouched (same
      file, same modification time: what file-fingerprinting caches such as TFX's ExampleGen key
      on). Defaults to False.
  """
  folder = os.path.dirname(path) or "."
  tf.io.gfile.makedirs(folder)
  tmp = _temp_name(path)
  try:
    yield tmp
    if not (keep_identical and same_bytes(tmp, path)):
      tf.io.gfile.rename(tmp, path, overwrite=True)
  finally:
    if tf.io.gfile.exists(tmp):
      remove(tmp)


def same_bytes(a: str, b: str, block: int = 1 << 20) -> bool:
  """Whether files `a` and `b` both exist and hold the same bytes."""
  if not (tf.io.gfile.exists(a) and tf.io.gfile.exists(b)):
    return False
  if tf.io.gfile.stat(a).length != tf.io.gfile.stat(b).length:
    return False
  with tf.io.gfile.GFile(a, "rb") as fa, tf.io.gfile.GFile(b, "rb") as fb:
    while True:
      chunk = fa.read(block)
      if chunk != fb.read(block):
        return False
      if not chunk:
        return True


def is_local(path: str) -> bool:
  """True for a path on the local file system (no `scheme://`, or `file://`)."""
  return "://" not in path or path.startswith("file://")


def _umask() -> int:
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except (OSError, ValueError):
    pass
  mask = os.umask(0o022)  # Read it (there is no other portable way) and put it back.
  os.umask(mask)
  return mask


def temp_dir_next_to(path: str) -> str:
  """Makes and returns a new, empty folder with an unpredictable name in `path`'s parent folder.

  Local paths: `tempfile.mkdtemp` (exclusive creation), then the permissions an ordinary
  `makedirs` would give (mkdtemp's 0700 would hide the folder from, say, a model server running as
  another user once it is renamed into place). Remote paths: a uuid-named folder.
  """
  path = path.rstrip("/")
  parent = os.path.dirname(path) or "."
  tf.io.gfile.makedirs(parent)
  if not is_local(path):
    tmp = _temp_name(path)
    tf.io.gfile.makedirs(tmp)
    return tmp
  scheme = "file://" if parent.startswith("file://") else ""
  tmp = tempfile.mkdtemp(
    prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent[len(scheme) :]
  )
  os.chmod(tmp, 0o777 & ~_umask())
  return scheme + tmp


@contextlib.contextmanager
def atomic_dir(path: str, overwrite: bool = True) -> Iterator[str]:
  """Yields a fresh, empty temp folder next to `path` (`temp_dir_next_to`); on success it replaces
  `path` (any old folder there is swapped out and deleted), on error it is removed and `path` is
  left as it was.

  Args:
    path: The folder to write.
    overwrite: bool. False: raise FileExistsError (and keep the new folder out) if `path` exists
      when the folder is complete. Defaults to True.
  """
  tmp = temp_dir_next_to(path)
  try:
    yield tmp
    old = None
    if tf.io.gfile.exists(path):
      if not overwrite:
        raise FileExistsError(f"{path} already exists")
      old = _temp_name(path) + ".old"
      tf.io.gfile.rename(path, old)
    try:
      tf.io.gfile.rename(tmp, path)
    except Exception:
      if old is not None:
        tf.io.gfile.rename(old, path)
      raise
    if old is not None:
      remove(old)
  finally:
    if tf.io.gfile.exists(tmp):
      remove(tmp)


def write_bytes(path: str, data: bytes) -> None:
  with atomic_path(path) as tmp, tf.io.gfile.GFile(tmp, "wb") as f:
    f.write(data)


def write_npz(path: str, **arrays) -> None:
  """`np.savez` of `arrays` to `path`, atomically (built in memory: GFile is not seekable)."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  write_bytes(path, buffer.getvalue())


def write_text(path: str, text: str) -> None:
  write_bytes(path, text.encode("utf-8"))


def write_json(path: str, obj: Any) -> None:
  write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
  if hasattr(value, "item"):
    return value.item()
  if hasattr(value, "tolist"):
    return value.tolist()
  raise TypeError(f"Not JSON serializable: {type(value).__name__}")
