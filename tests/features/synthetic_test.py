"""Tests for features/synthetic.py: determinism, structure, chunking."""

import hashlib

import numpy as np
import pandas as pd
import tensorflow as tf

from features import schema, synthetic
from model import metrics
from tests import base

_SMALL = synthetic.SyntheticConfig(n_items=300, n_users=50, n_interactions=3_000, embedding_dim=16)


def _digest(ds: schema.Dataset) -> str:
  h = hashlib.sha256()
  h.update(ds.embeddings.tobytes())
  h.update(pd.util.hash_pandas_object(ds.items, index=False).to_numpy().tobytes())
  h.update(pd.util.hash_pandas_object(ds.interactions, index=False).to_numpy().tobytes())
  return h.hexdigest()


class SyntheticTest(base.TestCase):
  def test_same_seed_same_bytes(self):
    self.assertEqual(_digest(synthetic.generate(_SMALL)), _digest(synthetic.generate(_SMALL)))

  def test_other_seed_other_bytes(self):
    other = synthetic.SyntheticConfig(**{**_SMALL.__dict__, "seed": 1})
    self.assertNotEqual(_digest(synthetic.generate(_SMALL)), _digest(synthetic.generate(other)))

  def test_chunk_size_does_not_change_the_items(self):
    chunked = synthetic.SyntheticConfig(**{**_SMALL.__dict__, "chunk_size": 128})
    a, b = synthetic.generate(_SMALL), synthetic.generate(chunked)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    self.assertEqual(len(b.interactions), _SMALL.n_interactions)

  def test_schema_and_shapes(self):
    ds, report = schema.validate(synthetic.generate(_SMALL))
    self.assertEqual(report.n_dropped, 0)
    self.assertEqual(ds.embeddings.shape, (300, 16))
    self.assertAllClose(np.linalg.norm(ds.embeddings, axis=1), np.ones(300), atol=1e-5)
    self.assertEqual(ds.second_label_name, "engagement")
    self.assertTrue(set(ds.interactions["click"].unique()) <= {0, 1})

  def test_no_interaction_before_its_item_exists(self):
    ds = synthetic.generate(_SMALL)
    first_seen = ds.items.set_index("item_id")["first_seen"]
    inter = ds.interactions
    self.assertTrue(
      (inter["timestamp"].to_numpy() >= first_seen[inter["item_id"]].to_numpy()).all()
    )

  def test_related_items_are_closer(self):
    # Items of one leaf topic are nearer each other than items of different top-level topics.
    cfg = synthetic.SyntheticConfig(n_items=400, n_users=10, n_interactions=10, embedding_dim=32)
    world = synthetic._world(cfg)
    emb = synthetic.generate(cfg).embeddings
    leaf = world.item_leaf
    same = leaf[:, None] == leaf[None, :]
    sims = emb @ emb.T
    off_diag = ~np.eye(len(emb), dtype=bool)
    self.assertGreater(sims[same & off_diag].mean(), sims[~same].mean() + 0.3)

  def test_production_profile_has_the_papers_properties(self):
    cfg = synthetic.SyntheticConfig(n_items=3000, n_users=400, n_interactions=60_000, seed=4)
    ds = synthetic.generate(cfg)
    inter = ds.interactions
    counts = np.sort(np.bincount(inter["item_id"], minlength=cfg.n_items))[::-1]
    head = counts[: cfg.n_items // 100]
    # Heavy tail: the top 1% of items take at least a quarter of the impressions, hundreds each.
    self.assertGreaterEqual(head.sum() / counts.sum(), 0.25)
    self.assertGreaterEqual(head.min(), 100)
    world = synthetic._world(cfg)
    # The item effect is invisible in the content: a linear fit from embeddings to quality,
    # trained on half the items, explains almost nothing of the other half.
    x, q = ds.embeddings.astype(np.float64), world.quality
    half = cfg.n_items // 2
    coef, *_ = np.linalg.lstsq(np.c_[x[:half], np.ones(half)], q[:half], rcond=None)
    pred = np.c_[x[half:], np.ones(cfg.n_items - half)] @ coef
    r2 = 1 - np.sum((q[half:] - pred) ** 2) / np.sum((q[half:] - q[half:].mean()) ** 2)
    self.assertLess(r2, 0.1)
    # Both signals are real: each part of the noiseless logit alone ranks clicks well above 0.5.
    scores = synthetic.oracle_scores(cfg, inter)
    labels = inter["click"].to_numpy()
    self.assertGreater(metrics.auc(labels, scores["content"]), 0.6)
    self.assertGreater(metrics.auc(labels, scores["hidden quality"]), 0.6)
    # Items enter continuously: the last 5% of the time brings items never seen before it.
    first = ds.items["first_seen"].to_numpy()
    end = inter["timestamp"].max()
    late = first >= end - 0.05 * (end - first.min())
    self.assertGreater(int(np.isin(inter["item_id"], np.flatnonzero(late)).sum()), 100)

  def test_topics_v1_profile_is_the_earlier_generator(self):
    old = synthetic.config_for_profile("topics_v1", n_items=300, n_users=50, n_interactions=3000)
    self.assertEqual((old.popularity, old.quality_std, old.recency_days), ("lognormal", 0.8, 60.0))
    self.assertEqual(old.content_effect_std, 0.0)
    with self.assertRaisesRegex(ValueError, "`profile` must be one of"):
      synthetic.config_for_profile("nope")

  def test_bad_config(self):
    with self.assertRaisesRegex(ValueError, "`n_items` must be positive. Received: n_items=0"):
      synthetic.SyntheticConfig(n_items=0)


if __name__ == "__main__":
  tf.test.main()
