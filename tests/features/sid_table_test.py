"""Tests of SID table I/O: round trip, fingerprint check, corruption."""

import json
import os

import numpy as np
import tensorflow as tf

from features import sid_table
from tests import base

FINGERPRINT = "ab" * 32


def _table(with_collisions=True):
  codes = np.array([[1, 2, 3], [1, 2, 3], [0, 0, 1]], np.int32)
  return sid_table.make_table(
    np.array([10, 20, 30]),
    codes,
    fingerprint=FINGERPRINT,
    codebook_size=4,
    collision_index=np.array([0, 1, 0]) if with_collisions else None,
    extra={"dataset": "test"},
  )


class SidTableTest(base.TestCase):
  def _path(self, name="sids.npz"):
    return os.path.join(self.get_temp_dir(), name)

  @base.parameterized.named_parameters(("with_collisions", True), ("without", False))
  def test_round_trip(self, with_collisions):
    path = self._path()
    sid_table.write_sid_table(path, _table(with_collisions))
    table = sid_table.read_sid_table(path, expected_fingerprint=FINGERPRINT)
    self.assertAllEqual(table.item_ids, [10, 20, 30])
    self.assertEqual(table.item_ids.dtype, np.int64)
    self.assertEqual(table.codes.dtype, np.int32)
    self.assertAllEqual(table.codes, _table().codes)
    if with_collisions:
      self.assertAllEqual(table.collision_index, [0, 1, 0])
    else:
      self.assertIsNone(table.collision_index)
    for key, value in (
      ("fingerprint", FINGERPRINT),
      ("num_levels", 3),
      ("codebook_size", 4),
      ("n_items", 3),
      ("dataset", "test"),
    ):
      self.assertEqual(table.manifest[key], value)
    self.assertLen(table.manifest["checksum"], 64)
    self.assertEqual(sid_table.read_manifest(path)["n_items"], 3)
    self.assertEqual(os.listdir(self.get_temp_dir()), ["sids.npz"])  # No temp files left.

  def test_lookup(self):
    table = _table()
    self.assertAllEqual(table.lookup(np.array([30, 99, 10])), [2, -1, 0])
    self.assertAllEqual(table.codes_for(np.array([30])), [[0, 0, 1]])
    with self.assertRaisesRegex(sid_table.SidTableError, r"1 item ids have no SID.*\[99\]"):
      table.codes_for(np.array([10, 99]))

  def test_other_rqvae_is_refused(self):
    path = self._path()
    sid_table.write_sid_table(path, _table())
    with self.assertRaisesRegex(sid_table.SidTableError, "made by another RQ-VAE.*expected 'cd"):
      sid_table.read_sid_table(path, expected_fingerprint="cd" * 32)

  def test_truncated_file_is_corrupt(self):
    path = self._path()
    sid_table.write_sid_table(path, _table())
    with open(path, "rb") as f:
      raw = f.read()
    with open(path, "wb") as f:
      f.write(raw[: len(raw) // 2])
    with self.assertRaisesRegex(sid_table.SidTableError, "is corrupt or not a SID table"):
      sid_table.read_sid_table(path)

  def test_changed_codes_fail_the_checksum(self):
    path = self._path()
    table = _table(with_collisions=False)
    manifest = json.dumps(table.manifest)
    np.savez(path, item_id=table.item_ids, codes=table.codes, manifest=manifest)
    sid_table.read_sid_table(path)  # Untouched arrays pass.
    tampered = table.codes.copy()
    tampered[0, 0] = 2
    np.savez(path, item_id=table.item_ids, codes=tampered, manifest=manifest)
    with self.assertRaisesRegex(sid_table.SidTableError, "corrupt: checksum"):
      sid_table.read_sid_table(path)

  def test_missing_file(self):
    with self.assertRaisesRegex(sid_table.SidTableError, "No SID table at"):
      sid_table.read_sid_table(self._path("absent.npz"))

  def test_bad_tables_are_refused(self):
    with self.assertRaisesRegex(sid_table.SidTableError, r"codes must lie in \[0, 2\)"):
      sid_table.make_table(np.array([1]), np.array([[3]]), fingerprint="x", codebook_size=2)
    with self.assertRaisesRegex(sid_table.SidTableError, "not unique"):
      sid_table.make_table(np.array([1, 1]), np.zeros((2, 1)), fingerprint="x", codebook_size=2)
    with self.assertRaisesRegex(sid_table.SidTableError, "same N"):
      sid_table.make_table(np.array([1, 2]), np.zeros((3, 1)), fingerprint="x", codebook_size=2)

  def test_rewrite_replaces_atomically(self):
    path = self._path()
    sid_table.write_sid_table(path, _table())
    smaller = sid_table.make_table(
      np.array([5]), np.array([[1, 1, 1]]), fingerprint=FINGERPRINT, codebook_size=4
    )
    sid_table.write_sid_table(path, smaller)
    self.assertAllEqual(sid_table.read_sid_table(path).item_ids, [5])


if __name__ == "__main__":
  tf.test.main()
