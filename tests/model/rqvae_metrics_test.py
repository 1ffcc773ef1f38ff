"""Tests of the SID quality measures."""

import numpy as np
import tensorflow as tf

from model import rqvae_metrics
from tests import base

CODES = np.array([[0, 1], [0, 1], [0, 2], [1, 0]])


class RqvaeMetricsTest(base.TestCase):
  def test_sid_counts_golden(self):
    self.assertEqual(rqvae_metrics.unique_sid_fraction(CODES), 0.75)
    self.assertEqual(rqvae_metrics.max_items_per_sid(CODES), 2)
    self.assertAllEqual(rqvae_metrics.code_counts(CODES, 4), [[3, 1, 0, 0], [1, 2, 1, 0]])
    self.assertAllClose(rqvae_metrics.level_utilization(CODES, 4), [0.5, 0.75])

  def test_perplexity_golden(self):
    # Uniform over 4 codes -> 4; one code only -> 1.
    self.assertAllClose(rqvae_metrics.perplexity_from_counts([[5, 5, 5, 5], [9, 0, 0, 0]]), [4, 1])

  def test_prefix_table_golden(self):
    codes = np.array([[0, 0], [0, 1], [1, 0]])
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    rows = rqvae_metrics.prefix_table(codes, emb)
    # n=1: groups {0,1} and {2}; the only pair is orthogonal -> cosine 0. Sizes [2, 1].
    self.assertEqual(rows[0]["pairs"], 1)
    self.assertAllClose(rows[0]["mean_cosine"], 0.0)
    self.assertAllClose(rows[0]["subtrie_p50"], 1.5)
    # n=2: every SID unique -> no pairs.
    self.assertTrue(np.isnan(rows[1]["mean_cosine"]))
    self.assertEqual(rows[1]["groups"], 3)

  def test_prefix_table_cosine_matches_pairwise_mean(self):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2, size=(30, 1))
    emb = rng.normal(size=(30, 5))
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sims = [
      unit[i] @ unit[j] for i in range(30) for j in range(i + 1, 30) if codes[i, 0] == codes[j, 0]
    ]
    self.assertAllClose(rqvae_metrics.prefix_table(codes, emb)[0]["mean_cosine"], np.mean(sims))

  def test_code_usage_metric(self):
    metric = rqvae_metrics.CodeUsage(num_levels=2, codebook_size=4)
    metric.update_state(tf.constant(CODES, tf.int32))
    result = metric.result()
    self.assertAllClose(result["utilization_0"], 0.5)
    self.assertAllClose(result["utilization_1"], 0.75)
    self.assertAllClose(
      result["perplexity_0"], np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25)))
    )
    metric.reset_state()
    self.assertAllClose(metric.result()["utilization_0"], 0.0)

  def test_code_usage_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "Received: num_levels=0"):
      rqvae_metrics.CodeUsage(num_levels=0, codebook_size=4)


if __name__ == "__main__":
  tf.test.main()
