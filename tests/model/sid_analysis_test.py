"""Golden values of the SID analyses, each small enough to check by hand."""

import math

import numpy as np

from model import rqvae_metrics, sid_analysis
from tests import base
from tests.base import tf

# Items 0..3: n=1 groups {0, 1, 2}, {3}; n=2 groups {0}, {1, 2}, {3}.
CODES = np.array([[0, 0], [0, 1], [0, 1], [1, 0]])


def _h(*p):
  return -sum(x * math.log2(x) for x in p if x > 0)


class GroupsAndPairsTest(base.TestCase):
  def test_prefix_groups_and_pairs(self):
    self.assertAllEqual(sid_analysis.prefix_groups(CODES, 0), [0, 0, 0, 0])
    self.assertEqual(sid_analysis.pairs_within(sid_analysis.prefix_groups(CODES, 1)), 3.0)
    self.assertEqual(sid_analysis.pairs_within(sid_analysis.prefix_groups(CODES, 2)), 1.0)

  def test_weighted_pairs_never_pair_an_item_with_its_copy(self):
    groups = sid_analysis.prefix_groups(CODES, 1)
    # Item 0 drawn twice, item 2 not at all: pairs (0, 1) x 2 copies of item 0 = 2.
    self.assertEqual(sid_analysis.pairs_within(groups, np.array([2.0, 1.0, 0.0, 1.0])), 2.0)
    self.assertEqual(sid_analysis.pairs_within(np.arange(4), np.array([4.0, 0, 0, 0])), 0.0)

  def test_joint_groups_are_the_finer_partition(self):
    joint = sid_analysis.joint_groups(np.array([0, 0, 1, 1]), np.array([7, 8, 7, 7]))
    self.assertLen(np.unique(joint), 3)
    self.assertEqual(joint[2], joint[3])
    self.assertNotEqual(joint[0], joint[1])

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, r"Received: n=3, codes.shape=\(4, 2\)"):
      sid_analysis.prefix_groups(CODES, 3)
    with self.assertRaisesRegex(ValueError, r"Received: shapes \(2,\) and \(3,\)"):
      sid_analysis.joint_groups(np.zeros(2, int), np.zeros(3, int))
    with self.assertRaisesRegex(ValueError, r"Received: \(4, 2\) and \(3, 2\)"):
      sid_analysis.prefix_agreement(CODES, CODES[:3])


class AgreementTest(base.TestCase):
  def test_pair_agreement_golden(self):
    a = np.array([[0], [0], [0], [1]])  # pairs (0,1) (0,2) (1,2)
    b = np.array([[4], [4], [9], [9]])  # pairs (0,1) (2,3); shared with a: (0,1)
    (row,) = sid_analysis.prefix_agreement(a, b, n_resamples=0)
    self.assertAllClose(row["agreement"]["value"], 1 / 3)
    self.assertAllClose(row["reverse_agreement"]["value"], 1 / 2)
    self.assertAllClose(row["chance"], 2 / 6)  # pairs in b / all 6 pairs
    self.assertAllClose(row["reverse_chance"], 3 / 6)
    self.assertEqual((row["pairs_a"], row["pairs_b"], row["pairs_both"]), (3.0, 2.0, 1.0))

  def test_agreement_ignores_labels(self):
    relabelled = np.array([[5, 2], [5, 3], [5, 3], [9, 9]])  # CODES with other integers
    rows = sid_analysis.prefix_agreement(CODES, relabelled, n_resamples=50)
    for row, chance in zip(rows, (3 / 6, 1 / 6)):
      self.assertEqual(row["agreement"], {"value": 1.0, "low": 1.0, "high": 1.0})
      self.assertAllClose(row["chance"], chance)

  def test_interval_brackets_the_estimate(self):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, (400, 2))
    b = np.where(rng.random((400, 1)) < 0.6, a, rng.integers(0, 4, (400, 2)))
    for row in sid_analysis.prefix_agreement(a, b, n_resamples=100):
      interval = row["agreement"]
      self.assertLess(interval["low"], interval["value"])
      self.assertLess(interval["value"], interval["high"])
      self.assertGreater(interval["low"], row["chance"])


class InformationTest(base.TestCase):
  def test_entropy_and_mutual_information_golden(self):
    x = np.array([0, 0, 1, 1])
    y = np.array([0, 0, 0, 1])
    self.assertAllClose(sid_analysis.entropy(x), 1.0)
    self.assertAllClose(sid_analysis.entropy(y), _h(0.75, 0.25))
    # Cells (0,0) x2, (1,0), (1,1): H(x, y) = 1.5 bits.
    mi = 1.0 + _h(0.75, 0.25) - 1.5
    self.assertAllClose(sid_analysis.mutual_information(x, y), mi)
    self.assertAllClose(
      sid_analysis.normalized_mutual_information(x, y), mi / ((1.0 + _h(0.75, 0.25)) / 2)
    )
    self.assertAllClose(sid_analysis.mutual_information(x, np.array([0, 1, 0, 1])), 0.0)
    self.assertAllClose(sid_analysis.normalized_mutual_information(x, 3 - x), 1.0)
    self.assertEqual(
      sid_analysis.normalized_mutual_information(np.zeros(3, int), np.ones(3, int)), 1.0
    )

  def test_weights_act_as_repeated_items(self):
    self.assertAllClose(
      sid_analysis.entropy(np.array([0, 1]), np.array([3.0, 1.0])), _h(0.75, 0.25)
    )
    x, y = np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1])
    w = np.array([2.0, 0.0, 1.0, 3.0])
    repeated = np.repeat(np.arange(4), w.astype(int))
    self.assertAllClose(
      sid_analysis.mutual_information(x, y, w),
      sid_analysis.mutual_information(x[repeated], y[repeated]),
    )

  def test_level_mutual_information_of_relabelled_codes(self):
    rows = sid_analysis.level_mutual_information(CODES, 7 - CODES, n_resamples=20)
    self.assertLen(rows, 2)
    self.assertAllClose(rows[0]["mi_bits"]["value"], _h(0.75, 0.25))  # level 1: sizes 3 and 1
    self.assertAllClose(rows[1]["mi_bits"]["value"], 1.0)  # level 2: two codes of two items
    self.assertAllClose(rows[0]["nmi"]["value"], 1.0)
    self.assertLessEqual(rows[0]["chance_mi_bits"], rows[0]["mi_bits"]["value"])
    self.assertAllClose(rows[1]["entropy_a_bits"], rows[1]["entropy_b_bits"])


class PurityAndCategoriesTest(base.TestCase):
  def test_purity_golden(self):
    groups = np.array([0, 0, 0, 1, 1])
    labels = np.array([2, 2, 3, 3, 3])
    self.assertAllClose(sid_analysis.purity(groups, labels), 4 / 5)  # 2 of 3, 2 of 2
    # Item 2 weighs 3: group 0's majority becomes label 3 (3 of 5); group 1: 2 of 2.
    weights = np.array([1.0, 1.0, 3.0, 1.0, 1.0])
    self.assertAllClose(sid_analysis.purity(groups, labels, weights), 5 / 7)

  def test_category_agreement_leaves_unknown_out(self):
    codes = np.array([[0], [0], [1], [1], [1]])
    labels = np.array([0, 0, 1, 1, -1])
    (row,) = sid_analysis.category_agreement(codes, labels, n_resamples=20, permutations=3)
    self.assertEqual(row["items"], 4)
    self.assertEqual(row["groups"], 2)
    self.assertAllClose(row["nmi"]["value"], 1.0)
    self.assertAllClose(row["purity"]["value"], 1.0)
    self.assertLessEqual(row["chance_nmi"], 1.0)
    self.assertGreaterEqual(row["chance_purity"], 0.5)  # Two groups of two: never below half.


class SimilarityAndSizesTest(base.TestCase):
  EMB = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])

  def test_mean_pair_cosine_golden(self):
    # Pairs of the first three: cos 0, 1/sqrt2, 1/sqrt2.
    self.assertAllClose(sid_analysis.mean_pair_cosine(self.EMB[:3]), math.sqrt(2) / 3)

  def test_group_cosine_sums_golden(self):
    sums, pairs = sid_analysis.group_cosine_sums(np.array([0, 0, 1, 1]), self.EMB)
    self.assertAllClose(sums, [0.0, 1 / math.sqrt(2)])
    self.assertAllClose(pairs, [1.0, 1.0])

  def test_prefix_similarity_is_the_prefix_table_with_intervals(self):
    rows = sid_analysis.prefix_similarity(CODES, self.EMB, n_resamples=30)
    table = rqvae_metrics.prefix_table(CODES, self.EMB, max_pairs_per_group=None)
    # n=1: group {0, 1, 2}: mean of 0, 1/sqrt2, 1/sqrt2; n=2: group {1, 2}: 1/sqrt2.
    self.assertAllClose([r["mean_cosine"] for r in rows], [math.sqrt(2) / 3, 1 / math.sqrt(2)])
    self.assertAllClose([r["mean_cosine"] for r in rows], [r["mean_cosine"] for r in table])
    for row in rows:
      self.assertLessEqual(row["mean_cosine_low"], row["mean_cosine"] + 1e-9)
      self.assertGreaterEqual(row["mean_cosine_high"], row["mean_cosine"] - 1e-9)
      self.assertAllClose(row["random_pair_cosine"], sid_analysis.mean_pair_cosine(self.EMB))

  def test_size_histogram_golden(self):
    hist = sid_analysis.size_histogram(np.array([1, 1, 2, 3, 4, 9]))
    self.assertEqual(hist, {"bin_low": [1, 2, 4, 8], "groups": [2, 2, 1, 1], "items": [2, 5, 4, 9]})

  def test_subtrie_sizes_golden(self):
    one, two = sid_analysis.subtrie_sizes(CODES)
    self.assertEqual((one["groups"], one["max"], one["p50"]), (2, 3, 2.0))  # sizes 3, 1
    self.assertAllClose(one["singleton_item_share"], 1 / 4)
    self.assertEqual((two["groups"], two["max"], two["p50"]), (3, 2, 1.0))  # sizes 1, 2, 1
    self.assertAllClose(two["singleton_item_share"], 2 / 4)
    self.assertEqual(two["histogram"]["groups"], [2, 1])


class BootstrapTest(base.TestCase):
  def test_constant_statistic(self):
    out = sid_analysis.bootstrap_interval(lambda w: 0.5, 10, n_resamples=20)
    self.assertEqual(out, {"value": 0.5, "low": 0.5, "high": 0.5})

  def test_weights_are_multiplicities(self):
    values = np.arange(10.0)
    seen = []

    def mean(w):
      seen.append(None if w is None else w.sum())
      return float(np.average(values, weights=w))

    for method in ("percentile", "normal"):
      out = sid_analysis.bootstrap_interval(mean, 10, n_resamples=50, method=method)
      self.assertEqual(out["value"], 4.5)
      self.assertLess(out["low"], 4.5)
      self.assertGreater(out["high"], 4.5)
    self.assertEqual(set(seen), {None, 10.0})

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "Received: n_resamples=-1, level=0.95"):
      sid_analysis.bootstrap_interval(lambda w: 0.0, 3, n_resamples=-1)
    with self.assertRaisesRegex(ValueError, "method='bca'"):
      sid_analysis.bootstrap_interval(lambda w: 0.0, 3, method="bca")


if __name__ == "__main__":
  tf.test.main()
