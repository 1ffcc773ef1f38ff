"""Runs trainers.assign_sids as a user would, on an RQ-VAE trained by trainers.train_rqvae."""

import json
import os

import numpy as np
import tensorflow as tf

from features import datasets, sid_table, synthetic
from model import rqvae, sid_collisions
from tests import base

DATA = [
  "--dataset=synthetic",
  "--synthetic_items=300",
  "--synthetic_users=20",
  "--synthetic_interactions=500",
  "--synthetic_dim=16",
]


def _run(module, *flags, check=True):
  return base.run_module(module, *DATA, *flags, check=check)


class AssignSidsTest(base.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.run_dir = os.path.join(tf.compat.v1.test.get_temp_dir(), "rqvae_run")
    _run(
      "trainers.train_rqvae",
      f"--output_dir={cls.run_dir}",
      "--num_levels=2",
      "--codebook_size=8",
      "--latent_dim=8",
      "--epochs=2",
      "--batch_size=64",
      "--verbose=0",
    )

  def test_writes_a_verified_table_matching_the_model(self):
    output = os.path.join(self.get_temp_dir(), "sids.npz")
    result = _run(
      "trainers.assign_sids",
      f"--rqvae_dir={self.run_dir}/model",
      f"--output={output}",
      "--collision_level",
    )
    self.assertIn("unique-SID fraction", result.stdout)
    self.assertIn("assigning SIDs", result.stderr)  # tqdm progress bar.
    model = rqvae.load_rqvae(os.path.join(self.run_dir, "model"))
    table = sid_table.read_sid_table(output, expected_fingerprint=rqvae.fingerprint(model))
    dataset = datasets.load_dataset(
      "synthetic",
      synthetic_config=synthetic.SyntheticConfig(
        n_items=300, n_users=20, n_interactions=500, embedding_dim=16
      ),
    )
    self.assertAllEqual(table.item_ids, dataset.items["item_id"].to_numpy())
    self.assertAllEqual(table.codes, model.assign_codes(dataset.embeddings))
    self.assertAllEqual(table.collision_index, sid_collisions.collision_index(table.codes))
    self.assertEqual(table.manifest["num_levels"], 2)
    self.assertEqual(table.manifest["codebook_size"], 8)
    self.assertEqual(table.manifest["n_items"], 300)
    with open(output + ".stats.json") as f:
      stats = json.load(f)
    self.assertLen(stats["utilization"], 2)
    self.assertEqual(stats["fingerprint"], rqvae.fingerprint(model))

  def test_accepts_the_run_dir_and_refuses_other_models(self):
    output = os.path.join(self.get_temp_dir(), "sids.npz")
    _run("trainers.assign_sids", f"--rqvae_dir={self.run_dir}", f"--output={output}")
    table = sid_table.read_sid_table(output)
    self.assertIsNone(table.collision_index)
    with self.assertRaisesRegex(sid_table.SidTableError, "made by another RQ-VAE"):
      sid_table.read_sid_table(output, expected_fingerprint="0" * 64)
    self.assertEqual(table.codes.dtype, np.int32)

  def test_bad_inputs(self):
    output = os.path.join(self.get_temp_dir(), "sids.npz")
    missing, wrong_dim = base.run_module_probes(
      "trainers.assign_sids",
      (*DATA, f"--rqvae_dir={self.get_temp_dir()}", f"--output={output}"),
      (*DATA, f"--rqvae_dir={self.run_dir}", f"--output={output}", "--synthetic_dim=24"),
    )
    self.assertNotEqual(missing.returncode, 0)
    self.assertIn("config.json is missing", missing.stderr)
    self.assertIn("have shape (300, 24), but the RQ-VAE expects width D=16", wrong_dim.stderr)
    self.assertFalse(os.path.exists(output))


if __name__ == "__main__":
  tf.test.main()
