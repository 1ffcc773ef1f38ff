"""Tests for features/user_files.py and the `files` dataset."""

import os
import tempfile

import numpy as np
import pandas as pd
import tensorflow as tf

from features import datasets, schema
from tests import base


class UserFilesTest(base.TestCase):
  def _write(self, embeddings="npz", interactions_format="parquet"):
    folder = tempfile.mkdtemp(dir=self.get_temp_dir())
    pd.DataFrame({"item_id": [5, 6, 7]}).to_csv(os.path.join(folder, "items.csv"), index=False)
    emb = np.arange(12, dtype=np.float32).reshape(3, 4)
    if embeddings == "npz":  # stored in another order than the items file
      np.savez(os.path.join(folder, "embeddings.npz"), item_id=np.array([7, 5, 6]), embedding=emb)
    else:
      np.save(os.path.join(folder, "embeddings.npy"), emb)
    inter = pd.DataFrame(
      {
        "user_id": ["u1", "u2", "u1"],
        "item_id": [5, 7, 6],
        "timestamp": [30, 10, 20],
        "click": [1, 0, 1],
        "dwell": [3.0, 0.0, 1.5],
      }
    )
    if interactions_format == "parquet":
      inter.to_parquet(os.path.join(folder, "interactions.parquet"))
    else:
      inter.to_csv(os.path.join(folder, "interactions.csv"), index=False)
    return folder

  def test_npz_embeddings_are_aligned_by_id(self):
    folder = self._write()
    ds = datasets.load_dataset("files", folder, second_label_column="dwell")
    self.assertAllEqual(ds.embeddings[0], [4, 5, 6, 7])  # item 5 is row 1 of the npz
    self.assertAllEqual(ds.embeddings[2], [0, 1, 2, 3])  # item 7 is row 0
    self.assertEqual(ds.items["first_seen"].tolist(), [30, 20, 10])
    self.assertEqual(ds.interactions["user_id"].tolist(), ["u2", "u1", "u1"])
    self.assertEqual(ds.second_label_name, "dwell")

  def test_npy_and_csv(self):
    folder = self._write(embeddings="npy", interactions_format="csv")
    ds = datasets.load_dataset("files", folder, second_label_column="dwell")
    self.assertAllEqual(ds.embeddings[0], [0, 1, 2, 3])

  def test_missing_second_label_column(self):
    folder = self._write()
    with self.assertRaisesRegex(schema.SchemaError, "second-label column 'second_label'"):
      datasets.load_dataset("files", folder)

  def test_missing_file_and_folder(self):
    folder = self._write()
    os.remove(os.path.join(folder, "items.csv"))
    with self.assertRaisesRegex(FileNotFoundError, "No items file .* items.parquet, items.csv"):
      datasets.load_dataset("files", folder)
    with self.assertRaisesRegex(FileNotFoundError, "Received: None"):
      datasets.load_dataset("files", None)

  def test_unknown_dataset(self):
    with self.assertRaisesRegex(ValueError, "Received: dataset='imdb'"):
      datasets.load_dataset("imdb")


if __name__ == "__main__":
  tf.test.main()
