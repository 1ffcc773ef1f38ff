"""Tests for features/sid_segmentation.py: the piece trie and the two decoders, by hand."""

from typing import Dict, Tuple

import numpy as np
import sentencepiece as spm
import tensorflow as tf
from sentencepiece import sentencepiece_model_pb2

from features import sid_segmentation, sid_symbols, spm_training
from tests import base

PIECE = sentencepiece_model_pb2.ModelProto.SentencePiece
# Same tiny unigram model as sid_spm_test: K=3, L=2, pieces 1 = (0,0)(1,1), 2 = (0,2)(1,2),
# 3 = (0,1), 4 = (1,0), 5 = (0,0), 6 = (1,2), 7 = (1,1), 8 = (0,2).
TINY_CODES = np.array([[0, 1], [2, 2], [1, 0], [0, 2], [0, 1]])
TINY_WEIGHTS = np.array([100, 50, 1, 3, 20])


def _tiny_proto(model_type=spm_training.ModelType.UNIGRAM) -> bytes:
  config = spm_training.SpmTrainingConfig(vocab_size=9, model_type=model_type)
  return spm_training.train_sid_spm(TINY_CODES, TINY_WEIGHTS, 3, config)


def _edited(proto: bytes, edit) -> bytes:
  model = sentencepiece_model_pb2.ModelProto.FromString(proto)
  edit(model)
  return model.SerializeToString()


def _spans(num_levels: int, spans: Dict[Tuple[int, int], Tuple[int, float]]):
  """(nodes, scores, layout) from {(start, end): (id, score)}, as `span_values` gives them.

  Spans that are no piece have node -1 and score -inf.
  """
  layout = sid_segmentation.SpanLayout(num_levels, num_levels)
  nodes = np.full((1, layout.width), -1, np.int64)
  scores = np.full((1, layout.width), -np.inf, np.float32)
  for (start, end), (piece_id, score) in spans.items():
    nodes[0, layout.column(start, end)], scores[0, layout.column(start, end)] = piece_id, score
  return tf.constant(nodes), tf.constant(scores), layout


def _segments(decode, num_levels, spans) -> list:
  is_end, ids = decode(*_spans(num_levels, spans))
  return tf.ragged.boolean_mask(ids, is_end).to_list()[0]


class PieceTrieTest(base.TestCase):
  def test_golden_keys(self):
    trie = sid_segmentation.build_piece_trie(_tiny_proto(), num_levels=2, codebook_size=3)
    # 9 pieces, no prefix that is not a piece: roots are 9 (level 0) and 10 (level 1).
    self.assertEqual((trie.vocab_size, trie.root_base, trie.max_piece_length), (9, 9, 2))
    nodes, scores = sid_segmentation.unpack(tf.constant(trie.values))
    got = dict(zip(trie.keys.tolist(), nodes.numpy().tolist()))
    # key = parent * K + code: (0,0) -> 9*3+0 = 27 is piece 5; (0,0)(1,1) -> 5*3+1 = 16 is piece 1.
    self.assertEqual(got, {27: 5, 16: 1, 29: 8, 26: 2, 28: 3, 30: 4, 32: 6, 31: 7})
    processor = spm.SentencePieceProcessor(model_proto=_tiny_proto())
    expected = [processor.get_score(int(n)) for n in nodes.numpy()]
    self.assertAllEqual(scores, np.array(expected, np.float32))

  def test_prefixes_that_are_no_piece_get_ids_from_vocab_size(self):
    # Drop piece 5 = (0,0): it stays in the trie as the prefix of piece 1, with a fresh id 9.
    proto = _edited(_tiny_proto(), lambda m: setattr(m.pieces[5], "type", PIECE.UNUSED))
    trie = sid_segmentation.build_piece_trie(proto, num_levels=2, codebook_size=3)
    nodes = dict(zip(trie.keys.tolist(), (trie.values >> 32).tolist()))
    self.assertEqual(trie.root_base, 10)
    self.assertEqual(nodes[10 * 3 + 0], 9)
    self.assertEqual(nodes[9 * 3 + 1], 1)

  def test_pack_round_trip(self):
    nodes = np.array([0, 7, 2**31 - 1], np.int64)
    scores = np.array([0.0, -12.345678, -np.inf], np.float32)
    got_nodes, got_scores = sid_segmentation.unpack(
      tf.constant(sid_segmentation.pack(nodes, scores))
    )
    self.assertAllEqual(got_nodes, nodes)
    self.assertAllEqual(got_scores, scores)
    missing = sid_segmentation.unpack(tf.constant([sid_segmentation.MISSING], tf.int64))
    self.assertEqual([t.numpy().tolist() for t in missing], [[-1], [-np.inf]])

  def test_span_layout(self):
    layout = sid_segmentation.SpanLayout(num_levels=3, max_piece_length=3)
    self.assertEqual((layout.offsets.tolist(), layout.width), ([0, 3, 5], 9))
    columns = [layout.column(i, j) for i, j in [(0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2)]]
    self.assertEqual(columns, [0, 1, 2, 3, 4, 5])
    # With pieces of at most 2 levels, the 3-level span points into the missing block (5..7).
    layout = sid_segmentation.SpanLayout(num_levels=3, max_piece_length=2)
    self.assertEqual(
      (layout.offsets.tolist(), layout.width, layout.column(0, 2)), ([0, 3, 5], 8, 5)
    )
    got = layout.column(tf.constant([[0, 1]], tf.int64), tf.constant([[1, 2]], tf.int64))
    self.assertEqual(got.numpy().tolist(), [[3, 4]])

  def test_refuses_word_and_char_models(self):
    for model_type in ("WORD", "CHAR"):
      value = sentencepiece_model_pb2.TrainerSpec.ModelType.Value(model_type)
      proto = _edited(_tiny_proto(), lambda m: setattr(m.trainer_spec, "model_type", value))
      with self.assertRaisesRegex(ValueError, f"train with model_type=unigram.*{model_type}"):
        sid_segmentation.build_piece_trie(proto, num_levels=2, codebook_size=3)

  def test_refuses_user_defined_pieces_and_a_dummy_prefix(self):
    proto = _edited(_tiny_proto(), lambda m: setattr(m.pieces[1], "type", PIECE.USER_DEFINED))
    with self.assertRaisesRegex(ValueError, "no user-defined pieces. Received: 1"):
      sid_segmentation.build_piece_trie(proto, num_levels=2, codebook_size=3)
    proto = _edited(_tiny_proto(), lambda m: setattr(m.normalizer_spec, "add_dummy_prefix", True))
    with self.assertRaisesRegex(ValueError, "dummy prefix"):
      sid_segmentation.build_piece_trie(proto, num_levels=2, codebook_size=3)

  def test_refuses_bpe_with_unused_pieces(self):
    proto = _tiny_proto(spm_training.ModelType.BPE)
    self.assertEqual(sid_segmentation.build_piece_trie(proto, 2, 3).model_type, "bpe")
    proto = _edited(proto, lambda m: setattr(m.pieces[1], "type", PIECE.UNUSED))
    with self.assertRaisesRegex(ValueError, "UNUSED pieces.*model_type=unigram"):
      sid_segmentation.build_piece_trie(proto, num_levels=2, codebook_size=3)

  def test_refuses_more_than_63_levels(self):
    with self.assertRaisesRegex(ValueError, "at most 63.*Received: num_levels=64"):
      sid_segmentation.build_piece_trie(_tiny_proto(), num_levels=64, codebook_size=2)

  def test_refuses_scores_whose_sums_could_overflow(self):
    proto = _edited(_tiny_proto(), lambda m: setattr(m.pieces[3], "score", -3e38))
    with self.assertRaisesRegex(ValueError, "Piece scores must be finite"):
      sid_segmentation.build_piece_trie(proto, num_levels=2, codebook_size=3)

  def test_refuses_pieces_out_of_level_order(self):
    swapped = sid_symbols.symbol(1, 1, 3) + sid_symbols.symbol(0, 0, 3)
    proto = _edited(_tiny_proto(), lambda m: setattr(m.pieces[1], "piece", swapped))
    with self.assertRaisesRegex(ValueError, r"no run of consecutive levels < L: levels \[1, 0\]"):
      sid_segmentation.build_piece_trie(proto, num_levels=2, codebook_size=3)


class DecoderTest(base.TestCase):
  # L=3: every level alone (ids 1, 2, 3) and the pairs (0..1) = 4 and (1..2) = 5.
  SPANS = {(0, 0): 1, (1, 1): 2, (2, 2): 3, (0, 1): 4, (1, 2): 5}

  def _with_scores(self, **scores):
    names = {"s0": (0, 0), "s1": (1, 1), "s2": (2, 2), "s01": (0, 1), "s12": (1, 2)}
    return {names[k]: (self.SPANS[names[k]], v) for k, v in scores.items()}

  def test_unigram_picks_the_best_total(self):
    spans = self._with_scores(s0=-1.0, s1=-1.0, s2=-1.0, s01=-1.5, s12=-3.0)
    self.assertEqual(_segments(sid_segmentation.unigram_viterbi, 3, spans), [4, 3])
    spans = self._with_scores(s0=-1.0, s1=-1.0, s2=-1.0, s01=-3.0, s12=-1.5)
    self.assertEqual(_segments(sid_segmentation.unigram_viterbi, 3, spans), [1, 5])
    spans = self._with_scores(s0=-1.0, s1=-1.0, s2=-1.0, s01=-3.0, s12=-3.0)
    self.assertEqual(_segments(sid_segmentation.unigram_viterbi, 3, spans), [1, 2, 3])

  def test_unigram_tie_goes_to_the_smallest_start(self):
    # [0][1..2] and [0..1][2] both total -2.5: the last piece starting earliest (at 1) wins.
    spans = self._with_scores(s0=-1.0, s1=-1.0, s2=-1.0, s01=-1.5, s12=-1.5)
    self.assertEqual(_segments(sid_segmentation.unigram_viterbi, 3, spans), [1, 5])
    # All three segmentations total -3: at every end the smallest start wins, giving [0][1..2].
    spans = self._with_scores(s0=-1.0, s1=-1.0, s2=-1.0, s01=-2.0, s12=-2.0)
    self.assertEqual(_segments(sid_segmentation.unigram_viterbi, 3, spans), [1, 5])

  def test_unigram_adds_in_float32(self):
    # float32(-0.1) + float32(-0.2) rounds to exactly float32(-0.3) (in float64 it is larger):
    # a tie, so [0..1] (start 0) beats [0][1]. One ulp lower and [0][1] wins.
    spans = self._with_scores(s0=-0.1, s1=-0.2, s2=-1.0, s01=-0.3, s12=-9.0)
    self.assertEqual(_segments(sid_segmentation.unigram_viterbi, 3, spans), [4, 3])
    lower = float(np.nextafter(np.float32(-0.3), np.float32(-1.0)))
    spans = self._with_scores(s0=-0.1, s1=-0.2, s2=-1.0, s01=lower, s12=-9.0)
    self.assertEqual(_segments(sid_segmentation.unigram_viterbi, 3, spans), [1, 2, 3])

  def test_bpe_merges_the_best_pair_first_and_leftmost_on_ties(self):
    spans = self._with_scores(s0=0.0, s1=0.0, s2=0.0, s01=-2.0, s12=-1.0)
    self.assertEqual(_segments(sid_segmentation.bpe_merge, 3, spans), [1, 5])
    spans = self._with_scores(s0=0.0, s1=0.0, s2=0.0, s01=-1.0, s12=-1.0)
    self.assertEqual(_segments(sid_segmentation.bpe_merge, 3, spans), [4, 3])

  def test_bpe_merges_merged_pieces(self):
    # L=4: (2..3) first, then (0..1), then the whole SID; (0..2) is never formed.
    spans = {(i, i): (i + 1, 0.0) for i in range(4)}
    spans.update({(0, 1): (5, -2.0), (2, 3): (6, -1.0), (0, 3): (7, -3.0), (1, 2): (8, -9.0)})
    self.assertEqual(_segments(sid_segmentation.bpe_merge, 4, spans), [7])
    del spans[(0, 3)]
    self.assertEqual(_segments(sid_segmentation.bpe_merge, 4, spans), [5, 6])

  def test_segmenter_on_a_batch(self):
    proto = _tiny_proto()
    segmenter = sid_segmentation.SidPieceSegmenter(sid_segmentation.build_piece_trie(proto, 2, 3))
    codes = np.array([[a, b] for a in range(3) for b in range(3)])
    processor = spm.SentencePieceProcessor(model_proto=proto)
    expected = processor.encode(sid_symbols.sid_strings(codes, 3))
    self.assertEqual(segmenter(tf.constant(codes)).to_list(), expected)
    self.assertEqual(segmenter(tf.zeros([0, 2], tf.int64)).to_list(), [])


if __name__ == "__main__":
  tf.test.main()
