"""Tests for features/sid_ngram.py."""

import os

import numpy as np
import tensorflow as tf

from features import sid_ngram
from tests import base

P = 2**31 - 1


def _reference_ids(codes, codebook_size, ngram_size, num_rows=None):
  """Python big-int version of the documented formula."""
  num_levels = len(codes[0])
  exact = sid_ngram.ngram_exact_num_rows(num_levels, codebook_size, ngram_size)
  out = []
  for row in codes:
    ids, offset = [], 0
    for start, size in sid_ngram.ngram_groups(num_levels, ngram_size):
      local = 0
      for code in row[start : start + size]:
        local = local * codebook_size + int(code)
      ids.append(offset + local)
      offset += codebook_size**size
    if num_rows is not None and num_rows < exact:
      ids = [((i % P) * 48271 % P) % num_rows for i in ids]
    out.append(ids)
  return out


class NgramIdsTest(base.TestCase):
  def test_groups_with_a_shorter_last_group(self):
    self.assertEqual(sid_ngram.ngram_groups(5, 2), [(0, 2), (2, 2), (4, 1)])
    self.assertEqual(sid_ngram.ngram_groups(8, 8), [(0, 8)])
    self.assertEqual(sid_ngram.ngram_exact_num_rows(5, 4, 2), 16 + 16 + 4)

  def test_hash_keys_golden(self):
    # (6 * 48271) % P = 289626 -> 6; (28 * 48271) % P = 1351588 -> 8;
    # 50000 * 48271 = 2413550000 > P -> 2413550000 - 2147483647 = 266066353 -> 3.
    keys = tf.constant([0, 6, 28, 50000], tf.int64)
    self.assertAllEqual(sid_ngram.hash_keys(keys, 10), [0, 6, 8, 3])

  def test_keys_are_exact_ids_mod_p_without_overflow(self):
    codes = tf.constant([[2047] * 8, [1, 0, 0, 0, 0, 0, 0, 5]], tf.int64)
    keys = sid_ngram.ngram_keys(codes, 2048, 8)
    expected = [[(2048**8 - 1) % P], [(2048**7 + 5) % P]]
    self.assertAllEqual(keys, expected)


class SidNgramTest(base.TestCase):
  def test_bigram_exact_golden(self):
    # K=4, L=4, N=2: group 0 = c1*4 + c2, group 1 = 16 + c3*4 + c4; 32 rows.
    layer = sid_ngram.SidNgram(num_levels=4, codebook_size=4, ngram_size=2)
    self.assertEqual(layer.num_rows, 32)
    self.assertFalse(layer.hashed)
    out = layer(tf.constant([[1, 2, 3, 0], [0, 0, 3, 3]], tf.int32))
    self.assertIsInstance(out, tf.RaggedTensor)
    self.assertEqual(out.dtype, tf.int64)
    self.assertAllEqual(out.to_list(), [[6, 28], [0, 31]])

  def test_unigram_golden(self):
    # N=1: id = level * K + code.
    layer = sid_ngram.SidNgram(num_levels=3, codebook_size=4, ngram_size=1)
    self.assertEqual(layer.num_rows, 12)
    self.assertAllEqual(layer(tf.constant([[1, 2, 3]])).to_list(), [[1, 6, 11]])

  def test_shorter_last_group_golden(self):
    # L=5, N=2: groups [0,2), [2,4), [4,5); offsets 0, 16, 32; 36 rows.
    layer = sid_ngram.SidNgram(num_levels=5, codebook_size=4, ngram_size=2)
    self.assertEqual(layer.num_rows, 36)
    self.assertEqual(layer.num_tokens, 3)
    self.assertAllEqual(layer(tf.constant([[1, 2, 3, 0, 3]])).to_list(), [[6, 28, 35]])

  def test_hashed_golden(self):
    # Exact ids 6, 28 / 0, 31 hashed into 10 rows: (id * 48271 mod P) mod 10.
    # 6*48271 = 289626 -> 6; 28*48271 = 1351588 -> 8; 0 -> 0; 31*48271 = 1496401 -> 1.
    layer = sid_ngram.SidNgram(num_levels=4, codebook_size=4, ngram_size=2, num_rows=10)
    self.assertTrue(layer.hashed)
    out = layer(tf.constant([[1, 2, 3, 0], [0, 0, 3, 3]]))
    self.assertAllEqual(out.to_list(), [[6, 8], [0, 1]])

  def test_budget_above_exact_keeps_exact_ids(self):
    layer = sid_ngram.SidNgram(num_levels=4, codebook_size=4, ngram_size=2, num_rows=1000)
    self.assertEqual(layer.num_rows, 32)
    self.assertAllEqual(layer(tf.constant([[1, 2, 3, 0]])).to_list(), [[6, 28]])

  @base.parameterized.named_parameters(
    ("unigram", 1, None),
    ("bigram_hashed", 2, 100_003),
    ("trigram_short_last", 3, 65_536),
    ("full_sid", 8, 1_000_000),
  )
  def test_matches_big_int_reference_for_paper_sizes(self, ngram_size, num_rows):
    codes = np.random.default_rng(ngram_size).integers(0, 2048, size=(64, 8))
    layer = sid_ngram.SidNgram(8, 2048, ngram_size, num_rows=num_rows)
    out = layer(tf.constant(codes, tf.int32)).to_list()
    self.assertEqual(out, _reference_ids(codes.tolist(), 2048, ngram_size, num_rows))
    self.assertAllInRange(np.array(out), 0, layer.num_rows - 1)

  @base.parameterized.named_parameters(
    ("levels", dict(num_levels=0, codebook_size=4, ngram_size=1), "`num_levels` must be positive"),
    ("codebook", dict(num_levels=2, codebook_size=0, ngram_size=1), "`codebook_size` must lie"),
    ("ngram", dict(num_levels=2, codebook_size=4, ngram_size=3), "`ngram_size` must lie in"),
    ("rows", dict(num_levels=2, codebook_size=4, ngram_size=1, num_rows=0), "`num_rows` must be"),
    ("too_big", dict(num_levels=8, codebook_size=2048, ngram_size=4), "pass a `num_rows` budget"),
  )
  def test_bad_arguments(self, kwargs, message):
    with self.assertRaisesRegex(ValueError, message):
      sid_ngram.SidNgram(**kwargs)

  def test_bad_codes(self):
    layer = sid_ngram.SidNgram(num_levels=2, codebook_size=4, ngram_size=1)
    with self.assertRaisesRegex(ValueError, r"shape \[batch, 2\]"):
      layer(tf.constant([[1, 2, 3]]))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "codebook_size"):
      layer(tf.constant([[1, 4]]))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "non-negative"):
      layer(tf.constant([[-1, 0]]))

  def test_config_round_trip(self):
    layer = sid_ngram.SidNgram(num_levels=4, codebook_size=4, ngram_size=2, num_rows=10, name="bi")
    clone = sid_ngram.SidNgram.from_config(layer.get_config())
    self.assertEqual(clone.get_config(), layer.get_config())
    codes = tf.constant([[1, 2, 3, 0], [3, 3, 3, 3]])
    self.assertAllEqual(clone(codes).to_list(), layer(codes).to_list())
    revived = tf.keras.layers.deserialize(tf.keras.layers.serialize(layer))
    self.assertIsInstance(revived, sid_ngram.SidNgram)

  def test_tf_function_and_tf_data(self):
    layer = sid_ngram.SidNgram(num_levels=4, codebook_size=4, ngram_size=2, num_rows=10)
    codes = tf.constant([[1, 2, 3, 0], [0, 0, 3, 3]])
    traced = tf.function(layer)(codes)
    self.assertAllEqual(traced.to_list(), [[6, 8], [0, 1]])
    ds = tf.data.Dataset.from_tensor_slices(codes).batch(2).map(layer)
    self.assertAllEqual(next(iter(ds)).to_list(), [[6, 8], [0, 1]])

  def test_unknown_static_width(self):
    layer = sid_ngram.SidNgram(num_levels=4, codebook_size=4, ngram_size=2, num_rows=10)
    fn = tf.function(layer, input_signature=[tf.TensorSpec([None, None], tf.int32)])
    self.assertAllEqual(fn(tf.constant([[1, 2, 3, 0]])).to_list(), [[6, 8]])
    with self.assertRaises(tf.errors.InvalidArgumentError):
      fn(tf.constant([[1, 2, 3]]))

  def test_saved_model_round_trip(self):
    inputs = tf.keras.Input(shape=(4,), dtype=tf.int32)
    layer = sid_ngram.SidNgram(num_levels=4, codebook_size=4, ngram_size=2, num_rows=10)
    model = tf.keras.Model(inputs, layer(inputs))
    path = os.path.join(self.get_temp_dir(), "ngram")
    tf.saved_model.save(model, path)
    loaded = tf.saved_model.load(path)
    codes = tf.constant([[1, 2, 3, 0], [0, 0, 3, 3]], tf.int32)
    self.assertAllEqual(loaded(codes).to_list(), model(codes).to_list())

  def test_short_fit_with_embedding_sum(self):
    codes = tf.keras.Input(shape=(4,), dtype=tf.int32)
    layer = sid_ngram.SidNgram(num_levels=4, codebook_size=4, ngram_size=2)
    ids = layer(codes)
    vectors = tf.keras.layers.Embedding(layer.num_rows, 3)(ids)
    pooled = tf.keras.layers.Lambda(lambda x: tf.reduce_sum(x, axis=1))(vectors)
    model = tf.keras.Model(codes, tf.keras.layers.Dense(1)(pooled))
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).integers(0, 4, size=(32, 4)).astype(np.int32)
    history = model.fit(x, np.ones((32, 1)), epochs=2, batch_size=8, verbose=0)
    self.assertLen(history.history["loss"], 2)


if __name__ == "__main__":
  tf.test.main()
