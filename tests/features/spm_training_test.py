"""Tests for features/spm_training.py."""

import numpy as np
import sentencepiece as spm
import tensorflow as tf

from features import sid_spm, sid_symbols, spm_training
from tests import base

# K=3, L=2: SID (0, 1) has 100 + 20 impressions, (2, 2) 50, (0, 2) 3, (1, 0) 1.
TINY_CODES = np.array([[0, 1], [2, 2], [1, 0], [0, 2], [0, 1]])
TINY_WEIGHTS = np.array([100, 50, 1, 3, 20])
ALL_TINY = np.array([[a, b] for a in range(3) for b in range(3)])


def _pieces(proto: bytes, codebook_size: int):
  processor = spm.SentencePieceProcessor(model_proto=proto)
  return [
    sid_symbols.decode_piece(processor.id_to_piece(i), codebook_size)
    for i in range(1, processor.get_piece_size())
  ]


def _hierarchical_sids(num_items: int, num_levels: int, codebook_size: int, seed: int = 0):
  """SIDs whose codes depend on the parent code (shared prefixes), with Zipf impressions."""
  rng = np.random.default_rng(seed)
  codes = np.zeros((num_items, num_levels), np.int64)
  codes[:, 0] = np.minimum(rng.zipf(1.3, num_items) - 1, codebook_size - 1)
  for level in range(1, num_levels):
    step = np.minimum(rng.zipf(1.3, num_items) - 1, codebook_size - 1)
    codes[:, level] = (codes[:, level - 1] * 7919 + step) % codebook_size
  return codes, np.minimum(rng.zipf(1.5, num_items), 100_000)


class HelpersTest(base.TestCase):
  def test_impression_counts(self):
    counts = spm_training.impression_counts([10, 20, 30, 40], [20, 10, 20, 99, 20])
    self.assertAllEqual(counts, [1, 3, 0, 0])
    self.assertAllEqual(spm_training.impression_counts([1, 2], []), [0, 0])

  def test_weighted_sid_strings_merges_duplicates_and_drops_unimpressed(self):
    codes = np.array([[0, 1], [1, 1], [0, 1], [2, 0]])
    out = spm_training.weighted_sid_strings(codes, np.array([2, 0, 5, 1]), 3)
    s = lambda a, b: sid_symbols.symbol(0, a, 3) + sid_symbols.symbol(1, b, 3)
    self.assertEqual(out, [(s(0, 1), 7), (s(2, 0), 1)])
    with self.assertRaisesRegex(ValueError, "finite and non-negative"):
      spm_training.weighted_sid_strings(codes, np.array([1, -1, 1, 1]), 3)
    with self.assertRaisesRegex(ValueError, "must be \\[N, L\\]"):
      spm_training.weighted_sid_strings(codes, np.array([1, 1]), 3)

  def test_seed_pieces_golden(self):
    # "abc" x 3 and "abd" x 1: runs ab (4), bc (3), abc (3), bd (1), abd (1); keep weight >= 2,
    # scored weight * length: abc 9, ab 8, bc 6.
    seeds = spm_training.seed_pieces([("abc", 3), ("abd", 1)], max_piece_length=3, max_pieces=10)
    self.assertEqual(seeds, [("abc", 9), ("ab", 8), ("bc", 6)])
    seeds = spm_training.seed_pieces([("abc", 3), ("abd", 1)], max_piece_length=2, max_pieces=1)
    self.assertEqual(seeds, [("ab", 8)])

  def test_symbol_weight(self):
    self.assertEqual(spm_training.symbol_weight(0), 1)
    self.assertEqual(spm_training.symbol_weight(2**22 - 1), 1)
    self.assertEqual(spm_training.symbol_weight(3 * 2**22), 4)

  def test_by_popularity_decile(self):
    values = np.array([1, 2, 3, 4])
    self.assertEqual(spm_training.by_popularity_decile(values, [0, 5, 9, 1], 2), [2.5, 2.5])
    self.assertEqual(spm_training.by_popularity_decile(values, [9, 5, 0, 1], 2), [1.5, 3.5])


class TrainSidSpmTest(base.TestCase):
  @base.parameterized.named_parameters(
    # Budget 9 = 6 symbols + <unk> + 2 pieces: the two most impressed SIDs become single pieces.
    (
      "unigram",
      spm_training.ModelType.UNIGRAM,
      [[(0, 0), (1, 1)], [(0, 2), (1, 2)], [(0, 1)], [(1, 0)], [(0, 0)], [(1, 2)], [(1, 1)]]
      + [[(0, 2)]],
      [[5, 4], [1], [5, 6], [3, 4], [3, 7], [3, 6], [8, 4], [8, 7], [2]],
    ),
    (
      "bpe",
      spm_training.ModelType.BPE,
      [[(0, 0), (1, 1)], [(0, 2), (1, 2)], [(0, 0)], [(1, 1)], [(1, 2)], [(0, 2)], [(0, 1)]]
      + [[(1, 0)]],
      [[3, 8], [1], [3, 5], [7, 8], [7, 4], [7, 5], [6, 8], [6, 4], [2]],
    ),
  )
  def test_tiny_model_golden(self, model_type, pieces, ids):
    config = spm_training.SpmTrainingConfig(vocab_size=9, model_type=model_type)
    proto = spm_training.train_sid_spm(TINY_CODES, TINY_WEIGHTS, 3, config)
    self.assertEqual(_pieces(proto, 3), pieces)
    processor = spm.SentencePieceProcessor(model_proto=proto)
    self.assertEqual(processor.encode(sid_symbols.sid_strings(ALL_TINY, 3)), ids)
    self.assertEqual(
      spm_training.tokens_per_item(proto, ALL_TINY, 3).tolist(), [len(i) for i in ids]
    )

  def test_training_is_deterministic(self):
    config = spm_training.SpmTrainingConfig(vocab_size=300)
    codes, weights = _hierarchical_sids(2000, 4, 64)
    first = spm_training.train_sid_spm(codes, weights, 64, config)
    self.assertEqual(spm_training.train_sid_spm(codes, weights, 64, config), first)

  @base.parameterized.named_parameters(("unigram", "unigram"), ("bpe", "bpe"))
  def test_pieces_never_mix_levels_and_cover_every_symbol(self, model_type):
    codes, weights = _hierarchical_sids(3000, 5, 32)
    config = spm_training.SpmTrainingConfig(
      vocab_size=600, model_type=spm_training.ModelType(model_type)
    )
    proto = spm_training.train_sid_spm(codes, weights, 32, config)
    pieces = _pieces(proto, 32)
    self.assertGreater(sum(len(p) > 1 for p in pieces), 100)
    for piece in pieces:
      levels = [level for level, _ in piece]
      self.assertEqual(levels, list(range(levels[0], levels[0] + len(levels))))
    singles = {p[0] for p in pieces if len(p) == 1}
    self.assertEqual(singles, {(level, code) for level in range(5) for code in range(32)})

  def test_popular_items_get_fewer_tokens(self):
    codes, weights = _hierarchical_sids(5000, 4, 64)
    proto = spm_training.train_sid_spm(
      codes, weights, 64, spm_training.SpmTrainingConfig(vocab_size=1000)
    )
    tokens = spm_training.tokens_per_item(proto, codes, 64)
    deciles = spm_training.by_popularity_decile(tokens, weights)
    self.assertLen(deciles, 10)
    self.assertLess(deciles[0], deciles[-1])
    self.assertLess(deciles[0], 2.0)

  def test_max_piece_length_is_respected(self):
    codes, weights = _hierarchical_sids(2000, 4, 16)
    config = spm_training.SpmTrainingConfig(vocab_size=200, max_piece_length=2)
    proto = spm_training.train_sid_spm(codes, weights, 16, config)
    self.assertEqual(sid_spm.check_model_proto(proto, 4, 16)["max_piece_length"], 2)

  @base.parameterized.named_parameters(
    ("budget", dict(vocab_size=6), "at least L\\*K \\+ 1 = 7"),
    ("piece_length", dict(vocab_size=9, max_piece_length=3), "`max_piece_length` must lie"),
  )
  def test_bad_config(self, kwargs, message):
    with self.assertRaisesRegex(ValueError, message):
      spm_training.train_sid_spm(
        TINY_CODES, TINY_WEIGHTS, 3, spm_training.SpmTrainingConfig(**kwargs)
      )

  def test_no_impressions_fails(self):
    with self.assertRaisesRegex(ValueError, "No item has a positive impression count"):
      spm_training.train_sid_spm(
        TINY_CODES, np.zeros(5), 3, spm_training.SpmTrainingConfig(vocab_size=9)
      )

  def test_too_many_symbols_fails(self):
    with self.assertRaisesRegex(ValueError, "must be at most 131068"):
      spm_training.train_sid_spm(
        np.zeros((1, 65)), np.ones(1), 2048, spm_training.SpmTrainingConfig(vocab_size=10**6)
      )


if __name__ == "__main__":
  tf.test.main()
