"""MovieLens ml-latest-small in the canonical schema.

Reads `ratings.csv`, `movies.csv` and `content_embeddings_minilm_l6.npz` (384-d MiniLM embeddings of
"{title}. Genres: {genres}", see the data README) from a directory, in place. click = rating >= 4
(configurable); the second label is the rating itself. An item's `first_seen` is its first rating
time; movies never rated get the last rating time + 1 (they enter after the data ends).
"""

import os
from typing import Optional

import numpy as np
import pandas as pd

from features import schema

ENV_VAR = "SEMANTIC_IDS_MOVIELENS_DIR"
# Relative to the working directory: the repository root, where the README's commands run.
DEFAULT_DIR = os.path.join("..", "shared", "data", "ml-latest-small")
RATINGS_FILE = "ratings.csv"
EMBEDDINGS_FILE = "content_embeddings_minilm_l6.npz"


def default_dir() -> str:
  """`$SEMANTIC_IDS_MOVIELENS_DIR`, else `../shared/data/ml-latest-small` from the working
  directory (never a path computed from this file, which moves once the package is installed)."""
  return os.environ.get(ENV_VAR) or DEFAULT_DIR


def _require(path: str) -> str:
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"MovieLens file not found: {path}. Pass --data_dir pointing at an ml-latest-small folder "
      f"with {RATINGS_FILE} and {EMBEDDINGS_FILE}, or set ${ENV_VAR}."
    )
  return path


def load(data_dir: Optional[str] = None, click_threshold: float = 4.0) -> schema.Dataset:
  """Loads ml-latest-small from `data_dir` (default: `default_dir()`).

  Args:
    data_dir: str. Folder holding the MovieLens CSVs and the embeddings npz. Defaults to
    `default_dir()`. click_threshold: float. A rating at or above it is a click. Defaults to 4.0.

  Returns:
    A `schema.Dataset` (not yet validated) with `second_label_name="rating"`.

  Raises:
    FileNotFoundError: when a file is missing, naming it.
    schema.SchemaError: when a file lacks the expected columns or arrays.
  """
  data_dir = data_dir or default_dir()
  ratings = pd.read_csv(_require(os.path.join(data_dir, RATINGS_FILE)))
  missing = {"userId", "movieId", "rating", "timestamp"} - set(ratings.columns)
  if missing:
    raise schema.SchemaError(
      f"{RATINGS_FILE} lacks columns {sorted(missing)}; has {list(ratings.columns)}."
    )
  with np.load(_require(os.path.join(data_dir, EMBEDDINGS_FILE))) as npz:
    if "item_id" not in npz or "embedding" not in npz:
      raise schema.SchemaError(
        f"{EMBEDDINGS_FILE} must hold arrays 'item_id' and 'embedding'; has {npz.files}."
      )
    item_ids = npz["item_id"].astype(np.int64)
    embeddings = npz["embedding"].astype(np.float32)
  interactions = pd.DataFrame(
    {
      "user_id": ratings["userId"].astype(np.int64),
      "item_id": ratings["movieId"].astype(np.int64),
      "timestamp": ratings["timestamp"].astype(np.int64),
      "click": (ratings["rating"] >= click_threshold).astype(np.int8),
      "second_label": ratings["rating"].astype(np.float32),
    }
  )
  first = interactions.groupby("item_id")["timestamp"].min()
  never = int(interactions["timestamp"].max()) + 1
  first_seen = pd.Series(item_ids).map(first).fillna(never).astype(np.int64).to_numpy()
  items = pd.DataFrame({"item_id": item_ids, "first_seen": first_seen})
  return schema.Dataset("movielens", items, embeddings, interactions, second_label_name="rating")
