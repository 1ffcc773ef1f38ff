"""Runs trainers.train_spm as a user would, on a SID table made in the test."""

import json
import os

import numpy as np
import tensorflow as tf

from features import datasets, sid_spm, sid_table, splits, spm_training, synthetic
from tests import base

SIZES = dict(n_items=300, n_users=40, n_interactions=3000)
DATA = [
  "--dataset=synthetic",
  "--split=new_items",
  "--synthetic_items=300",
  "--synthetic_users=40",
  "--synthetic_interactions=3000",
]
L, K = 3, 8


def _run(*flags):
  return base.run_module("trainers.train_spm", *DATA, *flags, timeout=300)


class TrainSpmTest(base.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.dataset = datasets.load_dataset(
      "synthetic", synthetic_config=synthetic.SyntheticConfig(**SIZES)
    )
    # Items under one topic share a prefix: codes come from the item's embedding signs.
    item_ids = cls.dataset.items["item_id"].to_numpy()
    bits = (cls.dataset.embeddings[:, : L * 3] > 0).astype(np.int64).reshape(-1, L, 3)
    cls.codes = (bits * np.array([4, 2, 1])).sum(-1)
    cls.table = sid_table.make_table(item_ids, cls.codes, fingerprint="test", codebook_size=K)
    cls._run_failing_probes()

  @classmethod
  def _run_failing_probes(cls):
    """Every run below fails before training: one interpreter runs them all."""
    folder = os.path.join(tf.compat.v1.test.get_temp_dir(), "train_spm_probes")
    os.makedirs(folder, exist_ok=True)
    sids, cls.missing = os.path.join(folder, "sids.npz"), os.path.join(folder, "nope.npz")
    sid_table.write_sid_table(sids, cls.table)
    other = os.path.join(folder, "other.npz")
    sid_table.write_sid_table(
      other,
      sid_table.make_table(
        np.arange(10**6, 10**6 + 5), np.zeros((5, L)), fingerprint="x", codebook_size=K
      ),
    )
    probes = {
      "budget": (*DATA, f"--sids={sids}", "--vocab_size=20", "--output=/nonexistent/x.model"),
      "missing_table": (*DATA, f"--sids={cls.missing}", "--vocab_size=60", "--output=x.model"),
      "missing_flags": (*DATA, "--vocab_size=60"),
      "other_dataset": (*DATA, f"--sids={other}", "--vocab_size=60", "--output=x.model"),
      "help": ("--help",),
    }
    results = base.run_module_probes("trainers.train_spm", *probes.values(), timeout=300)
    cls.probes = dict(zip(probes, results))

  def setUp(self):
    super().setUp()
    self.sids = os.path.join(self.get_temp_dir(), "sids.npz")
    sid_table.write_sid_table(self.sids, self.table)

  def test_trains_on_training_impressions_and_writes_model_stats_and_plot(self):
    output = os.path.join(self.get_temp_dir(), "out", "sid.model")
    proc = _run(f"--sids={self.sids}", "--vocab_size=60", f"--output={output}")
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertIn("wrote", proc.stdout)
    with open(output, "rb") as f:
      proto = f.read()
    # Same as training in-process on the new_items split's training rows.
    train = splits.split_dataset(self.dataset, "new_items").train
    weights = spm_training.impression_counts(self.table.item_ids, train["item_id"].to_numpy())
    expected = spm_training.train_sid_spm(
      self.codes, weights, K, spm_training.SpmTrainingConfig(vocab_size=60)
    )
    self.assertEqual(proto, expected)
    layer = sid_spm.SidSentencePiece.from_file(output, num_levels=L, codebook_size=K)
    self.assertEqual(layer.num_rows, 60)
    with open(output + ".stats.json") as f:
      stats = json.load(f)
    self.assertEqual(stats["num_rows"], 60)
    self.assertEqual(stats["n_impressions"], int(weights.sum()))
    self.assertEqual(stats["n_impressed_items"], int((weights > 0).sum()))
    self.assertLen(stats["tokens_by_popularity_decile"], 10)
    self.assertLessEqual(stats["tokens_per_item_max"], L)
    self.assertTrue(os.path.getsize(output + ".deciles.png") > 1000)
    # A re-run rewrites the same model.
    self.assertEqual(
      _run(f"--sids={self.sids}", "--vocab_size=60", f"--output={output}").returncode, 0
    )
    with open(output, "rb") as f:
      self.assertEqual(f.read(), proto)

  def test_bpe_and_max_piece_length(self):
    output = os.path.join(self.get_temp_dir(), "bpe.model")
    proc = _run(
      f"--sids={self.sids}", "--vocab_size=50", f"--output={output}", "--model_type=bpe",
      "--max_piece_length=2",
    )  # fmt: skip
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    with open(output, "rb") as f:
      self.assertEqual(sid_spm.check_model_proto(f.read(), L, K)["max_piece_length"], 2)

  def test_budget_below_the_symbols_is_named(self):
    proc = self.probes["budget"]
    self.assertNotEqual(proc.returncode, 0)
    self.assertIn("at least L*K + 1 = 25", proc.stderr)
    self.assertIn("--vocab_size=20", proc.stderr)

  def test_missing_table_and_flags_are_named(self):
    proc = self.probes["missing_table"]
    self.assertNotEqual(proc.returncode, 0)
    self.assertIn(f"--sids={self.missing}", proc.stderr)
    proc = self.probes["missing_flags"]
    self.assertNotEqual(proc.returncode, 0)
    self.assertIn("--sids, --output", proc.stderr)

  def test_table_of_another_dataset_is_refused(self):
    proc = self.probes["other_dataset"]
    self.assertNotEqual(proc.returncode, 0)
    self.assertIn("0 in common: the table was made from another dataset", proc.stderr)

  def test_help(self):
    proc = self.probes["help"]
    self.assertIn("--vocab_size", proc.stdout)  # absl's --help exits with status 1.
    self.assertIn("--sids", proc.stdout)


if __name__ == "__main__":
  tf.test.main()
