"""Tests for features/movielens.py on the shared ml-latest-small copy."""

import os

import numpy as np
import tensorflow as tf

from features import datasets, movielens, splits
from tests import base


class MovieLensTest(base.TestCase):
  def setUp(self):
    super().setUp()
    if not os.path.exists(os.path.join(base.SHARED_DATA, "ratings.csv")):
      self.skipTest(f"shared MovieLens copy not found at {base.SHARED_DATA}")

  def test_counts_match_the_data_readme(self):
    ds = datasets.load_dataset("movielens", base.SHARED_DATA)
    self.assertEqual(ds.n_items, 9742)
    self.assertEqual(len(ds.interactions), 100_836)
    self.assertEqual(ds.interactions["user_id"].nunique(), 610)
    self.assertEqual(ds.embedding_dim, 384)
    self.assertAlmostEqual(ds.interactions["click"].mean(), 0.482, places=3)  # 48.2% ratings >= 4
    self.assertEqual(ds.second_label_name, "rating")

  def test_global_time_cold_start_matches_the_data_readme(self):
    ds = datasets.load_dataset("movielens", base.SHARED_DATA)
    counts = splits.split_dataset(ds, "global_time", time_quantile=0.8).counts()
    self.assertEqual(counts["n_cold_items"], 1857)  # "1,857 movies are first rated after the cut"
    self.assertEqual(counts["n_cold_eval"], 3044)

  def test_toy_story_neighbours(self):
    ds = datasets.load_dataset("movielens", base.SHARED_DATA)
    rows = ds.item_index(np.array([1, 3114, 78499]))  # Toy Story 1, 2, 3
    sims = ds.embeddings[rows[0]] @ ds.embeddings.T
    self.assertEqual(set(np.argsort(-sims)[1:3]), set(rows[1:]))

  def test_missing_folder_is_named(self):
    missing = os.path.join(self.get_temp_dir(), "nope")
    with self.assertRaisesRegex(FileNotFoundError, "MovieLens file not found: .*nope/ratings.csv"):
      movielens.load(missing)


if __name__ == "__main__":
  tf.test.main()
