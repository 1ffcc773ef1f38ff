"""Tests of the ranker job: a small fit per scheme with the real SID layers, outputs, reload."""

import json
import os
import re

import numpy as np

from export import export_model
from features import datasets, splits, synthetic
from model import ranker, schemes, semantic_id_encoder
from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import tf
from trainers import artifacts, ranker_training

_CACHE = {}


def _setup():
  if not _CACHE:
    data = datasets.load_dataset(
      "synthetic",
      synthetic_config=synthetic.SyntheticConfig(
        n_items=300, n_users=60, n_interactions=3000, embedding_dim=8, seed=1
      ),
    )
    split = splits.split_dataset(data, "new_items")
    rqvae = artifacts.train_rqvae(
      data, artifacts.SidConfig(num_levels=2, codebook_size=4, latent_dim=8, epochs=2)
    )
    codes = rqvae.assign_codes(data.embeddings)
    weights = artifacts.impressions_per_item(data, split.train)
    proto = artifacts.train_spm(codes, weights, 4, 12)
    _CACHE.update(data=data, split=split, rqvae=rqvae, proto=proto)
  return _CACHE


# The runs the export tests read are saved; the others exercise the path that saves no model.
SAVED = ("hash", "spm", "hybrid")


class TrainRankerTest(base.TestCase):
  @classmethod
  def setUpClass(cls):
    """One fit per scheme, shared by every test of the class."""
    super().setUpClass()
    cls.runs = os.path.join(tf.compat.v1.test.get_temp_dir(), "train_ranker_runs")
    cls.results = {}
    for scheme in schemes.names():
      tf.keras.backend.clear_session()
      tf.keras.utils.set_random_seed(0)
      out = os.path.join(cls.runs, scheme)
      cls.results[scheme] = cls._fit(scheme, out, save_model=scheme in SAVED)

  @staticmethod
  def _fit(scheme, output_dir, save_model=False, history=True):
    c = _setup()
    encoder = semantic_id_encoder.SemanticIdEncoder.from_rqvae(c["rqvae"], name="sid_encoder")
    item_config = schemes.ItemRepresentationConfig(
      scheme=scheme, embedding_dim=4, table_rows=40, hybrid_sid_scheme="spm", id_dropout=0.5
    )
    ranker_config = ranker.RankerConfig(
      second_label_name=c["data"].second_label_name,
      user_buckets=100,
      user_embedding_dim=4,
      history_length=3,
      hidden_units=(8,),
      use_history=history and scheme != "none",
    )
    train_config = ranker_training.TrainConfig(epochs=1, batch_size=256, verbose=0)
    return ranker_training.fit_and_evaluate(
      c["data"],
      c["split"],
      item_config,
      ranker_config,
      train_config,
      output_dir,
      sid_encoder=encoder,
      spm_model_proto=c["proto"],
      save_model=save_model,
    )

  def test_fit_every_scheme(self):
    for scheme in schemes.names():
      with self.subTest(scheme):
        out, result = os.path.join(self.runs, scheme), self.results[scheme]
        self.assertEqual(
          set(result["test"]),
          {"all", "warm", "cold", "cold_known_user", "cold_new_user"}
          | {"head", "torso", "tail", "age_under_1d", "age_1d_or_more"},
        )
        self.assertBetween(result["test"]["all"]["auc"], 0.0, 1.0)
        with open(os.path.join(out, "metrics.json")) as f:
          self.assertEqual(json.load(f)["test"]["all"]["rows"], len(_setup()["split"].eval))
        self.assertTrue(os.path.isfile(os.path.join(out, "predictions.npz")))

  def test_saved_ranker_reloads(self):
    out = os.path.join(self.runs, "hybrid")
    with open(os.path.join(out, "ranker_config.json")) as f:
      config = json.load(f)
    self.assertEqual(config["outputs"], ["ctr", "engagement"])
    self.assertIn("history_content_embedding", config["inputs"])
    self.assertTrue(os.path.isfile(os.path.join(out, "assets", "spm.model")))
    rebuilt = ranker_training.load_ranker(out)
    features = ranker_training.sample_features(rebuilt, 8)
    features["content_embedding"] = tf.constant(
      np.random.default_rng(0).normal(size=(1, 8)), tf.float32
    )
    # The export (built from config + checkpoint) serves what the rebuilt ranker predicts.
    base_dir = os.path.join(self.get_temp_dir(), "serving")
    export_dir = export_model.export(out, base_dir)
    served = tf.saved_model.load(export_dir)
    self.assertAllClose(
      served.signatures["serving_default"](**features)["ctr"],
      rebuilt(features)["ctr"],
      atol=1e-6,
    )

  def test_export_caches_the_catalogue_and_refuses_bad_catalogues(self):
    out = os.path.join(self.runs, "spm")
    embeddings = _setup()["data"].embeddings
    path = os.path.join(self.get_temp_dir(), "catalogue.npy")
    np.save(path, embeddings)
    config = export_model.ExportConfig(catalogue_embeddings=path)
    plain = export_model.export(out, os.path.join(self.get_temp_dir(), "plain"))
    cached = export_model.export(out, os.path.join(self.get_temp_dir(), "cached"), config)
    self.assertGreater(
      export_model.directory_size(cached), export_model.directory_size(plain) + embeddings.nbytes
    )
    rebuilt = ranker_training.load_ranker(out)
    features = ranker_training.sample_features(rebuilt, 8)
    features["content_embedding"] = tf.constant(embeddings[:1])
    served = tf.saved_model.load(cached).signatures["serving_default"](**features)
    self.assertAllClose(served["ctr"], rebuilt(features)["ctr"], atol=1e-6)
    bad = {
      "wide.npy": (
        np.zeros((3, 9), np.float32),
        "are 9 wide; the ranker reads content embeddings of 8",
      ),
      "nan.npy": (np.full((3, 8), np.nan, np.float32), "rows [0, 1, 2] hold NaN or Inf"),
      "flat.npy": (np.zeros(8, np.float32), "must be a numeric [n, D] array"),
    }
    for name, (array, message) in bad.items():
      with self.subTest(name):
        bad_path = os.path.join(self.get_temp_dir(), name)
        np.save(bad_path, array)
        bad_config = export_model.ExportConfig(catalogue_embeddings=bad_path)
        base_dir = os.path.join(self.get_temp_dir(), "bad_" + name)
        with self.assertRaisesRegex(ValueError, re.escape(bad_path) + ".*" + re.escape(message)):
          export_model.export(out, base_dir, bad_config)
        self.assertFalse(os.path.exists(os.path.join(base_dir, "1")))
    hash_out = os.path.join(self.runs, "hash")
    with self.assertRaisesRegex(ValueError, "no semantic-ID part"):
      export_model.export(hash_out, os.path.join(self.get_temp_dir(), "hash_export"), config)

  def test_validation_split_comes_from_training_period(self):
    split = _setup()["split"]
    val = ranker_training.validation_split(split)
    self.assertEqual(len(val.train) + len(val.eval), len(split.train))
    self.assertTrue(val.eval["cold"].any())


if __name__ == "__main__":
  tf.test.main()
