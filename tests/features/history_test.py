"""Tests of the history feature: hand-checked rows, no future leakage, tf.data features."""

import numpy as np
import pandas as pd

from features import history
from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import tf
from tests.model import ranker_stand_ins as stand_ins


def _dataset(rows):
  data = stand_ins.toy_dataset(n_items=6)
  inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "click", "second_label"])
  data.interactions = inter.astype({"timestamp": np.int64, "item_id": np.int64})
  return data


class HistoryTest(base.TestCase):
  def test_hand_checked_rows(self):
    # Items 10..15 are rows 0..5. User 1 clicks 10 @1, 11 @2, (12 unclicked @3), 13 @3, 14 @5.
    data = _dataset(
      [
        (1, 10, 1, 1, 0.0),
        (1, 11, 2, 1, 0.0),
        (1, 12, 3, 0, 0.0),
        (1, 13, 3, 1, 0.0),
        (2, 15, 4, 1, 0.0),
        (1, 14, 5, 1, 0.0),
      ]
    )
    rows = history.history_rows(data, data.interactions, history_length=2)
    self.assertAllEqual(
      rows,
      [
        [-1, -1],  # nothing before t=1
        [0, -1],  # 10
        [1, 0],  # 11, 10 (13 has the same time: excluded)
        [1, 0],
        [-1, -1],  # user 2 has no earlier click
        [3, 1],  # 13, 11 (12 was not clicked)
      ],
    )

  def test_no_future_leakage(self):
    data = stand_ins.toy_dataset(n_items=6, n_users=3, n_rows=200, seed=3)
    inter = data.interactions
    rows = history.history_rows(data, inter, history_length=4)
    clicks = inter[inter["click"] > 0]
    for i, target in enumerate(inter.itertuples()):
      earlier = clicks[(clicks.user_id == target.user_id) & (clicks.timestamp < target.timestamp)]
      expected = data.item_index(earlier["item_id"].to_numpy()[::-1][:4])
      got = rows[i][rows[i] >= 0]
      self.assertAllEqual(got, expected)
    # Changing anything at or after a target's time leaves its history unchanged.
    cut = int(np.median(inter["timestamp"]))
    future = inter.copy()
    late = future["timestamp"] >= cut
    future.loc[late, "item_id"] = 15
    future.loc[late, "click"] = 1
    changed = history.history_rows(data, inter, history_length=4, log=future)
    early = (inter["timestamp"] <= cut).to_numpy()
    self.assertAllEqual(changed[early], rows[early])

  def test_tf_dataset_features(self):
    data = _dataset([(1, 10, 1, 1, 0.5), (1, 11, 2, 1, 1.0), (1, 12, 3, 0, 2.0)])
    ds = history.make_tf_dataset(data, data.interactions, batch_size=3, history_length=2)
    batch = next(iter(ds))
    self.assertAllEqual(batch["history_mask"], [[0, 0], [1, 0], [1, 1]])
    self.assertAllEqual(batch["history_item_id"], [[b"", b""], [b"10", b""], [b"11", b"10"]])
    self.assertEqual(batch["history_content_embedding"].shape, (3, 2, stand_ins.D))
    self.assertAllClose(batch["history_content_embedding"][2, 1], data.embeddings[0])
    self.assertAllClose(batch["history_content_embedding"][0], np.zeros((2, stand_ins.D)))
    self.assertAllEqual(batch["item_id"], [b"10", b"11", b"12"])

  def test_item_features_reach_candidates_and_history(self):
    data = _dataset([(1, 10, 1, 1, 0.5), (1, 11, 2, 1, 1.0), (1, 12, 3, 0, 2.0)])
    tokens = np.arange(12, dtype=np.int64).reshape(6, 2) + 1  # item row r: [2r + 1, 2r + 2]
    ds = history.make_tf_dataset(
      data, data.interactions, 3, history_length=2, item_features={"sid_tokens": tokens},
      content=False,
    )  # fmt: skip
    batch = next(iter(ds))
    self.assertAllEqual(batch["sid_tokens"], [[1, 2], [3, 4], [5, 6]])
    self.assertAllEqual(
      batch["history_sid_tokens"], [[[0, 0], [0, 0]], [[1, 2], [0, 0]], [[3, 4], [1, 2]]]
    )
    self.assertAllEqual(batch["history_mask"], [[0, 0], [1, 0], [1, 1]])
    self.assertNotIn("content_embedding", batch)
    self.assertNotIn("history_content_embedding", batch)

  def test_shuffle_keeps_rows_aligned(self):
    data = stand_ins.toy_dataset(n_rows=50)
    ds = history.make_tf_dataset(
      data, data.interactions, 16, history_length=3, shuffle=True, seed=1
    )
    expected = history.history_rows(data, data.interactions, 3)
    by_time = {}
    for batch in ds:
      for t, u, ids in zip(
        batch["timestamp"].numpy(), batch["user_id"].numpy(), batch["history_item_id"].numpy()
      ):
        by_time.setdefault((int(t), u.decode()), []).append(ids.tolist())
    inter = data.interactions
    for i, row in enumerate(inter.itertuples()):
      want = [str(data.items["item_id"][r]).encode() if r >= 0 else b"" for r in expected[i]]
      self.assertIn(want, by_time[(int(row.timestamp), str(row.user_id))])

  def test_bad_arguments(self):
    data = stand_ins.toy_dataset()
    with self.assertRaisesRegex(ValueError, "`history_length` must be positive"):
      history.history_rows(data, data.interactions, 0)


if __name__ == "__main__":
  tf.test.main()
