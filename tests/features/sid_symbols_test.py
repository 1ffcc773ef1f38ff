"""Tests for features/sid_symbols.py."""

import numpy as np
import tensorflow as tf

from features import sid_symbols
from tests import base


class SidSymbolsTest(base.TestCase):
  def test_golden_code_points(self):
    # K=2048: (0, 0) -> U+F0000; (1, 5) -> U+F0000 + 2053; index 31*2048 + 2045 = 65533 is the last
    # of plane 15 (U+FFFFD), index 65534 the first of plane 16 (U+100000).
    self.assertEqual(sid_symbols.symbol(0, 0, 2048), "\U000f0000")
    self.assertEqual(sid_symbols.symbol(1, 5, 2048), chr(0xF0000 + 2053))
    self.assertEqual(sid_symbols.symbol(31, 2045, 2048), "\U000ffffd")
    self.assertEqual(sid_symbols.symbol(31, 2046, 2048), "\U00100000")
    self.assertEqual(sid_symbols.symbol(63, 2043, 2048), "\U0010fffd")  # index 131067, the last.
    with self.assertRaisesRegex(ValueError, "has no symbol"):
      sid_symbols.symbol(63, 2044, 2048)

  def test_every_symbol_round_trips_numpy_and_tf(self):
    for num_levels, codebook_size in [(8, 2048), (64, 2047), (3, 5)]:
      # Row r holds code r at every level, so the grid covers every (level, code) pair once.
      grid = np.repeat(np.arange(codebook_size)[:, None], num_levels, axis=1)
      levels = np.broadcast_to(np.arange(num_levels), grid.shape)
      points = sid_symbols.codepoints(grid, codebook_size)
      self.assertAllEqual(sid_symbols.codepoints_tf(tf.constant(grid), codebook_size), points)
      chars = [chr(p) for p in points.reshape(-1)]
      decoded = [sid_symbols.decode_symbol(c, codebook_size) for c in chars]
      self.assertEqual(decoded, list(zip(levels.reshape(-1).tolist(), grid.reshape(-1).tolist())))
      everything = sid_symbols.all_symbols(num_levels, codebook_size)
      self.assertLen(set(everything), num_levels * codebook_size)
      self.assertTrue(
        all(0xF0000 <= ord(c) <= 0x10FFFD and (ord(c) & 0xFFFF) < 0xFFFE for c in everything)
      )

  def test_all_symbols_are_level_major(self):
    self.assertEqual(
      [sid_symbols.decode_symbol(c, 3) for c in sid_symbols.all_symbols(2, 3)],
      [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)],
    )

  def test_sid_strings_numpy_equals_tf(self):
    codes = np.random.default_rng(0).integers(0, 2048, size=(50, 8))
    strings = sid_symbols.sid_strings(codes, 2048)
    tf_strings = sid_symbols.sid_strings_tf(tf.constant(codes, tf.int32), 2048).numpy()
    self.assertEqual([s.decode("utf-8") for s in tf_strings], strings)
    self.assertEqual([list(sid_symbols.codes_of_string(s, 2048)) for s in strings], codes.tolist())

  def test_sid_strings_under_tf_function(self):
    fn = tf.function(lambda c: sid_symbols.sid_strings_tf(c, 4))
    out = fn(tf.constant([[0, 3]])).numpy()[0].decode("utf-8")
    self.assertEqual(out, "\U000f0000\U000f0007")

  def test_capacity_limit(self):
    sid_symbols.check_capacity(64, 2047)  # 131,008 symbols fit.
    with self.assertRaisesRegex(ValueError, "must be at most 131068"):
      sid_symbols.check_capacity(64, 2048)
    with self.assertRaisesRegex(ValueError, "`num_levels` must be positive"):
      sid_symbols.check_capacity(0, 4)
    with self.assertRaisesRegex(ValueError, "must be at most 131068"):
      sid_symbols.sid_strings_tf(tf.zeros([1, 65], tf.int32), 2048)

  def test_bad_inputs(self):
    with self.assertRaisesRegex(ValueError, r"codes must lie in \[0, 4\)"):
      sid_symbols.sid_strings(np.array([[0, 4]]), 4)
    with self.assertRaisesRegex(ValueError, "is not a SID symbol"):
      sid_symbols.decode_symbol("a", 4)
    with self.assertRaisesRegex(ValueError, "Levels out of order"):
      sid_symbols.codes_of_string(sid_symbols.symbol(1, 0, 4) + sid_symbols.symbol(0, 0, 4), 4)


if __name__ == "__main__":
  tf.test.main()
