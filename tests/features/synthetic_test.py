"""Tests for features/synthetic.py: determinism, structure, chunking."""

import hashlib

import numpy as np
import pandas as pd
import tensorflow as tf

from features import schema, synthetic
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

  def test_bad_config(self):
    with self.assertRaisesRegex(ValueError, "`n_items` must be positive. Received: n_items=0"):
      synthetic.SyntheticConfig(n_items=0)


if __name__ == "__main__":
  tf.test.main()
