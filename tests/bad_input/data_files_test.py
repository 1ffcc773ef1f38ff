"""Bad-input probes of `--dataset=files`: each must fail with one SchemaError that names the file,
the column and the offending rows or values (or load, where the input is valid after all)."""

import os
import tempfile

import numpy as np
import pandas as pd

from features import datasets, schema
from tests import base
from tests.base import tf


def write_dir(root, items=None, interactions=None, embeddings=None, npz=True):
  """A valid data folder (3 items, 3 interactions); each argument replaces one part."""
  folder = tempfile.mkdtemp(dir=root)
  items = items if items is not None else pd.DataFrame({"item_id": [5, 6, 7]})
  items.to_csv(os.path.join(folder, "items.csv"), index=False)
  inter = interactions
  if inter is None:
    inter = pd.DataFrame(
      {
        "user_id": ["u1", "u2", "u1"],
        "item_id": [5, 7, 6],
        "timestamp": [30, 10, 20],
        "click": [1, 0, 1],
        "second_label": [3.0, 0.0, 1.5],
      }
    )
  inter.to_csv(os.path.join(folder, "interactions.csv"), index=False)
  emb = np.arange(12, dtype=np.float32).reshape(3, 4) if embeddings is None else embeddings
  if npz:
    np.savez(os.path.join(folder, "embeddings.npz"), item_id=np.array([5, 6, 7]), embedding=emb)
  else:
    np.save(os.path.join(folder, "embeddings.npy"), emb)
  return folder


def _interactions(**columns):
  base_columns = {
    "user_id": ["u1", "u2", "u1"],
    "item_id": [5, 7, 6],
    "timestamp": [30, 10, 20],
    "click": [1, 0, 1],
    "second_label": [3.0, 0.0, 1.5],
  }
  base_columns.update(columns)
  return pd.DataFrame({k: v for k, v in base_columns.items() if v is not None})


class DataFileProbesTest(base.TestCase):
  def _fails(self, folder, pattern, **kwargs):
    with self.assertRaisesRegex(schema.SchemaError, pattern):
      datasets.load_dataset("files", folder, **kwargs)

  def test_empty_and_header_only_files(self):
    folder = write_dir(self.get_temp_dir())
    open(os.path.join(folder, "interactions.csv"), "w").close()
    self._fails(folder, r"interactions.csv is empty \(no header, no rows\)")
    with open(os.path.join(folder, "interactions.csv"), "w") as f:
      f.write("user_id,item_id,timestamp,click,second_label\n")
    self._fails(folder, r"interactions.csv has no rows \(columns \['user_id'")

  def test_not_utf8(self):
    folder = write_dir(self.get_temp_dir())
    with open(os.path.join(folder, "items.csv"), "wb") as f:
      f.write(b"item_id\n5\n\xff\xfe6\n")
    self._fails(folder, r"items.csv is not UTF-8 text: byte b'\\xff' at offset 10 \(line 3\)")

  def test_string_and_iso_timestamps(self):
    iso = _interactions(timestamp=["2024-05-01", "2024-05-01T00:00:10Z", "1714521620"])
    data = datasets.load_dataset("files", write_dir(self.get_temp_dir(), interactions=iso))
    self.assertEqual(sorted(data.interactions["timestamp"]), [1714521600, 1714521610, 1714521620])
    bad = _interactions(timestamp=["30", "yesterday", "20"])
    self._fails(
      write_dir(self.get_temp_dir(), interactions=bad),
      r"interactions.csv: column 'timestamp' must hold Unix seconds or ISO-8601 dates; rows \[1\] "
      r"hold \['yesterday'\]",
    )

  def test_timestamp_out_of_range(self):
    bad = _interactions(timestamp=[30, 2**70, 20])
    self._fails(
      write_dir(self.get_temp_dir(), interactions=bad), r"column 'timestamp' .* rows \[1\] hold"
    )

  def test_missing_timestamp_column(self):
    bad = _interactions(timestamp=None)
    self._fails(
      write_dir(self.get_temp_dir(), interactions=bad),
      r"interactions.csv lacks columns \['timestamp'\]",
    )

  def test_string_item_ids_are_named(self):
    bad = _interactions(item_id=["5", "seven", "6"])
    self._fails(
      write_dir(self.get_temp_dir(), interactions=bad),
      r"interactions.csv: column 'item_id' must hold integer ids; rows \[1\] hold \['seven'\]",
    )
    items = pd.DataFrame({"item_id": ["5", "6", "x7"]})
    self._fails(
      write_dir(self.get_temp_dir(), items=items),
      r"items.csv: column 'item_id' must hold integer ids; rows \[2\] hold \['x7'\]",
    )

  def test_one_bad_click_is_reported_alone(self):
    bad = _interactions(click=[1, "yes", 0])
    self._fails(
      write_dir(self.get_temp_dir(), interactions=bad), r"click not 0/1 at rows \[1\]: \['yes'\]"
    )
    data = datasets.load_dataset(
      "files", write_dir(self.get_temp_dir(), interactions=bad), drop_invalid=True
    )
    self.assertLen(data.interactions, 2)

  def test_bad_embedding_arrays(self):
    one_d = write_dir(self.get_temp_dir(), embeddings=np.arange(3, dtype=np.float32))
    self._fails(
      one_d, r"embeddings.npz: 'embedding' must be a numeric \[n, D\] array.*shape \(3,\)"
    )
    strings = write_dir(self.get_temp_dir(), embeddings=np.array([["a"] * 4] * 3))
    self._fails(strings, r"'embedding' must be a numeric \[n, D\] array.*dtype <U1")
    corrupt = write_dir(self.get_temp_dir(), npz=False)
    with open(os.path.join(corrupt, "embeddings.npy"), "wb") as f:
      f.write(b"\x93NUMPY garbage")
    self._fails(corrupt, r"embeddings.npy is not a readable NumPy file")
    short = write_dir(self.get_temp_dir(), npz=False, embeddings=np.zeros((2, 4), np.float32))
    self._fails(short, r"embeddings.npy has 2 rows for the 3 items")

  def test_ids_missing_from_npz_are_named_missing(self):
    folder = write_dir(self.get_temp_dir())
    np.savez(
      os.path.join(folder, "embeddings.npz"),
      item_id=np.array([5, 6]),
      embedding=np.zeros((2, 4), np.float32),
    )
    self._fails(folder, r"embeddings.npz has no embedding for items \[7\] \(1 of 3 items\)")


if __name__ == "__main__":
  tf.test.main()
