"""Your own data in the canonical schema: items + embeddings + interactions files.

A data directory holds:
  items.parquet | items.csv                 `item_id` (int), optional `first_seen` (Unix seconds;
  default: the
                                            item's first interaction time).
  embeddings.npy | embeddings.npz           .npy: float[n_items, D] in the row order of the items
  file;
                                            .npz: arrays `item_id` and `embedding` (aligned by id).
  interactions.parquet | interactions.csv   `user_id`, `item_id`, `timestamp`, `click` (0/1), and
  the second label
                                            in a column `second_label` (or `second_label_column`).
"""

import os
from typing import Optional

import numpy as np
import pandas as pd

from features import schema


def _find(data_dir: str, stem: str, extensions) -> str:
  for ext in extensions:
    path = os.path.join(data_dir, stem + ext)
    if os.path.exists(path):
      return path
  names = ", ".join(stem + ext for ext in extensions)
  raise FileNotFoundError(f"No {stem} file in {data_dir!r}: expected one of {names}.")


def _read_table(path: str) -> pd.DataFrame:
  return pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)


def _embeddings(path: str, items: pd.DataFrame) -> np.ndarray:
  if path.endswith(".npy"):
    return np.load(path).astype(np.float32)
  with np.load(path) as npz:
    if "item_id" not in npz or "embedding" not in npz:
      raise schema.SchemaError(
        f"{path} must hold arrays 'item_id' and 'embedding'; has {npz.files}."
      )
    ids, emb = npz["item_id"].astype(np.int64), npz["embedding"].astype(np.float32)
  rows = pd.Series(np.arange(len(ids)), index=ids)
  if rows.index.has_duplicates:
    raise schema.SchemaError(
      f"{path}: duplicate item ids {list(rows.index[rows.index.duplicated()][:5])}."
    )
  found = rows.reindex(items["item_id"].to_numpy())
  out = np.full(
    (len(items), emb.shape[1]), np.nan, np.float32
  )  # missing ids -> NaN -> flagged by validate
  ok = found.notna().to_numpy()
  out[ok] = emb[found[ok].astype(np.int64).to_numpy()]
  return out


def load(data_dir: str, second_label_column: Optional[str] = None) -> schema.Dataset:
  """Loads a user data directory (see the module docstring).

  Args:
    data_dir: str. The folder with the three files.
    second_label_column: Optional str. Column holding the second task's label. Defaults to
    "second_label".

  Returns:
    A `schema.Dataset` (not yet validated).

  Raises:
    FileNotFoundError: a file is missing. schema.SchemaError: a column is missing.
  """
  if not data_dir or not os.path.isdir(data_dir):
    raise FileNotFoundError(
      f"--data_dir must be an existing folder for --dataset=files. Received: {data_dir!r}"
    )
  items = _read_table(_find(data_dir, "items", (".parquet", ".csv")))
  interactions = _read_table(_find(data_dir, "interactions", (".parquet", ".csv")))
  label = second_label_column or "second_label"
  if label not in interactions.columns:
    raise schema.SchemaError(
      f"interactions lack the second-label column {label!r}; columns are "
      f"{list(interactions.columns)}."
    )
  interactions = interactions.rename(columns={label: "second_label"})
  if "item_id" not in items.columns:
    raise schema.SchemaError(f"items lack column 'item_id'; columns are {list(items.columns)}.")
  if "first_seen" not in items.columns:
    first = interactions.groupby("item_id")["timestamp"].min()
    never = int(interactions["timestamp"].max()) + 1 if len(interactions) else 0
    items = items.assign(first_seen=items["item_id"].map(first).fillna(never).astype(np.int64))
  embeddings = _embeddings(_find(data_dir, "embeddings", (".npy", ".npz")), items)
  return schema.Dataset("files", items, embeddings, interactions, second_label_name=label)
