"""Tests of the order interleaved benchmarks run their configurations in."""

import collections
import doctest

from benchmarks import interleaving
from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import tf


class RotatedTest(base.TestCase):
  def test_golden_rotations(self):
    names = ["hash", "unigram", "hybrid"]
    self.assertEqual(interleaving.rotated(names, 0), ["hash", "unigram", "hybrid"])
    self.assertEqual(interleaving.rotated(names, 1), ["unigram", "hybrid", "hash"])
    self.assertEqual(interleaving.rotated(names, 5), ["hybrid", "hash", "unigram"])
    self.assertEqual(names, ["hash", "unigram", "hybrid"])  # The input is left as it was.

  def test_every_name_takes_every_position_once_per_cycle(self):
    names = [f"scheme{i}" for i in range(7)]
    positions = collections.defaultdict(set)
    for repeat in range(len(names)):
      order = interleaving.rotated(names, repeat)
      self.assertCountEqual(order, names)
      for position, name in enumerate(order):
        positions[name].add(position)
    self.assertEqual({name: len(p) for name, p in positions.items()}, dict.fromkeys(names, 7))

  def test_empty_and_single(self):
    self.assertEqual(interleaving.rotated([], 3), [])
    self.assertEqual(interleaving.rotated(("hash",), 3), ["hash"])

  def test_docstring_example(self):
    result = doctest.testmod(interleaving)
    self.assertEqual((result.failed, result.attempted), (0, 2))


if __name__ == "__main__":
  tf.test.main()
