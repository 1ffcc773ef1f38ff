"""Tests for features/sid_spm.py, with tiny SentencePiece models trained in the test.

The layer segments SIDs with core TF ops only; the `sentencepiece` library (and, for the op check,
TF Text's tokenizer) serve as references.
"""

from tests import base  # noqa: I001  (first: sets TF_USE_LEGACY_KERAS before TF Text loads Keras)

import functools
import io
import json
import os
import subprocess
import sys
import textwrap
from typing import Iterator

import numpy as np
import sentencepiece as spm
import tensorflow as tf
import tensorflow_text as tf_text
from absl.testing import parameterized
from sentencepiece import sentencepiece_model_pb2
from tensorflow.core.protobuf import saved_model_pb2

from features import sid_spm, sid_symbols, spm_training

# K=3, L=2. SID (0, 1) has 120 impressions, (2, 2) 50, (0, 2) 3, (1, 0) 1.
TINY_CODES = np.array([[0, 1], [2, 2], [1, 0], [0, 2], [0, 1]])
TINY_WEIGHTS = np.array([100, 50, 1, 3, 20])
# All nine SIDs (c1, c2) in row-major order.
ALL_TINY = np.array([[a, b] for a in range(3) for b in range(3)])
# Unigram model with a budget of 9 = 6 symbols + <unk> + 2 pieces: the two heaviest SIDs become
# pieces 1 = (0,1)(1,1) and 2 = (0,2)(1,2); single symbols: 3 = (0,1), 4 = (1,0), 5 = (0,0),
# 6 = (1,2), 7 = (1,1), 8 = (0,2).
TINY_IDS = [[5, 4], [1], [5, 6], [3, 4], [3, 7], [3, 6], [8, 4], [8, 7], [2]]


UNIGRAM, BPE = spm_training.ModelType.UNIGRAM, spm_training.ModelType.BPE
# TF Text op types look like `SentencepieceOp`, `SentencepieceTokenizeOp`, `TFText>RoundRobinTrim`.
TF_TEXT_OP_PREFIXES = ("Sentencepiece", "TFText>")
NUM_RANDOM_SIDS = 100_000
# (L, K) -> (catalogue items, vocabulary budget); each budget holds all L*K symbols plus pieces.
SIZES = {(3, 64): (2000, 3 * 64 + 500), (4, 256): (3000, 4 * 256 + 1500), (8, 2048): (3000, 18_000)}


def _tiny_proto() -> bytes:
  config = spm_training.SpmTrainingConfig(vocab_size=9)
  return spm_training.train_sid_spm(TINY_CODES, TINY_WEIGHTS, 3, config)


def _catalogue(num_items: int, num_levels: int, codebook_size: int) -> np.ndarray:
  """SIDs that share prefixes (each code depends on its parent), as an RQ-VAE's do."""
  rng = np.random.default_rng(num_levels)
  codes = np.zeros((num_items, num_levels), np.int64)
  codes[:, 0] = np.minimum(rng.zipf(1.3, num_items) - 1, codebook_size - 1)
  for level in range(1, num_levels):
    step = np.minimum(rng.zipf(1.3, num_items) - 1, codebook_size - 1)
    codes[:, level] = (codes[:, level - 1] * 7919 + step) % codebook_size
  return codes


@functools.lru_cache(maxsize=None)
def _trained(model_type, num_levels: int, codebook_size: int, max_piece_length=None):
  """(catalogue codes, model proto) for one size, trained once per test process."""
  num_items, vocab_size = SIZES[(num_levels, codebook_size)]
  codes = _catalogue(num_items, num_levels, codebook_size)
  weights = np.random.default_rng(1).zipf(1.5, num_items)
  config = spm_training.SpmTrainingConfig(
    vocab_size=vocab_size, model_type=model_type, max_piece_length=max_piece_length
  )
  return codes, spm_training.train_sid_spm(codes, weights, codebook_size, config)


def _random_sids(catalogue: np.ndarray, codebook_size: int, num: int) -> np.ndarray:
  """Catalogue SIDs with mutated levels, catalogue prefixes with random tails, uniform SIDs."""
  rng = np.random.default_rng(2)
  num_levels = catalogue.shape[1]
  codes = catalogue[rng.integers(0, len(catalogue), num)]
  third = num // 3
  mutate = rng.random((third, num_levels)) < 0.25
  codes[:third][mutate] = rng.integers(0, codebook_size, mutate.sum())
  tails = np.arange(num_levels)[None, :] >= rng.integers(1, num_levels + 1, third)[:, None]
  codes[third : 2 * third][tails] = rng.integers(0, codebook_size, tails.sum())
  codes[2 * third :] = rng.integers(0, codebook_size, (num - 2 * third, num_levels))
  return codes


def _with_scores(proto: bytes, score_of) -> bytes:
  """The model with every NORMAL piece's score replaced by `score_of(piece)`."""
  model = sentencepiece_model_pb2.ModelProto.FromString(proto)
  for piece in model.pieces:
    if piece.type == sentencepiece_model_pb2.ModelProto.SentencePiece.NORMAL:
      piece.score = score_of(piece)
  return model.SerializeToString()


def _op_types(saved_model_dir: str) -> Iterator[str]:
  """Every op type in a SavedModel: its graphs and every function of their libraries."""
  saved_model = saved_model_pb2.SavedModel()
  with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
    saved_model.ParseFromString(f.read())
  for meta_graph in saved_model.meta_graphs:
    yield from (node.op for node in meta_graph.graph_def.node)
    for function in meta_graph.graph_def.library.function:
      yield from (node.op for node in function.node_def)


def _non_core_ops(saved_model_dir: str) -> set:
  """Op types that are neither TF core ops (`tf.raw_ops`) nor functions of the graph library."""
  saved_model = saved_model_pb2.SavedModel()
  with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
    saved_model.ParseFromString(f.read())
  functions = {
    f.signature.name for g in saved_model.meta_graphs for f in g.graph_def.library.function
  }
  return set(_op_types(saved_model_dir)) - set(dir(tf.raw_ops)) - functions


class _ServingModule(tf.Module):
  """The layer behind a serving signature, as TF Serving calls it (ragged parts as tensors)."""

  def __init__(self, layer: sid_spm.SidSentencePiece):
    super().__init__()
    self.layer = layer
    spec = tf.TensorSpec([None, layer.num_levels], tf.int32, name="codes")
    self.serve = tf.function(self._serve, input_signature=[spec])

  def _serve(self, codes):
    ids = self.layer(codes)
    return {"piece_ids": ids.flat_values, "row_splits": ids.row_splits}


class SidSentencePieceTest(base.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.proto = _tiny_proto()
    processor = spm.SentencePieceProcessor(model_proto=cls.proto)
    cls.ids = {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}

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
    # Item c has code c at every level, so the items cover all 16,384 (level, code) symbols.
    every_code = np.repeat(np.arange(2048)[:, None], 8, axis=1)
    out = layer(tf.constant(every_code, tf.int32))
    self.assertNotIn(0, out.flat_values.numpy())
    processor = spm.SentencePieceProcessor(model_proto=proto)
    single = [processor.piece_to_id(c) for c in sid_symbols.all_symbols(8, 2048)]
    self.assertAllEqual(tf.sort(tf.unique(out.flat_values)[0]), np.sort(single))
    # Unseen SIDs: never <unk>, and the pieces concatenate back to the SID string.
    unseen = rng.integers(0, 2048, size=(500, 8))
    out = layer(tf.constant(unseen, tf.int32))
    self.assertGreater(tf.reduce_min(out.flat_values), 0)
    self.assertLess(tf.reduce_max(out.flat_values), layer.num_rows)
    decoded = [sid_symbols.codes_of_string(processor.decode(ids), 2048) for ids in out.to_list()]
    self.assertEqual([list(d) for d in decoded], unseen.tolist())

  def assertSegmentsLikeSentencePiece(self, proto: bytes, codes: np.ndarray, codebook_size: int):
    """The layer's ids equal `SentencePieceProcessor.encode` of the SID strings, item by item."""
    layer = sid_spm.SidSentencePiece(proto, codes.shape[1], codebook_size)
    out = layer(tf.constant(codes, tf.int32))
    expected = spm.SentencePieceProcessor(model_proto=proto).encode(
      sid_symbols.sid_strings(codes, codebook_size)
    )
    lengths = np.array([len(ids) for ids in expected])
    got_lengths = out.row_lengths().numpy()
    mismatch = np.flatnonzero(got_lengths != lengths)
    if not len(mismatch):
      splits = np.concatenate([[0], np.cumsum(lengths)])
      flat = np.concatenate([np.asarray(ids, np.int64) for ids in expected])
      rows = np.searchsorted(splits, np.flatnonzero(out.flat_values.numpy() != flat), "right") - 1
      mismatch = np.unique(rows)
    if len(mismatch):
      item = mismatch[0]
      self.fail(
        f"{len(mismatch)} of {len(codes)} SIDs differ; first {codes[item].tolist()}: "
        f"layer {out[item].numpy().tolist()}, sentencepiece {expected[item]}"
      )
    return out

  @parameterized.named_parameters(
    ("unigram_3x64", UNIGRAM, 3, 64),
    ("unigram_4x256", UNIGRAM, 4, 256),
    ("unigram_8x2048", UNIGRAM, 8, 2048),
    ("bpe_3x64", BPE, 3, 64),
    ("bpe_4x256", BPE, 4, 256),
    ("bpe_8x2048", BPE, 8, 2048),
  )
  def test_matches_sentencepiece_on_the_catalogue_and_random_sids(self, model_type, levels, k):
    catalogue, proto = _trained(model_type, levels, k)
    out = self.assertSegmentsLikeSentencePiece(proto, catalogue, k)
    self.assertLess(np.mean(out.row_lengths()), levels)  # Multi-level pieces are in use.
    self.assertSegmentsLikeSentencePiece(proto, _random_sids(catalogue, k, NUM_RANDOM_SIDS), k)

  @parameterized.named_parameters(("unigram", UNIGRAM), ("bpe", BPE))
  def test_matches_sentencepiece_with_pieces_shorter_than_the_sid(self, model_type):
    catalogue, proto = _trained(model_type, 4, 256, max_piece_length=2)
    self.assertEqual(sid_spm.check_model_proto(proto, 4, 256)["max_piece_length"], 2)
    codes = np.concatenate([catalogue, _random_sids(catalogue, 256, 20_000)])
    self.assertSegmentsLikeSentencePiece(proto, codes, 256)

  @parameterized.named_parameters(
    # Unigram scored -(piece length): every segmentation of every SID totals -L, all tie.
    ("unigram_4x256", UNIGRAM, 4, 256, lambda piece: -float(len(piece.piece))),
    ("unigram_8x2048", UNIGRAM, 8, 2048, lambda piece: -float(len(piece.piece))),
    # BPE with one score for every piece: every merge is a tie, resolved leftmost.
    ("bpe_4x256", BPE, 4, 256, lambda piece: -1.0),
    ("bpe_8x2048", BPE, 8, 2048, lambda piece: -1.0),
  )
  def test_matches_sentencepiece_when_scores_tie(self, model_type, levels, k, score_of):
    catalogue, proto = _trained(model_type, levels, k)
    codes = np.concatenate([catalogue, _random_sids(catalogue, k, 20_000)])
    self.assertSegmentsLikeSentencePiece(_with_scores(proto, score_of), codes, k)

  def test_exact_float32_tie_goes_to_the_longest_last_piece(self):
    # SID (0,0)(1,1) is piece 1 or pieces 5 + 7. float32(-0.1) + float32(-0.2) == float32(-0.3)
    # (not in float64): a tie, which SentencePiece gives to the piece starting first, piece 1.
    scores = {1: -0.3, 5: -0.1, 7: -0.2}
    proto = _with_scores(self.proto, lambda p: scores.get(self.ids[p.piece], p.score))
    codes = np.array([[0, 1]])
    self.assertEqual(self.assertSegmentsLikeSentencePiece(proto, codes, 3).to_list(), [[1]])
    scores[1] = float(np.nextafter(np.float32(-0.3), np.float32(-1)))  # One ulp worse.
    proto = _with_scores(self.proto, lambda p: scores.get(self.ids[p.piece], p.score))
    self.assertEqual(self.assertSegmentsLikeSentencePiece(proto, codes, 3).to_list(), [[5, 7]])

  def test_layer_has_no_weights(self):
    layer = self._layer()
    layer(tf.constant(ALL_TINY))
    self.assertEqual(layer.weights, [])
    self.assertEqual(layer.model_proto_resource().numpy(), self.proto)

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
    # The model proto travels inside the SavedModel, in the layer's tracked table.
    restored = getattr(loaded, "layer_with_weights-0", None) or getattr(loaded, "layer-1")
    self.assertEqual(restored.model_proto_resource().numpy(), self.proto)
    keras_path = os.path.join(self.get_temp_dir(), "spm_keras_saved_model")
    model.save(keras_path, save_format="tf")
    revived = tf.keras.models.load_model(keras_path, compile=False)
    self.assertEqual(revived(codes).to_list(), TINY_IDS)

  def test_saved_model_graph_has_only_core_ops(self):
    inputs = tf.keras.Input(shape=(8,), dtype=tf.int32)
    _, proto = _trained(UNIGRAM, 8, 2048)
    model = tf.keras.Model(inputs, sid_spm.SidSentencePiece(proto, 8, 2048)(inputs))
    keras_path = os.path.join(self.get_temp_dir(), "keras")
    model.save(keras_path, save_format="tf")
    serving_path = os.path.join(self.get_temp_dir(), "serving")
    module = _ServingModule(sid_spm.SidSentencePiece(_trained(BPE, 8, 2048)[1], 8, 2048))
    tf.saved_model.save(module, serving_path, signatures={"serving_default": module.serve})
    for path in (keras_path, serving_path):
      ops = set(_op_types(path))
      self.assertIn("LookupTableFindV2", ops)
      self.assertEmpty([op for op in ops if op.startswith(TF_TEXT_OP_PREFIXES)])
      self.assertEmpty(_non_core_ops(path))

  def test_op_check_finds_the_tf_text_reference_ops(self):
    # TF Text's tokenizer over the same SID strings, saved the same way, is caught by both checks.
    tokenizer = tf_text.SentencepieceTokenizer(model=self.proto, out_type=tf.int32)
    module = tf.Module()
    module.tokenizer = tokenizer
    module.tokenize = tf.function(
      lambda codes: tokenizer.tokenize(sid_symbols.sid_strings_tf(codes, 3)),
      input_signature=[tf.TensorSpec([None, 2], tf.int32)],
    )
    self.assertEqual(module.tokenize(tf.constant(ALL_TINY, tf.int32)).to_list(), TINY_IDS)
    path = os.path.join(self.get_temp_dir(), "tf_text")
    tf.saved_model.save(module, path)
    ops = set(_op_types(path))
    self.assertContainsSubset({"SentencepieceOp", "SentencepieceTokenizeOp"}, ops)
    self.assertContainsSubset({"SentencepieceOp", "SentencepieceTokenizeOp"}, _non_core_ops(path))

  def test_serving_signature_in_a_fresh_process_without_tf_text(self):
    layer = self._layer()
    module = _ServingModule(layer)
    path = os.path.join(self.get_temp_dir(), "serving")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    script = textwrap.dedent(
      """
      import json, sys
      import tensorflow as tf
      signature = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
      out = signature(codes=tf.constant(json.loads(sys.argv[2]), tf.int32))
      assert not [m for m in sys.modules if m.startswith("tensorflow_text")], "TF Text imported"
      print(json.dumps({name: value.numpy().tolist() for name, value in out.items()}))
      """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
      [sys.executable, "-c", script, path, json.dumps(ALL_TINY.tolist())],
      capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    self.assertEqual(result.returncode, 0, result.stderr)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    expected = layer(tf.constant(ALL_TINY, tf.int32))
    self.assertEqual(out["piece_ids"], expected.flat_values.numpy().tolist())
    self.assertEqual(out["row_splits"], expected.row_splits.numpy().tolist())
    self.assertEqual(out["piece_ids"], [i for ids in TINY_IDS for i in ids])

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
