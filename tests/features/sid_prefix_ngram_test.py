"""Tests for features/sid_prefix_ngram.py."""

import os

import numpy as np
import tensorflow as tf

from features import sid_prefix_ngram
from tests import base

P = 2**31 - 1


def _reference_ids(codes, codebook_size, max_prefix_length, num_rows):
  """Python big-int version of the documented formula."""
  out = []
  for row in codes:
    ids, local, offset = [], 0, 0
    for level in range(max_prefix_length):
      local = local * codebook_size + int(row[level])
      ids.append(offset + local)
      offset += codebook_size ** (level + 1)
    out.append([((i % P) * 48271 % P) % num_rows for i in ids])
  return out


class SidPrefixNgramTest(base.TestCase):
  def test_exact_golden(self):
    # K=4, L=3: (c1) = c1; (c1,c2) = 4 + 4*c1 + c2; (c1,c2,c3) = 4 + 16 + 16*c1 + 4*c2 + c3.
    # codes (1, 2, 3) -> 1, 4 + 6 = 10, 20 + 27 = 47; (0, 0, 0) -> 0, 4, 20. 4 + 16 + 64 = 84 rows.
    layer = sid_prefix_ngram.SidPrefixNgram(num_levels=3, codebook_size=4)
    self.assertEqual(layer.num_rows, 84)
    self.assertEqual(layer.max_prefix_length, 3)
    out = layer(tf.constant([[1, 2, 3], [0, 0, 0]], tf.int32))
    self.assertIsInstance(out, tf.RaggedTensor)
    self.assertEqual(out.dtype, tf.int64)
    self.assertAllEqual(out.to_list(), [[1, 10, 47], [0, 4, 20]])

  def test_shorter_max_prefix_golden(self):
    layer = sid_prefix_ngram.SidPrefixNgram(num_levels=3, codebook_size=4, max_prefix_length=2)
    self.assertEqual(layer.num_rows, 20)
    self.assertAllEqual(layer(tf.constant([[1, 2, 3]])).to_list(), [[1, 10]])

  def test_hashed_golden(self):
    # Exact ids 1, 10, 47 hashed into 10 rows: (id * 48271 mod P) mod 10.
    # 48271 -> 1; 482710 -> 0; 47 * 48271 = 2268737 -> 7. Ids 0, 4, 20: 0; 193084 -> 4; 965420 -> 0.
    layer = sid_prefix_ngram.SidPrefixNgram(num_levels=3, codebook_size=4, num_rows=10)
    self.assertTrue(layer.hashed)
    out = layer(tf.constant([[1, 2, 3], [0, 0, 0]]))
    self.assertAllEqual(out.to_list(), [[1, 0, 7], [0, 4, 0]])

  def test_paper_sizes_match_big_int_reference(self):
    codes = np.random.default_rng(0).integers(0, 2048, size=(64, 8))
    layer = sid_prefix_ngram.SidPrefixNgram(num_levels=8, codebook_size=2048, num_rows=1_000_003)
    out = layer(tf.constant(codes, tf.int32)).to_list()
    self.assertEqual(out, _reference_ids(codes.tolist(), 2048, 8, 1_000_003))
    self.assertAllInRange(np.array(out), 0, 1_000_002)

  def test_shared_prefixes_share_rows(self):
    layer = sid_prefix_ngram.SidPrefixNgram(num_levels=3, codebook_size=16, num_rows=1000)
    out = layer(tf.constant([[5, 7, 1], [5, 7, 2], [5, 8, 1]])).to_list()
    self.assertEqual(out[0][:2], out[1][:2])
    self.assertEqual(out[0][0], out[2][0])
    self.assertNotEqual(out[0][1], out[2][1])

  @base.parameterized.named_parameters(
    ("levels", dict(num_levels=0, codebook_size=4), "`num_levels` must be positive"),
    ("codebook", dict(num_levels=2, codebook_size=-1), "`codebook_size` must lie"),
    ("prefix", dict(num_levels=2, codebook_size=4, max_prefix_length=3), "`max_prefix_length`"),
    ("rows", dict(num_levels=2, codebook_size=4, num_rows=-5), "`num_rows` must be positive"),
    ("too_big", dict(num_levels=8, codebook_size=2048), "pass a `num_rows` budget"),
  )
  def test_bad_arguments(self, kwargs, message):
    with self.assertRaisesRegex(ValueError, message):
      sid_prefix_ngram.SidPrefixNgram(**kwargs)

  def test_out_of_range_code_fails(self):
    layer = sid_prefix_ngram.SidPrefixNgram(num_levels=2, codebook_size=4)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "codebook_size"):
      layer(tf.constant([[0, 9]]))

  def test_config_round_trip(self):
    layer = sid_prefix_ngram.SidPrefixNgram(3, 4, max_prefix_length=2, num_rows=7, name="prefix")
    clone = sid_prefix_ngram.SidPrefixNgram.from_config(layer.get_config())
    self.assertEqual(clone.get_config(), layer.get_config())
    codes = tf.constant([[1, 2, 3], [3, 0, 1]])
    self.assertAllEqual(clone(codes).to_list(), layer(codes).to_list())

  def test_tf_function_and_tf_data(self):
    layer = sid_prefix_ngram.SidPrefixNgram(num_levels=3, codebook_size=4, num_rows=10)
    codes = tf.constant([[1, 2, 3], [0, 0, 0]])
    self.assertAllEqual(tf.function(layer)(codes).to_list(), [[1, 0, 7], [0, 4, 0]])
    ds = tf.data.Dataset.from_tensor_slices(codes).batch(2).map(layer)
    self.assertAllEqual(next(iter(ds)).to_list(), [[1, 0, 7], [0, 4, 0]])

  def test_saved_model_round_trip(self):
    inputs = tf.keras.Input(shape=(8,), dtype=tf.int32)
    layer = sid_prefix_ngram.SidPrefixNgram(num_levels=8, codebook_size=2048, num_rows=50_000)
    model = tf.keras.Model(inputs, layer(inputs))
    path = os.path.join(self.get_temp_dir(), "prefix")
    tf.saved_model.save(model, path)
    loaded = tf.saved_model.load(path)
    codes = tf.constant(np.random.default_rng(1).integers(0, 2048, size=(16, 8)), tf.int32)
    self.assertAllEqual(loaded(codes).to_list(), model(codes).to_list())

  def test_short_fit_with_embedding_sum(self):
    codes = tf.keras.Input(shape=(3,), dtype=tf.int32)
    layer = sid_prefix_ngram.SidPrefixNgram(num_levels=3, codebook_size=4, num_rows=30)
    vectors = tf.keras.layers.Embedding(layer.num_rows, 3)(layer(codes))
    pooled = tf.keras.layers.Lambda(lambda x: tf.reduce_sum(x, axis=1))(vectors)
    model = tf.keras.Model(codes, tf.keras.layers.Dense(1)(pooled))
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).integers(0, 4, size=(32, 3)).astype(np.int32)
    history = model.fit(x, np.ones((32, 1)), epochs=2, batch_size=8, verbose=0)
    self.assertLen(history.history["loss"], 2)


if __name__ == "__main__":
  tf.test.main()
