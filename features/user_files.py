"""Your own data in the canonical schema: items + embeddings + interactions files.

A data directory holds:
  items.parquet | items.csv   `item_id` (integer), optional `first_seen` (when the item entered
                              the catalogue; default: its first interaction time).
  embeddings.npy | .npz       .npy: float[n_items, D] in the row order of the items file;
                              .npz: arrays `item_id` [N] and `embedding` float[N, D] (by id).
  interactions.parquet | .csv `user_id` (any: integers or strings), `item_id`, `timestamp`,
                              `click` (0/1), and the second label in a column `second_label` (or
                              `second_label_column`).

Timestamps (`timestamp`, `first_seen`) are Unix seconds (integers) or ISO-8601 date strings
("2024-05-01", "2024-05-01T12:00:00Z"; without a zone, UTC). Item ids must be integers: SID tables,
history keys and the serving contract key items by int64 ids. Every problem is reported with the
file, the column, the first offending rows and their values, as `schema.SchemaError`.
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


MAX_TIMESTAMP = 2**62  # Unix seconds; anything larger is not a time (and overflows int64 math).


def _listed(values, limit: int = 5) -> str:
  values = np.asarray(values).tolist() if not isinstance(values, list) else values
  more = f" and {len(values) - limit} more" if len(values) > limit else ""
  return "[" + ", ".join(repr(v) for v in values[:limit]) + more + "]"


def _read_table(path: str) -> pd.DataFrame:
  """Reads a CSV or Parquet table; a file that cannot be read raises SchemaError naming it."""
  try:
    if path.endswith(".parquet"):
      frame = pd.read_parquet(path)
    else:
      frame = pd.read_csv(path, encoding="utf-8")
  except pd.errors.EmptyDataError as e:
    raise schema.SchemaError(f"{path} is empty (no header, no rows).") from e
  except UnicodeDecodeError as e:
    raise schema.SchemaError(f"{path} is not UTF-8 text: {_first_bad_byte(path)}.") from e
  except (pd.errors.ParserError, OSError, ValueError) as e:
    raise schema.SchemaError(f"{path} cannot be read as a table: {e}") from e
  if frame.empty:
    raise schema.SchemaError(f"{path} has no rows (columns {list(frame.columns)}).")
  return frame


def _first_bad_byte(path: str) -> str:
  with open(path, "rb") as f:
    raw = f.read()
  try:
    raw.decode("utf-8")
  except UnicodeDecodeError as e:
    line = raw[: e.start].count(b"\n") + 1
    return f"byte {raw[e.start : e.start + 1]!r} at offset {e.start} (line {line})"
  return "undecodable bytes"


def integer_ids(values: pd.Series, path: str, column: str) -> np.ndarray:
  """`values` as int64; raises SchemaError naming the file, column, rows and values otherwise."""
  numbers = pd.to_numeric(values, errors="coerce")
  whole = numbers.notna() & np.isfinite(numbers) & (numbers == np.round(numbers))
  whole &= numbers.abs() < 2**63
  if not whole.all():
    rows = np.flatnonzero(~whole.to_numpy())
    raise schema.SchemaError(
      f"{path}: column {column!r} must hold integer ids; rows {_listed(rows)} hold "
      f"{_listed(values.iloc[rows[:5]].tolist())}."
    )
  return numbers.to_numpy().astype(np.int64)


def timestamps(values: pd.Series, path: str, column: str) -> np.ndarray:
  """Unix seconds int64 from integers or ISO-8601 strings; raises SchemaError naming the file,
  column, rows and values that are neither (or out of range)."""
  numbers = pd.to_numeric(values, errors="coerce")
  if numbers.isna().any() and not pd.api.types.is_numeric_dtype(values):
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    seconds = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    numbers = numbers.where(numbers.notna(), seconds.astype("Float64"))
  ok = numbers.notna() & np.isfinite(numbers.astype(float)) & (numbers.abs() < MAX_TIMESTAMP)
  if not ok.all():
    rows = np.flatnonzero(~ok.to_numpy())
    raise schema.SchemaError(
      f"{path}: column {column!r} must hold Unix seconds or ISO-8601 dates; rows {_listed(rows)} "
      f"hold {_listed(values.iloc[rows[:5]].tolist())}."
    )
  return numbers.astype(float).round().to_numpy().astype(np.int64)


def _load_array(path: str, **kwargs):
  try:
    return np.load(path, **kwargs)
  except (ValueError, OSError, EOFError) as e:
    raise schema.SchemaError(f"{path} is not a readable NumPy file: {e}") from e


def _float_matrix(array: np.ndarray, path: str, what: str) -> np.ndarray:
  if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
    raise schema.SchemaError(
      f"{path}: {what} must be a numeric [n, D] array. Received shape {array.shape}, dtype "
      f"{array.dtype}."
    )
  return array.astype(np.float32)


def read_embeddings(path: str) -> np.ndarray:
  """The content embeddings float32[N, D] of an embeddings file, in its row order: a .npy array,
  or the `embedding` array of an .npz (ids ignored). Raises SchemaError naming the file when it
  cannot be read, is not a numeric [N, D] array or holds NaN or Inf."""
  if path.endswith(".npy"):
    embeddings = _float_matrix(_load_array(path), path, "the array")
  else:
    with _load_array(path) as npz:
      if "embedding" not in npz:
        raise schema.SchemaError(f"{path} must hold an array 'embedding'; has {npz.files}.")
      embeddings = _float_matrix(npz["embedding"], path, "'embedding'")
  bad = np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
  if len(bad):
    raise schema.SchemaError(f"{path}: rows {_listed(bad)} hold NaN or Inf.")
  return embeddings


def _embeddings(path: str, items: pd.DataFrame) -> np.ndarray:
  if path.endswith(".npy"):
    return _float_matrix(_load_array(path), path, "the array")
  with _load_array(path) as npz:
    if "item_id" not in npz or "embedding" not in npz:
      raise schema.SchemaError(
        f"{path} must hold arrays 'item_id' and 'embedding'; has {npz.files}."
      )
    raw_ids, emb = npz["item_id"], _float_matrix(npz["embedding"], path, "'embedding'")
  ids = integer_ids(pd.Series(raw_ids), path, "item_id")
  if len(ids) != len(emb):
    raise schema.SchemaError(
      f"{path}: 'item_id' has {len(ids)} entries but 'embedding' {len(emb)} rows."
    )
  rows = pd.Series(np.arange(len(ids)), index=ids)
  if rows.index.has_duplicates:
    raise schema.SchemaError(
      f"{path}: duplicate item ids {_listed(rows.index[rows.index.duplicated()])}."
    )
  found = rows.reindex(items["item_id"].to_numpy())
  missing = found.isna().to_numpy()
  if missing.any():
    raise schema.SchemaError(
      f"{path} has no embedding for items {_listed(items['item_id'].to_numpy()[missing])} "
      f"({int(missing.sum())} of {len(items)} items)."
    )
  return emb[found.astype(np.int64).to_numpy()]


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
  items_path = _find(data_dir, "items", (".parquet", ".csv"))
  inter_path = _find(data_dir, "interactions", (".parquet", ".csv"))
  items = _read_table(items_path)
  interactions = _read_table(inter_path)
  label = second_label_column or "second_label"
  if label not in interactions.columns:
    raise schema.SchemaError(
      f"{inter_path} lacks the second-label column {label!r}; columns are "
      f"{list(interactions.columns)}."
    )
  interactions = interactions.rename(columns={label: "second_label"})
  _require(items, ("item_id",), items_path)
  _require(interactions, schema.INTERACTION_COLUMNS, inter_path)
  items = items.assign(item_id=integer_ids(items["item_id"], items_path, "item_id"))
  interactions = interactions.assign(
    item_id=integer_ids(interactions["item_id"], inter_path, "item_id"),
    timestamp=timestamps(interactions["timestamp"], inter_path, "timestamp"),
  )
  if "first_seen" in items.columns:
    items = items.assign(first_seen=timestamps(items["first_seen"], items_path, "first_seen"))
  else:
    first = interactions.groupby("item_id")["timestamp"].min()
    never = int(interactions["timestamp"].max()) + 1
    items = items.assign(first_seen=items["item_id"].map(first).fillna(never).astype(np.int64))
  embeddings = _embeddings(_find(data_dir, "embeddings", (".npy", ".npz")), items)
  if len(embeddings) != len(items):
    raise schema.SchemaError(
      f"embeddings.npy has {len(embeddings)} rows for the {len(items)} items of {items_path}."
    )
  return schema.Dataset("files", items, embeddings, interactions, second_label_name=label)


def _require(frame: pd.DataFrame, columns, path: str) -> None:
  missing = [c for c in columns if c not in frame.columns]
  if missing:
    raise schema.SchemaError(f"{path} lacks columns {missing}; it has {list(frame.columns)}.")
