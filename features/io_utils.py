"""Atomic writes, the one helper every writer uses: a crash never leaves half a file or folder.

A file is written to a uniquely named temp file next to its target, then renamed over it
(`atomic_path`, `write_bytes`, `write_text`, `write_json`). A folder is written into a unique temp
folder next to its target, then swapped in (`atomic_dir`): the old folder is renamed aside, the new
one renamed into place, and the old one deleted; if anything fails the old folder is put back.
Everything goes through `tf.io.gfile`, so remote paths (gs://, hdfs://) work too (there a rename is
a copy, as TensorFlow's own checkpoint writer accepts).

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
def atomic_path(path: str) -> Iterator[str]:
  """Yields a fresh temp path in `path`'s folder; renamed to `path` on success, removed on error."""
  folder = os.path.dirname(path) or "."
  tf.io.gfile.makedirs(folder)
  tmp = _temp_name(path)
  try:
    yield tmp
    tf.io.gfile.rename(tmp, path, overwrite=True)
  finally:
    if tf.io.gfile.exists(tmp):
      remove(tmp)


@contextlib.contextmanager
def atomic_dir(path: str) -> Iterator[str]:
  """Yields a fresh, empty temp folder next to `path`; on success it replaces `path` (any old
  folder there is swapped out and deleted), on error it is removed and `path` is left as it was."""
  parent = os.path.dirname(path.rstrip("/")) or "."
  tf.io.gfile.makedirs(parent)
  tmp = _temp_name(path)
  tf.io.gfile.makedirs(tmp)
  try:
    yield tmp
    old = None
    if tf.io.gfile.exists(path):
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
