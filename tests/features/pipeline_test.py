"""Tests for features/pipeline.py."""

import numpy as np
import pandas as pd
import tensorflow as tf

from features import pipeline, schema
from tests import base


def _dataset() -> schema.Dataset:
  items = pd.DataFrame({"item_id": [10, 20, 30], "first_seen": [0, 0, 0]})
  emb = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
  inter = pd.DataFrame(
    {
      "user_id": [7, 8, 7],
      "item_id": [30, 10, 20],
      "timestamp": [1, 2, 3],
      "click": np.array([1, 0, 1], np.int8),
      "second_label": np.array([0.5, 0.0, 2.0], np.float32),
    }
  )
  return schema.Dataset("t", items, emb, inter)


class PipelineTest(base.TestCase):
  def test_batches_hold_gathered_embeddings_and_string_ids(self):
    ds = _dataset()
    batches = list(pipeline.make_tf_dataset(ds, ds.interactions, batch_size=2))
    self.assertLen(batches, 2)
    first = batches[0]
    self.assertEqual(sorted(first), sorted(pipeline.FEATURE_KEYS))
    self.assertAllEqual(first["user_id"], [b"7", b"8"])
    self.assertAllEqual(first["item_id"], [b"30", b"10"])
    self.assertAllEqual(first["content_embedding"], [[1, 1], [1, 0]])
    self.assertAllEqual(first["click"], [1.0, 0.0])
    self.assertEqual(first["click"].dtype, tf.float32)

  def test_shuffle_is_deterministic_by_seed(self):
    ds = _dataset()
    order = lambda seed: [
      b["item_id"].numpy().tolist()
      for b in pipeline.make_tf_dataset(ds, ds.interactions, 3, shuffle=True, seed=seed)
    ]
    self.assertEqual(order(1), order(1))

  def test_string_user_ids_pass_through(self):
    ds = _dataset()
    inter = ds.interactions.assign(user_id=["a", "b", "c"])
    batch = next(iter(pipeline.make_tf_dataset(ds, inter, 3)))
    self.assertAllEqual(batch["user_id"], [b"a", b"b", b"c"])

  def test_item_features_are_gathered_per_candidate(self):
    ds = _dataset()
    codes = np.array([[1, 2], [3, 4], [5, 6]], np.int32)  # items 10, 20, 30
    batch = next(
      iter(pipeline.make_tf_dataset(ds, ds.interactions, 3, item_features={"codes": codes}))
    )
    self.assertAllEqual(batch["codes"], [[5, 6], [1, 2], [3, 4]])
    self.assertEqual(batch["codes"].dtype, tf.int32)
    self.assertIn("content_embedding", batch)
    lean = pipeline.make_tf_dataset(
      ds, ds.interactions, 3, item_features={"codes": codes}, content=False
    )
    self.assertNotIn("content_embedding", next(iter(lean)))
    with self.assertRaisesRegex(
      ValueError, r"`item_features\['codes'\]` must have one row per item"
    ):
      pipeline.make_tf_dataset(ds, ds.interactions, 3, item_features={"codes": codes[:2]})

  def test_bad_batch_size_and_unknown_item(self):
    ds = _dataset()
    with self.assertRaisesRegex(ValueError, "Received: batch_size=0"):
      pipeline.make_tf_dataset(ds, ds.interactions, 0)
    with self.assertRaisesRegex(schema.SchemaError, r"without an embedding: \[99\]"):
      pipeline.make_tf_dataset(ds, ds.interactions.assign(item_id=[10, 99, 20]), 2)


if __name__ == "__main__":
  tf.test.main()
