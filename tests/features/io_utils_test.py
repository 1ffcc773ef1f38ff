"""Tests for features/io_utils.py: atomic files and folders, unpredictable temp names."""

import os
import re

from features import io_utils
from tests import base
from tests.base import tf


def _umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


class TempDirTest(base.TestCase):
  def test_local_temp_dirs_are_new_unique_and_not_private(self):
    parent = self.get_temp_dir()
    target = os.path.join(parent, "7")
    first, second = io_utils.temp_dir_next_to(target), io_utils.temp_dir_next_to(target + "/")
    self.assertNotEqual(first, second)
    for tmp in (first, second):
      self.assertEqual(os.path.dirname(tmp), parent)
      self.assertRegex(os.path.basename(tmp), r"^\.7\..+\.tmp$")
      self.assertEqual(os.listdir(tmp), [])
      self.assertEqual(os.stat(tmp).st_mode & 0o777, 0o777 & ~_umask())
    self.assertFalse(os.path.exists(target))

  def test_remote_temp_dirs_get_a_uuid_name(self):
    tmp = io_utils.temp_dir_next_to("ram://io_utils_test/base/3")
    self.assertTrue(re.fullmatch(r"ram://io_utils_test/base/\.3\.[0-9a-f]{12}\.tmp", tmp), tmp)
    self.assertTrue(tf.io.gfile.isdir(tmp))
    self.assertFalse(io_utils.is_local(tmp))
    self.assertTrue(io_utils.is_local("file:///x") and io_utils.is_local("runs/x"))


class AtomicDirTest(base.TestCase):
  def test_replaces_the_folder_only_when_complete(self):
    target = os.path.join(self.get_temp_dir(), "out")
    with io_utils.atomic_dir(target) as tmp:
      io_utils.write_text(os.path.join(tmp, "a.txt"), "1")
    with self.assertRaises(RuntimeError):
      with io_utils.atomic_dir(target) as tmp:
        io_utils.write_text(os.path.join(tmp, "a.txt"), "half")
        raise RuntimeError("killed")
    with open(os.path.join(target, "a.txt")) as f:
      self.assertEqual(f.read(), "1")
    with io_utils.atomic_dir(target) as tmp:
      io_utils.write_text(os.path.join(tmp, "b.txt"), "2")
    self.assertEqual(os.listdir(target), ["b.txt"])
    self.assertEqual(os.listdir(self.get_temp_dir()), ["out"])

  def test_no_overwrite_refuses_an_existing_folder(self):
    target = os.path.join(self.get_temp_dir(), "1")
    os.makedirs(target)
    with self.assertRaisesRegex(FileExistsError, f"^{re.escape(target)} already exists$"):
      with io_utils.atomic_dir(target, overwrite=False) as tmp:
        io_utils.write_text(os.path.join(tmp, "saved_model.pb"), "x")
    self.assertEqual(os.listdir(target), [])
    self.assertEqual(os.listdir(self.get_temp_dir()), ["1"])


if __name__ == "__main__":
  tf.test.main()


class AtomicPathTest(base.TestCase):
  def _write(self, path, data, **kwargs):
    with io_utils.atomic_path(path, **kwargs) as tmp:
      with open(tmp, "wb") as f:
        f.write(data)

  def test_keep_identical_leaves_an_equal_file_untouched(self):
    path = os.path.join(self.get_temp_dir(), "records")
    self._write(path, b"abc")
    before = os.stat(path).st_ino
    self._write(path, b"abc", keep_identical=True)
    self.assertEqual(os.stat(path).st_ino, before)  # Same file: not renamed over.
    self._write(path, b"abd", keep_identical=True)
    self.assertNotEqual(os.stat(path).st_ino, before)
    with open(path, "rb") as f:
      self.assertEqual(f.read(), b"abd")
    self._write(path, b"abd")
    self.assertEqual(os.listdir(os.path.dirname(path)), ["records"])  # No temp files left.

  def test_same_bytes(self):
    folder = self.get_temp_dir()
    a, b, c = (os.path.join(folder, n) for n in "abc")
    for path, data in ((a, b"x" * 10), (b, b"x" * 10), (c, b"x" * 9 + b"y")):
      with open(path, "wb") as f:
        f.write(data)
    self.assertTrue(io_utils.same_bytes(a, b))
    self.assertFalse(io_utils.same_bytes(a, c))
    self.assertFalse(io_utils.same_bytes(a, os.path.join(folder, "missing")))
