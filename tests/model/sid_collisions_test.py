"""Tests of TIGER's collision level."""

import numpy as np
import tensorflow as tf

from model import sid_collisions
from tests import base


class SidCollisionsTest(base.TestCase):
  def test_collision_index_golden(self):
    codes = np.array([[1, 2], [1, 2], [0, 5], [1, 2], [0, 5], [3, 3]])
    self.assertAllEqual(sid_collisions.collision_index(codes), [0, 1, 0, 2, 1, 0])

  def test_unique_sids_get_zero(self):
    codes = np.array([[0, 1], [1, 0], [1, 1]])
    self.assertAllEqual(sid_collisions.collision_index(codes), [0, 0, 0])

  def test_extra_level_makes_ids_unique(self):
    codes = np.random.default_rng(0).integers(0, 3, size=(200, 2))
    extended = sid_collisions.with_collision_level(codes)
    self.assertEqual(extended.shape, (200, 3))
    self.assertLen(np.unique(extended, axis=0), 200)
    self.assertAllEqual(extended[:, :2], codes)
    size = sid_collisions.collision_level_size(extended[:, 2])
    self.assertEqual(size, np.unique(codes, axis=0, return_counts=True)[1].max())

  def test_empty(self):
    self.assertEqual(sid_collisions.collision_index(np.zeros((0, 3), np.int32)).shape, (0,))
    self.assertEqual(sid_collisions.collision_level_size(np.zeros(0, np.int32)), 0)

  def test_bad_shapes(self):
    with self.assertRaisesRegex(ValueError, r"\[N, L\] array. Received shape \(3,\)"):
      sid_collisions.collision_index(np.zeros(3))
    with self.assertRaisesRegex(ValueError, "one entry per item"):
      sid_collisions.with_collision_level(np.zeros((3, 2)), np.zeros(2))


if __name__ == "__main__":
  tf.test.main()
