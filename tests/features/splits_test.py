"""Tests for features/splits.py on a small dataset whose counts can be checked by hand."""

import numpy as np
import pandas as pd
import tensorflow as tf

from features import splits
from tests import base


def _interactions() -> pd.DataFrame:
  # Items 1..5 first appear at t = 1, 2, 3, 4, 5. Users a (7 rows), b (4 rows), c (1 row, only t=9).
  rows = [
      ("a", 1, 1), ("a", 2, 2), ("a", 1, 3), ("a", 3, 4), ("a", 2, 6), ("a", 5, 7), ("a", 1, 8),
      ("b", 4, 4), ("b", 1, 5), ("b", 2, 6), ("b", 4, 9),
      ("c", 5, 9),
  ]  # fmt: skip
  frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
  frame["click"] = np.int8(1)
  frame["second_label"] = np.float32(1.0)
  return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


class GlobalTimeSplitTest(base.TestCase):
  def test_counts_at_explicit_time(self):
    split = splits.global_time_split(_interactions(), split_time=7)
    # Train: t < 7 -> 8 rows; eval: t >= 7 -> a@7(item5), a@8(item1), b@9(item4), c@9(item5).
    self.assertEqual(
        split.counts(),
        {
            "n_items": 5, "n_users": 3, "n_interactions": 12, "n_train": 8, "n_eval": 4,
            "n_warm_eval": 2, "n_cold_eval": 2, "n_cold_items": 1, "n_eval_rows_unknown_user": 1,
        },
    )  # fmt: skip
    self.assertEqual(split.cold_item_ids.tolist(), [5])

  def test_quantile_cut(self):
    split = splits.global_time_split(_interactions(), time_quantile=0.5)
    self.assertEqual(split.params["split_time"], 5)  # median of the 12 timestamps is 5
    self.assertEqual(len(split.train), 5)

  def test_bad_quantile(self):
    with self.assertRaisesRegex(
      ValueError, r"`time_quantile` must be in \(0, 1\). Received: time_quantile=1.5"
    ):
      splits.global_time_split(_interactions(), time_quantile=1.5)

  def test_cut_outside_range(self):
    with self.assertRaisesRegex(ValueError, "leaves 0 training"):
      splits.global_time_split(_interactions(), split_time=0)


class NewItemsSplitTest(base.TestCase):
  def test_counts_by_hand(self):
    split = splits.new_items_split(
      _interactions(), cold_item_fraction=0.2, warm_holdout_fraction=0.34
    )
    # ceil(0.2 * 5) = 1 cold item: item 5 (first seen last) -> rows a@7, c@9 are cold.
    # Warm rows: a has 6 -> floor(6 * 0.34) = 2 held (a@6, a@8); b has 4 -> 1 held (b@9).
    self.assertEqual(split.cold_item_ids.tolist(), [5])
    counts = split.counts()
    self.assertEqual(counts["n_train"], 7)
    self.assertEqual(counts["n_eval"], 5)
    self.assertEqual(counts["n_cold_eval"], 2)
    self.assertEqual(counts["n_warm_eval"], 3)
    self.assertEqual(counts["n_eval_rows_unknown_user"], 1)  # user c only has a cold row
    warm = split.eval.loc[~split.eval["cold"]]
    self.assertEqual(
      sorted(zip(warm["user_id"], warm["timestamp"])), [("a", 6), ("a", 8), ("b", 9)]
    )

  def test_cold_items_never_in_train(self):
    split = splits.new_items_split(_interactions(), cold_item_fraction=0.4)
    self.assertEqual(split.cold_item_ids.tolist(), [4, 5])
    self.assertFalse(split.train["item_id"].isin(split.cold_item_ids).any())

  def test_first_seen_orders_items_by_release(self):
    # By first interaction item 5 is newest; release dates say item 1 came out last.
    first_seen = {1: 100, 2: 0, 3: 0, 4: 0, 5: 0}
    split = splits.new_items_split(
      _interactions(),
      cold_item_fraction=0.2,
      new_items_by="first_seen",
      first_seen=pd.Series(first_seen),
    )
    self.assertEqual(split.cold_item_ids.tolist(), [1])
    self.assertEqual(split.params["new_items_by"], "first_seen")
    with self.assertRaisesRegex(ValueError, "needs the items' `first_seen`"):
      splits.new_items_split(_interactions(), new_items_by="first_seen")

  def test_unknown_method(self):
    with self.assertRaisesRegex(ValueError, "Received: split='random'"):
      splits.parse_method("random")


if __name__ == "__main__":
  tf.test.main()
