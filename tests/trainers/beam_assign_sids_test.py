"""The Beam SID job against trainers.assign_sids, its dead-letter output and its re-run rules.

Needs Apache Beam, in the optional Beam environment: `bash scripts/setup_beam.sh`, then
`.venv-beam/bin/python -m pytest -q tests/trainers/beam_assign_sids_test.py`. In the core
environment (no Beam) every test here but the import guard's is skipped with that reason.
"""

import importlib.util
import json
import os
import subprocess
import sys
import unittest
from unittest import mock

import numpy as np

from features import datasets, sid_table, synthetic
from model import rqvae, sid_collisions
from tests import base
from tests.base import tf

HAS_BEAM = importlib.util.find_spec("apache_beam") is not None
NO_BEAM = (
  "apache_beam is not importable in this Python (the core environment); run "
  "`bash scripts/setup_beam.sh` and `.venv-beam/bin/python -m pytest -q tests/trainers/beam_*`"
)
if HAS_BEAM:  # Conditional, so the core environment collects this file and skips.
  from trainers import beam_assign_sids, beam_items, beam_sid_pipeline

N_ITEMS, DIM = 3000, 16
DATA = [
  "--dataset=synthetic",
  f"--synthetic_items={N_ITEMS}",
  "--synthetic_users=20",
  "--synthetic_interactions=500",
  f"--synthetic_dim={DIM}",
]
IN_PROCESS = ["--runner=DirectRunner"]


def _dataset():
  config = synthetic.SyntheticConfig(
    n_items=N_ITEMS, n_users=20, n_interactions=500, embedding_dim=DIM
  )
  return datasets.load_dataset("synthetic", synthetic_config=config)


def _example(features):
  feature = {}
  for name, value in features.items():
    if isinstance(value, bytes):
      feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    elif np.asarray(value).dtype.kind == "i":
      feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=np.ravel(value)))
    else:
      feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=np.ravel(value)))
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


class ImportGuardTest(base.TestCase):
  def test_import_without_beam_says_how_to_install_it(self):
    code = "import sys; sys.modules['apache_beam'] = None\nimport trainers.beam_assign_sids"
    result = subprocess.run(
      [sys.executable, "-c", code], cwd=base.ROOT, capture_output=True, text=True, timeout=300
    )
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("ImportError: trainers.beam_assign_sids needs Apache Beam", result.stderr)
    self.assertIn("bash scripts/setup_beam.sh", result.stderr)


@unittest.skipUnless(HAS_BEAM, NO_BEAM)
class BeamAssignSidsTest(base.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = os.path.join(tf.compat.v1.test.get_temp_dir(), "beam_sids")
    cls.dataset = _dataset()
    tf.keras.utils.set_random_seed(0)
    model = rqvae.build_rqvae(
      rqvae.RQVAEConfig(input_dim=DIM, latent_dim=8, num_levels=3, codebook_size=16)
    )
    model.fit(cls.dataset.embeddings, batch_size=256, epochs=1, verbose=0)
    cls.rqvae_dir = os.path.join(cls.root, "rqvae")
    cls.fingerprint = rqvae.save_rqvae(model, cls.rqvae_dir)
    cls.single = os.path.join(cls.root, "single.npz")
    base.run_module(
      "trainers.assign_sids",
      *DATA,
      f"--rqvae_dir={cls.rqvae_dir}",
      f"--output={cls.single}",
      "--collision_level",
      check=True,
    )
    ids = cls.dataset.items["item_id"].to_numpy()
    cls.tfrecords = os.path.join(cls.root, "items", "items")
    beam_items.write_item_files(cls.tfrecords, ids, cls.dataset.embeddings, num_files=3)

  def _expected(self):
    """assign_sids' table, sorted by item id (the sharded table's order)."""
    table = sid_table.read_sid_table(self.single, expected_fingerprint=self.fingerprint)
    order = np.argsort(table.item_ids)
    return table.item_ids[order], table.codes[order], table.collision_index[order]

  def _run(self, pattern, prefix, **options):
    return beam_assign_sids.run(pattern, prefix, self.rqvae_dir, IN_PROCESS, **options)

  def test_two_workers_give_assign_sids_codes_exactly(self):
    prefix = os.path.join(self.get_temp_dir(), "out", "sids")
    result = base.run_module(
      "trainers.beam_assign_sids",
      f"--input={self.tfrecords}-*",
      f"--output={prefix}",
      f"--rqvae_dir={self.rqvae_dir}",
      "--collision_level",
      "--num_shards=3",
      "--direct_num_workers=2",
      "--direct_running_mode=multi_processing",
      check=True,
    )
    self.assertIn(f"{N_ITEMS:,} items in 3 shards", result.stdout)
    table = sid_table.read_sid_table(prefix, expected_fingerprint=self.fingerprint)
    ids, codes, collisions = self._expected()
    self.assertAllEqual(table.item_ids, ids)
    self.assertAllEqual(table.codes, codes)
    self.assertAllEqual(table.collision_index, collisions)  # Across shards: grouped by full SID.
    self.assertGreater(collisions.max(), 0)
    manifest = sid_table.read_manifest(prefix)
    for key, value in (("num_levels", 3), ("codebook_size", 16), ("n_items", N_ITEMS)):
      self.assertEqual(manifest[key], value)
    self.assertEqual(manifest["collision_level_size"], collisions.max() + 1)
    self.assertLen(manifest["shards"], 3)
    self.assertEqual(sum(s["n_items"] for s in manifest["shards"]), N_ITEMS)
    self.assertEqual(manifest["dead_letter"]["count"], 0)
    with open(prefix + beam_assign_sids.STATS_SUFFIX) as f:
      self.assertEqual(json.load(f)["n_items"], N_ITEMS)

  def test_parquet_input_in_process_and_the_table_feeds_train_spm(self):
    pattern = os.path.join(self.get_temp_dir(), "pq", "items")
    ids = self.dataset.items["item_id"].to_numpy()
    fmt = beam_items.InputFormat.PARQUET
    beam_items.write_item_files(pattern, ids, self.dataset.embeddings, fmt, num_files=2)
    prefix = os.path.join(self.get_temp_dir(), "sids")
    manifest = self._run(pattern + "-*", prefix, num_shards=2)
    self.assertEqual(manifest["input_format"], "parquet")
    table = sid_table.read_sid_table(prefix, expected_fingerprint=self.fingerprint)
    expected_ids, expected_codes, _ = self._expected()
    self.assertAllEqual(table.item_ids, expected_ids)
    self.assertAllEqual(table.codes, expected_codes)
    self.assertIsNone(table.collision_index)
    # Read where a SID table is read: SentencePiece over the SIDs takes the prefix as --sids.
    spm = os.path.join(self.get_temp_dir(), "sid_spm.model")
    result = base.run_module(
      "trainers.train_spm", *DATA, f"--sids={prefix}", "--vocab_size=64", f"--output={spm}"
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertTrue(os.path.isfile(spm))

  def test_bad_rows_go_to_the_dead_letter_output(self):
    embeddings = self.dataset.embeddings
    good = [_example({"item_id": [i], "content_embedding": embeddings[i]}) for i in range(40)]
    nan = embeddings[0].copy()
    nan[3] = np.nan
    bad = {
      b"\x00not a proto": (None, "unparseable"),
      _example({"content_embedding": embeddings[0]}): (None, "missing_item_id"),
      _example({"item_id": [7, 8], "content_embedding": embeddings[0]}): (None, "bad_item_id"),
      _example({"item_id": [900]}): (900, "missing_embedding"),
      _example({"item_id": [901], "content_embedding": b"x"}): (901, "bad_embedding_type"),
      _example({"item_id": [902], "content_embedding": embeddings[0][:5]}): (902, "wrong_width"),
      _example({"item_id": [903], "content_embedding": nan}): (903, "non_finite"),
      _example({"item_id": [5], "content_embedding": embeddings[6]}): (5, "duplicate_item_id"),
    }
    path = os.path.join(self.get_temp_dir(), "dirty-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
      for record in good + list(bad):
        writer.write(record)
    prefix = os.path.join(self.get_temp_dir(), "sids")
    manifest = self._run(path, prefix, collision_level=True)
    kept = [i for i in range(40) if i != 5]  # Both rows of item 5 are rejected.
    table = sid_table.read_sid_table(prefix, expected_fingerprint=self.fingerprint)
    ids, codes, _ = self._expected()
    self.assertAllEqual(table.item_ids, kept)
    self.assertAllEqual(table.codes, codes[kept])
    self.assertAllEqual(table.collision_index, sid_collisions.collision_index(codes[kept]))
    records = []
    for name in manifest["dead_letter"]["files"]:
      with open(os.path.join(self.get_temp_dir(), name)) as f:
        records += [json.loads(line) for line in f]
    got = sorted((r["reason"], r["item_id"]) for r in records)
    want = sorted([(reason, item) for item, reason in bad.values()] + [("duplicate_item_id", 5)])
    self.assertEqual(got, want)
    self.assertTrue(all(r["detail"] for r in records))
    self.assertTrue(all(r["source"] == path for r in records if r["reason"] != "duplicate_item_id"))
    self.assertEqual(manifest["dead_letter"]["count"], len(want))
    self.assertEqual(manifest["dead_letter"]["by_reason"]["duplicate_item_id"], 2)
    self.assertEqual(manifest["n_items"], len(kept))
    wrong_width = [r for r in records if r["reason"] == "wrong_width"][0]
    self.assertIn("5 values, the RQ-VAE D=16", wrong_width["detail"])

  def test_rerun_refuses_or_replaces_atomically(self):
    folder = os.path.join(self.get_temp_dir(), "rerun")
    prefix = os.path.join(folder, "sids")
    pattern = f"{self.tfrecords}-00000-of-00003.tfrecord"
    first = self._run(pattern, prefix)
    before = sorted(os.listdir(folder))
    refused = base.run_module(
      "trainers.beam_assign_sids",
      f"--input={pattern}",
      f"--output={prefix}",
      f"--rqvae_dir={self.rqvae_dir}",
    )
    self.assertEqual(refused.returncode, 2, refused.stderr[-2000:])
    self.assertIn("already holds a SID table", refused.stderr)
    self.assertEqual(sorted(os.listdir(folder)), before)
    # A replacement that fails at its commit leaves the old table whole, and no files of its own.
    with mock.patch.object(
      beam_sid_pipeline.sid_table, "write_sharded_manifest", side_effect=OSError("disk full")
    ):
      with self.assertRaises(Exception):
        self._run(f"{self.tfrecords}-*", prefix, overwrite=True)
    self.assertEqual(sorted(os.listdir(folder)), before)
    self.assertEqual(sid_table.read_sid_table(prefix).manifest["run_id"], first["run_id"])
    second = self._run(f"{self.tfrecords}-*", prefix, overwrite=True, num_shards=2)
    self.assertNotEqual(second["run_id"], first["run_id"])
    self.assertLen(sid_table.read_sid_table(prefix).item_ids, N_ITEMS)
    leftovers = [n for n in os.listdir(folder) if first["run_id"] in n]
    self.assertEqual(leftovers, [])

  def test_bad_flags(self):
    missing = base.run_module(
      "trainers.beam_assign_sids",
      f"--input={self.get_temp_dir()}/nothing-*",
      f"--output={self.get_temp_dir()}/sids",
      f"--rqvae_dir={self.rqvae_dir}",
    )
    self.assertEqual(missing.returncode, 2)
    self.assertIn("matches no files", missing.stderr)
    with self.assertRaisesRegex(Exception, "is a folder"):
      self._run(f"{self.tfrecords}-*", self.get_temp_dir())

  def test_pipeline_args_are_split_from_the_jobs_flags(self):
    argv = ["job", "--input=x", "--runner", "DirectRunner", "--nooverwrite", "--num_shards=2"]
    self.assertEqual(
      beam_assign_sids.pipeline_args(argv + ["--", "--project=p"], ["input", "overwrite"]),
      ["job", "--input=x", "--nooverwrite", "--", "--runner", "DirectRunner", "--num_shards=2",
       "--project=p"],
    )  # fmt: skip


if __name__ == "__main__":
  tf.test.main()
