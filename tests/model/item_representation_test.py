"""Tests of the item representations: shapes, hand-checkable values, config, SavedModel round
trip."""

import dataclasses
import os

import numpy as np

from model import dense_item, hash_item, hybrid_item, schemes, semantic_id_encoder, sid_item
from model import ranker as ranker_lib
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

  def test_precomputed_codes_and_tokens_give_the_same_vectors(self):
    layer = _sid(dim=4)
    x = stand_ins.toy_batch(batch=6)["content_embedding"]
    raw = layer({"content_embedding": x})
    cache = layer.catalogue_inputs(x.numpy(), batch_size=4)
    self.assertAllEqual(cache["codes"], layer.codes(x))
    self.assertAllEqual(cache["sid_tokens"], layer.tokens(x))
    self.assertEqual(cache["sid_tokens"].dtype, np.int64)
    self.assertAllEqual(layer({"codes": tf.constant(cache["codes"])}), raw)
    self.assertAllEqual(layer({"sid_tokens": tf.constant(cache["sid_tokens"])}), raw)
    # -1 is no token: a padded row sums fewer rows.
    padded = cache["sid_tokens"].copy()
    padded[:, 1] = -1
    table = layer.table.numpy()
    self.assertAllClose(layer({"sid_tokens": tf.constant(padded)}), table[padded[:, 0]])

  def test_small_sid_spaces_are_tabulated_exactly(self):
    layer = _sid(dim=4)  # K^L = 9 SIDs.
    self.assertIsNotNone(layer.token_table)
    every = np.array([[a, b] for a in range(3) for b in range(3)], np.int32)
    self.assertAllEqual(layer.tokens_of_codes(tf.constant(every)), layer._tokenize(every))
    self.assertAllEqual(sid_item.sid_index(tf.constant(every), 3), np.arange(9))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r"`codes` must lie in \[0, "):
      layer.tokens_of_codes(tf.constant([[0, 3]]))
    big = semantic_id_encoder.SemanticIdEncoder(
      num_levels=3, codebook_size=128, input_dim=4, latent_dim=4
    )
    large = sid_item.SidItem(big, stand_ins.UnigramStandIn(3, 128), embedding_dim=4)
    self.assertIsNone(large.token_table)  # 128^3 SIDs > MAX_TABULATED_SIDS: the tokenizer runs.
    table = sid_item.TokenTable(np.array([[0, -1], [5, 7]]), codebook_size=2, bits=4)
    self.assertAllEqual(table(tf.constant([[0, 1], [0, 0]])), [[5, 7], [0, -1]])  # index 1, 0
    self.assertIsNone(sid_item.TokenTable.bits_for(num_rows=2**40, max_tokens=2))

  def test_reading_switches_the_inputs_and_restores_them(self):
    hybrid = _representations()["hybrid"]
    self.assertEqual(hybrid.feature_keys, ("item_id", "content_embedding"))
    with sid_item.reading(hybrid, sid_item.CODES):
      self.assertEqual(hybrid.feature_keys, ("item_id", "codes"))
      self.assertEqual(hybrid.sid_part.feature_keys, ("codes",))
    self.assertEqual(hybrid.feature_keys, ("item_id", "content_embedding"))
    sid_item.use_inputs(hybrid, sid_item.TOKENS)
    self.assertEqual(hybrid.feature_keys, ("item_id", "sid_tokens"))
    sid_item.use_inputs(hash_item.HashItem(num_bins=4), sid_item.TOKENS)  # No SID part: no-op.
    self.assertEqual(
      sid_item.catalogue_inputs(hash_item.HashItem(num_bins=4), np.zeros((2, 4))), {}
    )
    with self.assertRaisesRegex(ValueError, "must be one of .*Received: 'ids'"):
      sid_item.use_inputs(hybrid, "ids")
    with self.assertRaisesRegex(KeyError, "needs features \\['sid_tokens'\\]"):
      hybrid.sid_part({"item_id": tf.constant(["a"])})

  def test_ranker_with_history_reads_cached_tokens(self):
    """Candidates and history items through the user tower: the cached path equals the raw one."""
    config = ranker_lib.RankerConfig(user_buckets=8, history_length=3, hidden_units=(4,))
    model = ranker_lib.build_ranker(_sid(dim=4), config)
    raw = stand_ins.toy_batch(batch=5)
    expected = model(raw)
    layer = model.item_representation
    tokens = lambda x: layer.tokens(tf.reshape(x, [-1, stand_ins.D]))  # noqa: E731
    cached = {k: v for k, v in raw.items() if "content_embedding" not in k}
    cached["sid_tokens"] = tokens(raw["content_embedding"])
    cached["history_sid_tokens"] = tf.reshape(tokens(raw["history_content_embedding"]), [5, 3, 2])
    with sid_item.reading(layer, sid_item.TOKENS):
      self.assertCountEqual(
        model.input_keys, ["user_id", "sid_tokens", "history_sid_tokens", "history_mask"]
      )
      got = model(cached)
    for name in expected:
      self.assertAllEqual(got[name], expected[name])
    self.assertIn("content_embedding", model.input_keys)

  def test_token_dropout_keeps_first_token(self):
    tokens = tf.ragged.constant([[1, 2, 3], [4]], dtype=tf.int64)
    dropped = sid_item.drop_tokens(tokens, rate=0.999999, seed=1)
    self.assertAllEqual(dropped.to_list(), [[1], [4]])
    self.assertAllEqual(sid_item.drop_tokens(tokens, rate=0.0).to_list(), tokens.to_list())
    dense = tf.constant([[1, 2, 3], [4, -1, -1]], tf.int64)
    self.assertAllEqual(
      sid_item.drop_padded_tokens(dense, rate=0.999999, seed=1), [[1, -1, -1], [4, -1, -1]]
    )
    self.assertAllEqual(sid_item.drop_padded_tokens(dense, rate=0.0), dense)

  def test_more_tokens_than_max_tokens_fail(self):
    ragged = tf.ragged.constant([[1, 2, 3]], dtype=tf.int64)
    self.assertAllEqual(sid_item.padded(ragged, 4), [[1, 2, 3, -1]])
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "more than max_tokens=2"):
      sid_item.padded(ragged, 2)

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
