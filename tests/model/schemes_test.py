"""Tests of the scheme registry: lookups, the rows each scheme uses, config round trips of every
registered representation, and a toy representation added from outside the package."""

import os

import numpy as np

from features import datasets, splits, synthetic
from model import item_representation, schemes
from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import tf
from tests.model import ranker_stand_ins as stand_ins
from trainers import artifacts, experiment_report, item_flags, ranker_training


@tf.keras.utils.register_keras_serializable(package="semantic_ids_tests")
class FirstCodeItem(item_representation.ItemRepresentation):
  """A toy scheme: one embedding row per first-level code (K rows)."""

  feature_keys = ("content_embedding",)

  def __init__(self, sid_encoder, embedding_dim=4, **kwargs):
    super().__init__(embedding_dim=embedding_dim, **kwargs)
    self.sid_encoder = sid_encoder
    self.sid_encoder.trainable = False
    self.embedding = tf.keras.layers.Embedding(sid_encoder.codebook_size, embedding_dim)

  @property
  def num_rows(self):
    return int(self.sid_encoder.codebook_size)

  def call(self, features, training=None):
    codes = self.sid_encoder(self.select(features)["content_embedding"])
    return self.embedding(codes[:, 0])

  def get_config(self):
    config = super().get_config()
    config["sid_encoder"] = tf.keras.layers.serialize(self.sid_encoder)
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config, sid_encoder=tf.keras.layers.deserialize(config["sid_encoder"]))
    return cls(**config)


TOY = schemes.SchemeSpec(
  "first_code",
  lambda config, encoder, proto, name: FirstCodeItem(encoder, config.embedding_dim, name=name),
  uses_sid=True,
  rows=lambda budget, levels, k: k,
  doc="toy: first code only",
)


class SchemesTest(base.TestCase):
  def test_built_in_names_and_lookup(self):
    self.assertEqual(
      schemes.names()[:8],
      ("none", "hash", "dense", "unigram", "bigram", "prefix", "spm", "hybrid"),
    )
    self.assertEqual(schemes.sid_scheme_names(), ("unigram", "bigram", "prefix", "spm"))
    self.assertNotIn("none", schemes.comparison_names())
    with self.assertRaisesRegex(ValueError, "Unknown item representation 'nope'; registered"):
      schemes.get("nope")
    with self.assertRaisesRegex(ValueError, "already registered"):
      schemes.register(schemes.get("hash"))

  def test_rows_by_hand(self):
    # L=3, K=64: unigram 3*64, bigram one pair (64^2) plus one single level (64), spm >= L*K + 1.
    rows = {n: schemes.get(n).rows for n in schemes.names()}
    self.assertEqual(rows["unigram"](1000, 3, 64), 192)
    self.assertEqual(rows["bigram"](100_000, 3, 64), 4096 + 64)
    self.assertEqual(rows["spm"](10, 3, 64), 193)
    self.assertEqual(rows["hash"](10, 3, 64), 10)
    self.assertIsNone(rows["dense"](10, 3, 64))
    self.assertIsNone(rows["none"](10, 3, 64))

  def test_spm_budget_and_hybrid_split(self):
    config = schemes.ItemRepresentationConfig("hybrid", table_rows=1001, hybrid_sid_scheme="spm")
    self.assertEqual(schemes.hybrid_sid_share(config), 1001 - 500)
    self.assertEqual(config.spec.spm_budget(config), 501)
    prefix = schemes.ItemRepresentationConfig("hybrid", table_rows=1001)
    self.assertIsNone(prefix.spec.spm_budget(prefix))
    spm = schemes.ItemRepresentationConfig("spm", table_rows=300)
    self.assertEqual(spm.spec.spm_budget(spm), 300)

  def test_every_registered_representation_round_trips_its_config(self):
    encoder = stand_ins.fixed_encoder()
    features = stand_ins.toy_batch(batch=4)
    for name in schemes.names():
      spec = schemes.get(name)
      if spec.spm_budget(schemes.ItemRepresentationConfig(name, 4, 12)) is not None:
        continue  # SPM needs a trained model: tests/trainers/train_ranker_test.py covers it.
      with self.subTest(name):
        config = schemes.ItemRepresentationConfig(name, embedding_dim=4, table_rows=12)
        layer = schemes.create(config, sid_encoder=encoder if spec.uses_sid else None)
        if layer is None:
          continue
        expected = layer(features)
        clone = tf.keras.layers.deserialize(tf.keras.layers.serialize(layer))
        self.assertEqual(clone.get_config(), layer.get_config())
        clone(features)
        clone.set_weights(layer.get_weights())
        self.assertAllClose(clone(features), expected)


class ToyRepresentationTest(base.TestCase):
  """A representation registered here, in the test, runs through the ranker job and the
  experiment's summary without any other file knowing it."""

  def setUp(self):
    super().setUp()
    schemes.register(TOY)
    self.addCleanup(schemes.unregister, TOY.name)

  def test_ranker_job_and_summary(self):
    data = datasets.load_dataset(
      "synthetic",
      synthetic_config=synthetic.SyntheticConfig(
        n_items=200, n_users=40, n_interactions=2000, embedding_dim=8, seed=2
      ),
    )
    split = splits.split_dataset(data, "new_items")
    cache = artifacts.SidArtifacts(
      data,
      split,
      os.path.join(self.get_temp_dir(), "cache"),
      artifacts.SidConfig(num_levels=2, codebook_size=4, latent_dim=8, epochs=1),
      verbose=0,
    )
    self.assertIn("first_code", schemes.comparison_names())
    runs, results = [], {}
    for name in ("hash", "first_code"):
      config = schemes.ItemRepresentationConfig(name, embedding_dim=4, table_rows=50)
      encoder, proto = cache.for_config(config)
      run = experiment_report.Run("on", name, 50, 0)
      out = os.path.join(self.get_temp_dir(), name)
      results[run.key] = ranker_training.fit_and_evaluate(
        data,
        split,
        config,
        ranker_training.ranker_lib.RankerConfig(
          second_label_name=data.second_label_name, history_length=3, hidden_units=(8,)
        ),
        ranker_training.TrainConfig(epochs=1, batch_size=256, verbose=0),
        out,
        sid_encoder=encoder,
        spm_model_proto=proto,
      )
      runs.append(run)
    self.assertEqual(results["on/first_code_50/seed0"]["table_rows"], 4)
    reloaded = ranker_training.load_ranker(os.path.join(self.get_temp_dir(), "first_code"))
    self.assertIsInstance(reloaded.item_representation, FirstCodeItem)

    def load(run):
      with np.load(os.path.join(self.get_temp_dir(), run.scheme, "predictions.npz")) as f:
        return {k: f[k] for k in f.files}

    summary = experiment_report.summarize(runs, results, load, [50], lambda s, r: [r], 5)
    toy = [e for e in summary["entries"] if e["scheme"] == "first_code"]
    self.assertLen(toy, 1)
    self.assertIn("vs_hash", toy[0])
    self.assertIn("first_code", summary["selection_sid"]["rule"] + str(summary["entries"]))
    self.assertIn("| first_code | 50 | 4 |", experiment_report.markdown(summary))
    # The knobs of the ranker jobs accept it too.
    self.assertEqual(item_flags.item_config.__module__, "trainers.item_flags")


if __name__ == "__main__":
  tf.test.main()
