"""Tests of the item representations: shapes, hand-checkable values, config, SavedModel round
trip."""

import dataclasses
import os

import numpy as np

from model import dense_item, hash_item, hybrid_item, schemes, sid_item
from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import tf
from tests.model import ranker_stand_ins as stand_ins


def _sid(dim=8, token_dropout=0.0):
  return sid_item.SidItem(
    sid_encoder=stand_ins.fixed_encoder(),
    tokenizer=stand_ins.UnigramStandIn(),
    embedding_dim=dim,
    token_dropout=token_dropout,
  )


def _representations(dim=8):
  return {
    "hash": hash_item.HashItem(num_bins=16, embedding_dim=dim),
    "dense": dense_item.DenseItem(embedding_dim=dim),
    "sid": _sid(dim),
    "hybrid": hybrid_item.HybridItem(
      id_part=hash_item.HashItem(num_bins=16, embedding_dim=dim),
      sid_part=_sid(dim),
      id_dropout=0.5,
    ),
  }


def _inference(layer):
  def serve(features):
    return layer(features, training=False)

  return serve


class ItemRepresentationTest(base.TestCase):
  def test_output_shapes(self):
    features = stand_ins.toy_batch(batch=5)
    for name, layer in _representations(dim=8).items():
      with self.subTest(name):
        out = layer(features)
        self.assertEqual(out.shape, (5, 8))
        self.assertEqual(out.dtype, tf.float32)

  def test_sid_item_sums_token_rows(self):
    layer = _sid(dim=2)
    x = tf.constant([[2.0, -3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    self.assertAllEqual(layer.codes(x), [[1, 2], [0, 0]])
    layer({"content_embedding": x})
    table = np.arange(12, dtype=np.float32).reshape(6, 2)
    layer.table.assign(table)
    # Item 0: tokens 1 (level 0, code 1) and 3 + 2 = 5; item 1: tokens 0 and 3.
    self.assertAllClose(layer({"content_embedding": x}), [table[1] + table[5], table[0] + table[3]])
    self.assertEqual(layer.table.name.split("/")[-1], "subword_embeddings:0")

  def test_token_dropout_keeps_first_token(self):
    tokens = tf.ragged.constant([[1, 2, 3], [4]], dtype=tf.int64)
    dropped = sid_item.drop_tokens(tokens, rate=0.999999, seed=1)
    self.assertAllEqual(dropped.to_list(), [[1], [4]])
    self.assertAllEqual(sid_item.drop_tokens(tokens, rate=0.0).to_list(), tokens.to_list())

  def test_hybrid_id_dropout_only_in_training(self):
    layer = hybrid_item.HybridItem(
      id_part=hash_item.HashItem(num_bins=16, embedding_dim=4), sid_part=_sid(4), id_dropout=0.99
    )
    features = stand_ins.toy_batch(batch=64)
    self.assertAllClose(layer(features, training=False), layer(features, training=False))
    sid_only = layer.sid_part(features)
    self.assertGreater(
      np.mean(np.all(np.isclose(layer(features, training=True), sid_only), 1)), 0.8
    )
    self.assertEqual(layer.num_rows, 16 + 6)

  def test_zero_table_leaves_unreached_rows_at_zero_after_training(self):
    layer = hash_item.HashItem(num_bins=64, embedding_dim=4, embeddings_initializer="zeros")
    seen, unseen = tf.constant(["a", "b", "c"]), tf.constant(["zz"])
    buckets = layer.hashing(tf.concat([seen, unseen], 0)).numpy()
    self.assertNotIn(buckets[-1], buckets[:-1])  # The unseen item has a bucket of its own.
    optimizer = tf.keras.optimizers.Adam(0.1)
    for _ in range(3):
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer({"item_id": seen}) - 1.0))
      optimizer.apply_gradients(
        zip(tape.gradient(loss, layer.trainable_weights), layer.trainable_weights)
      )
    self.assertGreater(float(tf.reduce_min(tf.abs(layer({"item_id": seen})))), 0.0)
    self.assertAllEqual(layer({"item_id": unseen}), np.zeros((1, 4)))

  def test_table_initializer_reaches_every_table(self):
    features = stand_ins.toy_batch(batch=3)
    for scheme in ("hash", "unigram", "hybrid"):
      with self.subTest(scheme):
        config = schemes.ItemRepresentationConfig(
          scheme, 4, 16, hybrid_sid_scheme="unigram", table_initializer="zeros"
        )
        layer = schemes.create(config, sid_encoder=stand_ins.fixed_encoder())
        self.assertAllEqual(layer(features), np.zeros((3, 4)))
        rebuilt = type(layer).from_config(layer.get_config())
        self.assertAllEqual(rebuilt(features), np.zeros((3, 4)))
    normal = schemes.create(schemes.ItemRepresentationConfig("hash", 4))
    self.assertGreater(float(tf.reduce_max(tf.abs(normal(features)))), 0.0)

  def test_hybrid_gives_rows_the_sid_part_cannot_use_to_the_hash_part(self):
    encoder = stand_ins.fixed_encoder()  # L=2 levels of K=3 codes: a unigram table of 6 rows.
    config = schemes.ItemRepresentationConfig(
      "hybrid", 4, 40, hybrid_sid_scheme="unigram", hybrid_hash_fraction=0.5
    )
    layer = schemes.create(config, sid_encoder=encoder)
    self.assertEqual((layer.sid_part.num_rows, layer.id_part.num_rows), (6, 34))
    config = dataclasses.replace(config, table_rows=10)  # Share 5 < 6: the SID part keeps 5.
    layer = schemes.create(config, sid_encoder=encoder)
    self.assertEqual((layer.sid_part.num_rows, layer.id_part.num_rows), (5, 5))

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "`num_bins` must be positive. Received: num_bins=0"):
      hash_item.HashItem(num_bins=0)
    with self.assertRaisesRegex(ValueError, "`embedding_dim` must be positive"):
      dense_item.DenseItem(embedding_dim=0)
    with self.assertRaisesRegex(ValueError, "`token_dropout` must be in"):
      _sid(token_dropout=1.0)
    with self.assertRaisesRegex(ValueError, "same embedding_dim"):
      hybrid_item.HybridItem(hash_item.HashItem(num_bins=4, embedding_dim=3), _sid(4))
    with self.assertRaisesRegex(KeyError, "needs features"):
      dense_item.DenseItem()({"item_id": tf.constant(["a"])})
    with self.assertRaisesRegex(ValueError, "`table_rows` must be positive"):
      schemes.ItemRepresentationConfig(table_rows=0)
    with self.assertRaisesRegex(ValueError, "`table_initializer` must be one of .*'ones'"):
      schemes.ItemRepresentationConfig(table_initializer="ones")
    with self.assertRaisesRegex(ValueError, "needs a `sid_encoder`"):
      schemes.create(schemes.ItemRepresentationConfig(scheme="unigram"))

  def test_config_round_trip(self):
    config = schemes.ItemRepresentationConfig(
      scheme="hybrid", table_rows=100, hybrid_sid_scheme="spm", id_dropout=0.2
    )
    again = schemes.ItemRepresentationConfig.from_dict(config.to_dict())
    self.assertEqual(again, config)
    self.assertEqual(again.scheme, "hybrid")
    layer = hash_item.HashItem(num_bins=7, embedding_dim=3, name="h")
    self.assertEqual(
      hash_item.HashItem.from_config(layer.get_config()).get_config(), layer.get_config()
    )
    sid = _sid(4)
    rebuilt = sid_item.SidItem.from_config(sid.get_config())
    self.assertEqual(rebuilt.num_rows, 6)

  def test_factory_builds_each_scheme(self):
    self.assertIsNone(schemes.create(schemes.ItemRepresentationConfig("none")))
    built = schemes.create(schemes.ItemRepresentationConfig("hash", 4, 50))
    self.assertIsInstance(built, hash_item.HashItem)
    self.assertEqual(built.num_rows, 50)
    built = schemes.create(schemes.ItemRepresentationConfig("dense", 4))
    self.assertIsInstance(built, dense_item.DenseItem)

  def test_saved_model_round_trip(self):
    features = stand_ins.toy_batch(batch=4)
    for name, layer in _representations(dim=4).items():
      with self.subTest(name):
        keys = layer.feature_keys
        spec = {
          "item_id": tf.TensorSpec([None], tf.string),
          "content_embedding": tf.TensorSpec([None, stand_ins.D], tf.float32),
        }
        module = tf.Module()
        module.layer = layer
        module.serve = tf.function(_inference(layer), input_signature=[{k: spec[k] for k in keys}])
        inputs = {k: features[k] for k in keys}
        expected = module.serve(inputs)
        path = os.path.join(self.get_temp_dir(), name)
        tf.saved_model.save(module, path)
        loaded = tf.saved_model.load(path)
        self.assertAllClose(loaded.serve(inputs), expected)


if __name__ == "__main__":
  tf.test.main()
