"""Tests for features/sid_spm.py, with tiny SentencePiece models trained in the test."""

import io
import os

import numpy as np
import sentencepiece as spm
import tensorflow as tf

from features import sid_spm, sid_symbols, spm_training
from tests import base

# K=3, L=2. SID (0, 1) has 120 impressions, (2, 2) 50, (0, 2) 3, (1, 0) 1.
TINY_CODES = np.array([[0, 1], [2, 2], [1, 0], [0, 2], [0, 1]])
TINY_WEIGHTS = np.array([100, 50, 1, 3, 20])
# All nine SIDs (c1, c2) in row-major order.
ALL_TINY = np.array([[a, b] for a in range(3) for b in range(3)])
# Unigram model with a budget of 9 = 6 symbols + <unk> + 2 pieces: the two heaviest SIDs become
# pieces 1 = (0,1)(1,1) and 2 = (0,2)(1,2); single symbols: 3 = (0,1), 4 = (1,0), 5 = (0,0),
# 6 = (1,2), 7 = (1,1), 8 = (0,2).
TINY_IDS = [[5, 4], [1], [5, 6], [3, 4], [3, 7], [3, 6], [8, 4], [8, 7], [2]]


def _tiny_proto() -> bytes:
  config = spm_training.SpmTrainingConfig(vocab_size=9)
  return spm_training.train_sid_spm(TINY_CODES, TINY_WEIGHTS, 3, config)


class SidSentencePieceTest(base.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.proto = _tiny_proto()

  def _layer(self, **kwargs) -> sid_spm.SidSentencePiece:
    return sid_spm.SidSentencePiece(self.proto, num_levels=2, codebook_size=3, **kwargs)

  def test_golden_piece_ids(self):
    layer = self._layer()
    self.assertEqual(layer.num_rows, 9)
    self.assertEqual(layer.max_piece_length, 2)
    out = layer(tf.constant(ALL_TINY, tf.int32))
    self.assertIsInstance(out, tf.RaggedTensor)
    self.assertEqual(out.dtype, tf.int64)
    self.assertEqual(out.to_list(), TINY_IDS)

  def test_pieces_decode_to_the_expected_symbols(self):
    processor = spm.SentencePieceProcessor(model_proto=self.proto)
    pieces = [sid_symbols.decode_piece(processor.id_to_piece(i), 3) for i in range(1, 9)]
    self.assertEqual(
      pieces,
      [[(0, 0), (1, 1)], [(0, 2), (1, 2)], [(0, 1)], [(1, 0)], [(0, 0)], [(1, 2)], [(1, 1)]]
      + [[(0, 2)]],
    )

  def test_every_symbol_round_trips_at_paper_size(self):
    # L=8, K=2048: 16,384 symbols; the training data only uses codes < 16 at levels 0-2.
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2048, size=(3000, 8))
    codes[:, :3] = rng.integers(0, 16, size=(3000, 3))
    config = spm_training.SpmTrainingConfig(vocab_size=17_000)
    proto = spm_training.train_sid_spm(codes, rng.zipf(1.5, 3000), 2048, config)
    layer = sid_spm.SidSentencePiece(proto, num_levels=8, codebook_size=2048)
    symbols = tf.constant([c.encode("utf-8") for c in sid_symbols.all_symbols(8, 2048)])
    ids = layer.tokenizer.tokenize(symbols)
    self.assertAllEqual(ids.row_lengths(), tf.ones([16384], tf.int64))
    self.assertAllEqual(layer.tokenizer.detokenize(ids), symbols)
    self.assertNotIn(0, ids.flat_values.numpy())
    # Unseen SIDs: never <unk>, and the pieces concatenate back to the SID string.
    unseen = rng.integers(0, 2048, size=(500, 8))
    out = layer(tf.constant(unseen, tf.int32))
    self.assertGreater(tf.reduce_min(out.flat_values), 0)
    self.assertLess(tf.reduce_max(out.flat_values), layer.num_rows)
    strings = layer.tokenizer.detokenize(tf.cast(out, tf.int32)).numpy()
    decoded = [sid_symbols.codes_of_string(s.decode("utf-8"), 2048) for s in strings]
    self.assertEqual([list(d) for d in decoded], unseen.tolist())

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "non-empty bytes"):
      sid_spm.SidSentencePiece(b"", num_levels=2, codebook_size=3)
    with self.assertRaisesRegex(ValueError, "symbols are not single pieces"):
      sid_spm.SidSentencePiece(self.proto, num_levels=2, codebook_size=4)
    with self.assertRaisesRegex(ValueError, "must be at most 131068"):
      sid_spm.SidSentencePiece(self.proto, num_levels=65, codebook_size=2048)
    with self.assertRaisesRegex(ValueError, r"shape \[batch, 2\]"):
      self._layer()(tf.constant([[0, 1, 2]]))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "codebook_size"):
      self._layer()(tf.constant([[0, 3]]))

  def test_rejects_a_text_model_with_bos_eos(self):
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
      sentence_iterator=iter(["ab ba abab", "ba ab"] * 10),
      model_writer=model,
      vocab_size=6,
      minloglevel=2,
    )
    with self.assertRaisesRegex(ValueError, "no BOS/EOS pieces"):
      sid_spm.SidSentencePiece(model.getvalue(), num_levels=1, codebook_size=2)

  def test_config_round_trip_keeps_the_model_out_of_the_config(self):
    layer = self._layer(name="spm")
    config = layer.get_config()
    self.assertNotIn("model_proto", config)
    self.assertEqual(config["num_levels"], 2)
    with self.assertRaisesRegex(ValueError, "keeps its model out of the config"):
      sid_spm.SidSentencePiece.from_config(config)
    clone = sid_spm.SidSentencePiece.from_config(dict(config, model_proto=self.proto))
    self.assertEqual(clone.get_config(), config)
    codes = tf.constant(ALL_TINY)
    self.assertEqual(clone(codes).to_list(), TINY_IDS)

  def test_from_file(self):
    path = os.path.join(self.get_temp_dir(), "tiny.model")
    with open(path, "wb") as f:
      f.write(self.proto)
    layer = sid_spm.SidSentencePiece.from_file(path, num_levels=2, codebook_size=3)
    self.assertEqual(layer.model_proto, self.proto)
    self.assertEqual(layer(tf.constant(ALL_TINY)).to_list(), TINY_IDS)

  def test_tf_function_and_tf_data(self):
    layer = self._layer()
    codes = tf.constant(ALL_TINY, tf.int32)
    self.assertEqual(tf.function(layer)(codes).to_list(), TINY_IDS)
    ds = tf.data.Dataset.from_tensor_slices(codes).batch(9).map(layer)
    self.assertEqual(next(iter(ds)).to_list(), TINY_IDS)

  def test_saved_model_round_trip(self):
    inputs = tf.keras.Input(shape=(2,), dtype=tf.int32)
    model = tf.keras.Model(inputs, self._layer()(inputs))
    path = os.path.join(self.get_temp_dir(), "spm_saved_model")
    tf.saved_model.save(model, path)
    loaded = tf.saved_model.load(path)
    codes = tf.constant(ALL_TINY, tf.int32)
    self.assertEqual(loaded(codes).to_list(), TINY_IDS)
    keras_path = os.path.join(self.get_temp_dir(), "spm_keras_saved_model")
    model.save(keras_path, save_format="tf")
    revived = tf.keras.models.load_model(keras_path, compile=False)
    self.assertEqual(revived(codes).to_list(), TINY_IDS)

  def test_short_fit_with_embedding_sum(self):
    codes = tf.keras.Input(shape=(2,), dtype=tf.int32)
    layer = self._layer()
    vectors = tf.keras.layers.Embedding(layer.num_rows, 3)(layer(codes))
    pooled = tf.keras.layers.Lambda(lambda x: tf.reduce_sum(x, axis=1))(vectors)
    model = tf.keras.Model(codes, tf.keras.layers.Dense(1)(pooled))
    model.compile(optimizer="adam", loss="mse")
    x = np.tile(ALL_TINY, (4, 1)).astype(np.int32)
    history = model.fit(x, np.ones((36, 1)), epochs=2, batch_size=9, verbose=0)
    self.assertLen(history.history["loss"], 2)


if __name__ == "__main__":
  tf.test.main()
