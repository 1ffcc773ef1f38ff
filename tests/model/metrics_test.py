"""Tests of AUC, GAUC, slices and the user-clustered bootstrap, with hand-checked values."""

import numpy as np
from sklearn import metrics as sk_metrics

from model import metrics
from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import tf


class MetricsTest(base.TestCase):
  def test_auc_by_hand(self):
    # Pairs (pos, neg): (0.9, 0.1) 1, (0.9, 0.5) 1, (0.5, 0.1) 1, (0.5, 0.5) tie 0.5 -> 3.5 / 4.
    self.assertAlmostEqual(
      metrics.auc(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.5, 0.5])), 0.875
    )
    self.assertTrue(np.isnan(metrics.auc(np.array([1, 1]), np.array([0.1, 0.2]))))
    # Weight 2 on the tied negative: pairs 1*1 + 1*2 + 1*1 + 0.5*2 = 5 of 2*3 = 6.
    weighted = metrics.auc(
      np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.5, 0.5]), weights=np.array([1, 1, 2, 1])
    )
    self.assertAlmostEqual(weighted, 5.0 / 6.0)

  @base.parameterized.named_parameters(("unweighted", False), ("weighted", True))
  def test_auc_matches_sklearn(self, weighted):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 500)
    scores = np.round(labels * 0.5 + rng.normal(size=500), 1)  # Rounded: many ties.
    weights = rng.integers(1, 5, 500).astype(np.float64) if weighted else None
    expected = sk_metrics.roc_auc_score(labels, scores, sample_weight=weights)
    self.assertAlmostEqual(metrics.auc(labels, scores, weights=weights), expected, places=10)

  def test_gauc_by_hand(self):
    labels = np.array([1, 0, 1, 0, 0, 1, 1])
    scores = np.array([0.9, 0.1, 0.2, 0.8, 0.3, 0.5, 0.6])
    users = np.array(["a", "a", "b", "b", "b", "c", "c"])
    # a: AUC 1 (2 rows); b: positive 0.2 below both negatives -> 0 (3 rows); c: one label only.
    self.assertAlmostEqual(metrics.gauc(labels, scores, users), (1.0 * 2 + 0.0 * 3) / 5)
    cold = np.array([0, 0, 1, 1, 1, 0, 0])
    out = metrics.slice_metrics(labels, scores, users, cold=cold, min_gauc_users=1)
    self.assertEqual(out["cold"]["rows"], 3)
    self.assertEqual(out["cold"]["gauc_users"], 1)
    self.assertAlmostEqual(out["warm"]["gauc"], 1.0)
    # With the default minimum (20 users with both labels) one user is too few: no 1.0, no NaN.
    small = metrics.slice_metrics(labels, scores, users, cold=cold)
    self.assertIsNone(small["warm"]["gauc"])
    self.assertTrue(small["warm"]["gauc_too_small"])
    self.assertEqual(metrics.format_gauc(small["warm"]), "too small (1 users)")

  def test_popularity_bands_and_age_slices_by_hand(self):
    # 200 items with training impressions: item i has 200 - i; head = top 1% (2 items), torso =
    # the next 9% (18), tail = the other 180; an item without impressions is "none".
    train = np.concatenate([np.full(200 - i, i) for i in range(200)])
    bands = metrics.popularity_bands(train, np.array([0, 1, 2, 19, 20, 199, 500]))
    self.assertEqual(bands.tolist(), ["head", "head", "torso", "torso", "tail", "tail", "none"])
    masks = metrics.extra_slice_masks(bands, np.array([0, 86_399, 86_400, 10, 5, 1e9, 3]))
    self.assertEqual(masks["age_under_1d"].tolist(), [1, 1, 0, 1, 1, 0, 1])
    self.assertEqual(int(masks["tail"].sum()), 2)

  def test_bootstrap_difference(self):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    users = np.repeat(np.arange(100), 20)
    good = labels + rng.normal(size=2000)
    bad = rng.normal(size=2000)
    for metric in ("auc", "gauc"):
      out = metrics.bootstrap_difference(
        labels, users, [good], [bad], metric=metric, n_resamples=50
      )
      self.assertGreater(out["low"], 0.0)
      self.assertLess(out["low"], out["diff"])
      self.assertLess(out["diff"], out["high"])
      same = metrics.bootstrap_difference(
        labels, users, [bad], [bad], metric=metric, n_resamples=20
      )
      self.assertAlmostEqual(same["diff"], 0.0)
    with self.assertRaisesRegex(ValueError, "`metric` must be"):
      metrics.bootstrap_difference(labels, users, [good], [bad], metric="ndcg")


if __name__ == "__main__":
  tf.test.main()
