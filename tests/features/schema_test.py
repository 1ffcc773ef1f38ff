"""Tests for features/schema.py: every validation error, and dropping with a report."""

import numpy as np
import pandas as pd
import tensorflow as tf

from features import schema
from tests import base


def _dataset(**overrides) -> schema.Dataset:
  items = pd.DataFrame({"item_id": [10, 11, 12], "first_seen": [0, 5, 9]})
  emb = np.eye(3, 4, dtype=np.float32)
  inter = pd.DataFrame(
    {
      "user_id": [1, 1, 2, 2],
      "item_id": [10, 11, 12, 10],
      "timestamp": [3, 1, 4, 2],
      "click": [1, 0, 1, 0],
      "second_label": [4.0, 2.0, 5.0, 1.0],
    }
  )
  fields = {"name": "t", "items": items, "embeddings": emb, "interactions": inter}
  fields.update(overrides)
  return schema.Dataset(**fields)


class SchemaTest(base.TestCase):
  def test_valid_dataset_is_sorted_by_time_and_typed(self):
    ds, report = schema.validate(_dataset())
    self.assertEqual(ds.interactions["timestamp"].tolist(), [1, 2, 3, 4])
    self.assertEqual(ds.interactions["click"].dtype, np.int8)
    self.assertEqual(report.n_dropped, 0)
    self.assertEqual(report.summary(), "validation: no invalid rows")

  def test_missing_column(self):
    inter = _dataset().interactions.drop(columns=["click"])
    with self.assertRaisesRegex(
      schema.SchemaError, r"interactions table is missing columns \['click'\]"
    ):
      schema.validate(_dataset(interactions=inter))

  def test_nan_embedding_names_the_item(self):
    emb = np.eye(3, 4, dtype=np.float32)
    emb[1, 2] = np.nan
    with self.assertRaisesRegex(
      schema.SchemaError, r"NaN or Inf in the embeddings of items \[11\]"
    ):
      schema.validate(_dataset(embeddings=emb))

  def test_inf_embedding_names_the_item(self):
    emb = np.eye(3, 4, dtype=np.float32)
    emb[2, 0] = np.inf
    with self.assertRaisesRegex(schema.SchemaError, r"items \[12\]"):
      schema.validate(_dataset(embeddings=emb))

  def test_wrong_size_embeddings(self):
    with self.assertRaisesRegex(schema.SchemaError, r"Received shape \(2, 4\) for 3 items"):
      schema.validate(_dataset(embeddings=np.zeros((2, 4), np.float32)))
    with self.assertRaisesRegex(schema.SchemaError, "width 4; expected D=8"):
      schema.validate(_dataset(), expected_dim=8)

  def test_duplicate_item_ids(self):
    items = pd.DataFrame({"item_id": [10, 11, 10], "first_seen": [0, 5, 9]})
    with self.assertRaisesRegex(schema.SchemaError, r"duplicate item ids \[10\]"):
      schema.validate(_dataset(items=items))

  def test_interaction_without_embedding_names_ids_and_rows(self):
    inter = _dataset().interactions.copy()
    inter.loc[2, "item_id"] = 99
    with self.assertRaisesRegex(schema.SchemaError, r"item ids \[99\] at rows \[2\]"):
      schema.validate(_dataset(interactions=inter))

  def test_bad_click_label(self):
    inter = _dataset().interactions.copy()
    inter.loc[0, "click"] = 3
    with self.assertRaisesRegex(schema.SchemaError, r"click not 0/1 at rows \[0\]"):
      schema.validate(_dataset(interactions=inter))

  def test_drop_invalid_reports_counts_by_kind(self):
    emb = np.eye(3, 4, dtype=np.float32)
    emb[1, 0] = np.nan  # item 11 invalid -> its interaction (row 1) has no valid embedding
    inter = _dataset().interactions.copy()
    inter.loc[3, "second_label"] = np.nan
    ds, report = schema.validate(_dataset(embeddings=emb, interactions=inter), drop_invalid=True)
    self.assertEqual(
      report.dropped,
      {"nonfinite_embeddings": 1, "interactions_without_embedding": 1, "nonfinite_second_label": 1},
    )
    self.assertEqual(ds.items["item_id"].tolist(), [10, 12])
    self.assertEqual(ds.interactions["item_id"].tolist(), [10, 12])
    self.assertIn("dropped 1 interactions_without_embedding", report.summary())

  def test_item_index(self):
    ds = _dataset()
    self.assertEqual(ds.item_index(np.array([12, 10, 7])).tolist(), [2, 0, -1])


if __name__ == "__main__":
  tf.test.main()
