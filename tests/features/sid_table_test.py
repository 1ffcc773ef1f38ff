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


def _write_sharded(prefix, shards, run_id="0123456789ab", with_collisions=True, **overrides):
  """Writes `shards` (lists of (item_id, codes, collision)) as a sharded table; returns entries."""
  entries = []
  for index, rows in enumerate(shards):
    table = sid_table.make_table(
      np.array([r[0] for r in rows], np.int64),
      np.array([r[1] for r in rows], np.int32).reshape(len(rows), 3),
      fingerprint=FINGERPRINT,
      codebook_size=4,
      collision_index=np.array([r[2] for r in rows]) if with_collisions else None,
    )
    path = sid_table.shard_file_name(prefix, run_id, index, len(shards))
    sid_table.write_sid_table(path, table)
    entries.append(
      {"path": os.path.basename(path), "n_items": len(rows), "checksum": table.manifest["checksum"]}
    )
  manifest = {
    "fingerprint": FINGERPRINT,
    "num_levels": 3,
    "codebook_size": 4,
    "has_collision_index": with_collisions,
    "n_items": sum(len(rows) for rows in shards),
    "shards": entries,
  }
  manifest.update(overrides)
  sid_table.write_sharded_manifest(prefix, manifest)
  return entries


SHARDS = [
  [(30, [0, 0, 1], 0), (10, [1, 2, 3], 0)],
  [(20, [1, 2, 3], 1)],
]


class ShardedSidTableTest(base.TestCase):
  def setUp(self):
    super().setUp()
    self.prefix = os.path.join(self.get_temp_dir(), "sids")

  @base.parameterized.named_parameters(("prefix", ""), ("manifest", ".manifest.json"))
  def test_reads_as_one_table_sorted_by_item_id(self, suffix):
    _write_sharded(self.prefix, SHARDS)
    table = sid_table.read_sid_table(self.prefix + suffix, expected_fingerprint=FINGERPRINT)
    self.assertAllEqual(table.item_ids, [10, 20, 30])
    self.assertAllEqual(table.codes, [[1, 2, 3], [1, 2, 3], [0, 0, 1]])
    self.assertAllEqual(table.collision_index, [0, 1, 0])
    self.assertEqual(table.manifest["n_items"], 3)
    self.assertEqual(
      table.manifest["checksum"],
      sid_table.checksum(table.item_ids, table.codes, table.collision_index),
    )
    self.assertAllEqual(table.codes_for(np.array([30])), [[0, 0, 1]])
    self.assertLen(sid_table.read_manifest(self.prefix + suffix)["shards"], 2)

  def test_without_collision_index(self):
    _write_sharded(self.prefix, SHARDS, with_collisions=False)
    self.assertIsNone(sid_table.read_sid_table(self.prefix).collision_index)

  def test_empty_table(self):
    _write_sharded(self.prefix, [])
    table = sid_table.read_sid_table(self.prefix)
    self.assertEqual(table.codes.shape, (0, 3))
    self.assertEqual(table.item_ids.dtype, np.int64)

  def test_other_rqvae_is_refused(self):
    _write_sharded(self.prefix, SHARDS)
    with self.assertRaisesRegex(sid_table.SidTableError, "made by another RQ-VAE.*expected 'cd"):
      sid_table.read_sid_table(self.prefix, expected_fingerprint="cd" * 32)

  def test_a_replaced_shard_is_refused(self):
    entries = _write_sharded(self.prefix, SHARDS)
    other = sid_table.make_table(
      np.array([20]), np.array([[3, 3, 3]]), fingerprint=FINGERPRINT, codebook_size=4,
      collision_index=np.array([0]),
    )  # fmt: skip
    sid_table.write_sid_table(os.path.join(self.get_temp_dir(), entries[1]["path"]), other)
    with self.assertRaisesRegex(sid_table.SidTableError, r"shard .*00001-of-00002.npz' does not"):
      sid_table.read_sid_table(self.prefix)

  def test_a_missing_shard_is_refused(self):
    entries = _write_sharded(self.prefix, SHARDS)
    os.remove(os.path.join(self.get_temp_dir(), entries[0]["path"]))
    with self.assertRaisesRegex(sid_table.SidTableError, "No SID table at .*00000-of-00002"):
      sid_table.read_sid_table(self.prefix)

  def test_an_item_in_two_shards_is_refused(self):
    _write_sharded(self.prefix, [SHARDS[0], [(10, [0, 1, 2], 0)]])
    with self.assertRaisesRegex(sid_table.SidTableError, "not unique"):
      sid_table.read_sid_table(self.prefix)

  def test_wrong_item_count_is_refused(self):
    _write_sharded(self.prefix, SHARDS, n_items=4)
    with self.assertRaisesRegex(sid_table.SidTableError, "n_items=4; its shards hold 3"):
      sid_table.read_sid_table(self.prefix)

  def test_corrupt_or_foreign_manifest(self):
    path = self.prefix + sid_table.MANIFEST_SUFFIX
    with open(path, "w") as f:
      f.write('{"shards": [')
    with self.assertRaisesRegex(sid_table.SidTableError, "manifest .* is corrupt"):
      sid_table.read_sid_table(self.prefix)
    with open(path, "w") as f:
      json.dump({"kind": "something else"}, f)
    with self.assertRaisesRegex(sid_table.SidTableError, "not a sharded SID table manifest"):
      sid_table.read_sid_table(path)
    with self.assertRaisesRegex(sid_table.SidTableError, "No sharded SID table"):
      sid_table.read_sid_table(os.path.join(self.get_temp_dir(), "absent.manifest.json"))


if __name__ == "__main__":
  tf.test.main()
