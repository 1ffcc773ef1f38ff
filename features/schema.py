"""The canonical data schema every loader produces, and its validation.

Items:
  `item_id` int64 (unique), `first_seen` int64 (Unix seconds: when the item entered the catalogue),
  plus a content embedding float32[D] per item, held as one `[n_items, D]` array aligned row-for-row
  with the items table.
Interactions (impressions):
  `user_id` (int64 or string), `item_id` int64, `timestamp` int64 (Unix seconds), `click` int8 (0/1)
  and `second_label` float32, the target of the second task (MovieLens: the rating; synthetic: an
  engagement value).

`validate()` checks all of it and raises `SchemaError` naming the problem and the offending ids or
rows. Nothing is dropped silently: `validate(..., drop_invalid=True)` removes bad rows instead and
returns a `ValidationReport` that
counts them by kind, which the jobs print.
"""

import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

ITEM_COLUMNS = ("item_id", "first_seen")
INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp", "click", "second_label")
_MAX_LISTED = 5


class SchemaError(ValueError):
  """Raised when data does not follow the canonical schema."""


@dataclasses.dataclass
class Dataset:
  """Items with content embeddings, and interactions with two labels.

  Attributes:
    name: str. Where the data came from ("synthetic", "movielens", "files").
    items: pd.DataFrame with `ITEM_COLUMNS`; row i describes `embeddings[i]`.
    embeddings: np.ndarray float32[n_items, D]. Content embeddings.
    interactions: pd.DataFrame with `INTERACTION_COLUMNS`, sorted by timestamp.
    second_label_name: str. What `second_label` means ("rating", "engagement").
  """

  name: str
  items: pd.DataFrame
  embeddings: np.ndarray
  interactions: pd.DataFrame
  second_label_name: str = "second_label"

  @property
  def embedding_dim(self) -> int:
    return int(self.embeddings.shape[1])

  @property
  def n_items(self) -> int:
    return len(self.items)

  def item_index(self, item_ids: np.ndarray) -> np.ndarray:
    """Maps item ids to rows of `items`/`embeddings`; -1 where the id is unknown."""
    catalogue = self.items["item_id"].to_numpy()
    order = np.argsort(catalogue, kind="stable")
    sorted_ids = catalogue[order]
    pos = np.searchsorted(sorted_ids, item_ids)
    pos = np.clip(pos, 0, max(len(sorted_ids) - 1, 0))
    found = len(sorted_ids) > 0
    hit = found & (sorted_ids[pos] == item_ids) if found else np.zeros(len(item_ids), bool)
    return np.where(hit, order[pos], -1)


@dataclasses.dataclass
class ValidationReport:
  """What `validate` found (and dropped, when asked to)."""

  n_items_in: int = 0
  n_interactions_in: int = 0
  dropped: Dict[str, int] = dataclasses.field(default_factory=dict)

  @property
  def n_dropped(self) -> int:
    return sum(self.dropped.values())

  def summary(self) -> str:
    if not self.dropped:
      return "validation: no invalid rows"
    parts = ", ".join(f"{n} {kind}" for kind, n in sorted(self.dropped.items()))
    return f"validation: dropped {parts}"


def _listed(values) -> str:
  values = list(values)
  shown = ", ".join(str(v) for v in values[:_MAX_LISTED])
  more = f" and {len(values) - _MAX_LISTED} more" if len(values) > _MAX_LISTED else ""
  return f"[{shown}{more}]"


def _require_columns(frame: pd.DataFrame, columns: Tuple[str, ...], what: str) -> None:
  missing = [c for c in columns if c not in frame.columns]
  if missing:
    raise SchemaError(
      f"{what} table is missing columns {missing}. Expected {list(columns)}; "
      f"received columns {list(frame.columns)}."
    )


def _item_problems(
  dataset: Dataset, expected_dim: Optional[int]
) -> List[Tuple[str, np.ndarray, str]]:
  """Returns (kind, bad item-row mask, message) for each item-level problem."""
  items, emb = dataset.items, dataset.embeddings
  problems = []
  if emb.ndim != 2 or emb.shape[0] != len(items):
    raise SchemaError(
      f"embeddings must be a [n_items, D] array with one row per item. Received shape {emb.shape} "
      f"for {len(items)} items."
    )
  if expected_dim is not None and emb.shape[1] != expected_dim:
    raise SchemaError(f"embeddings have width {emb.shape[1]}; expected D={expected_dim}.")
  ids = items["item_id"].to_numpy()
  dup = pd.Series(ids).duplicated(keep="first").to_numpy()
  if dup.any():
    problems.append(
      ("duplicate_item_ids", dup, f"duplicate item ids {_listed(np.unique(ids[dup]))}")
    )
  nonfinite = ~np.isfinite(emb).all(axis=1)
  if nonfinite.any():
    problems.append(
      (
        "nonfinite_embeddings",
        nonfinite,
        f"NaN or Inf in the embeddings of items {_listed(ids[nonfinite])}",
      )
    )
  return problems


def _interaction_problems(
  dataset: Dataset, valid_items: np.ndarray
) -> List[Tuple[str, np.ndarray, str]]:
  inter = dataset.interactions
  problems = []
  unknown = ~np.isin(inter["item_id"].to_numpy(), valid_items)
  if unknown.any():
    rows = np.flatnonzero(unknown)
    problems.append(
      (
        "interactions_without_embedding",
        unknown,
        f"interactions whose item has no (valid) embedding: item ids "
        f"{_listed(np.unique(inter['item_id'].to_numpy()[unknown]))} at rows {_listed(rows)}",
      )
    )
  click = pd.to_numeric(inter["click"], errors="coerce").to_numpy(dtype=np.float64)
  bad_click = ~np.isin(click, (0.0, 1.0))
  if bad_click.any():
    rows = np.flatnonzero(bad_click)
    values = inter["click"].to_numpy()[rows[:_MAX_LISTED]].tolist()
    problems.append(
      ("bad_click_labels", bad_click, f"click not 0/1 at rows {_listed(rows)}: {values}")
    )
  label = pd.to_numeric(inter["second_label"], errors="coerce").to_numpy(dtype=np.float64)
  bad_label = ~np.isfinite(label)
  if bad_label.any():
    problems.append(
      (
        "nonfinite_second_label",
        bad_label,
        f"NaN/Inf second_label at rows {_listed(np.flatnonzero(bad_label))}",
      )
    )
  missing = inter["user_id"].isna().to_numpy() | inter["timestamp"].isna().to_numpy()
  if missing.any():
    problems.append(
      (
        "missing_user_or_time",
        missing,
        f"missing user_id/timestamp at rows {_listed(np.flatnonzero(missing))}",
      )
    )
  return problems


def validate(
  dataset: Dataset, *, expected_dim: Optional[int] = None, drop_invalid: bool = False
) -> Tuple[Dataset, ValidationReport]:
  """Checks `dataset` against the schema.

  Args:
    dataset: Dataset. The data to check.
    expected_dim: Optional int. Required embedding width. Defaults to None (any width).
    drop_invalid: bool. Drop bad rows (and report how many, by kind) instead of raising. Defaults to
    False.

  Returns:
    `(dataset, report)`: the (possibly filtered) dataset with normalised dtypes, and what was found.

  Raises:
    SchemaError: on missing columns or a malformed embedding array always; on any bad row unless
      `drop_invalid`.
  """
  _require_columns(dataset.items, ITEM_COLUMNS, "items")
  _require_columns(dataset.interactions, INTERACTION_COLUMNS, "interactions")
  report = ValidationReport(
    n_items_in=len(dataset.items), n_interactions_in=len(dataset.interactions)
  )
  item_problems = _item_problems(dataset, expected_dim)
  bad_items = np.zeros(len(dataset.items), bool)
  for kind, mask, message in item_problems:
    if not drop_invalid:
      raise SchemaError(f"Invalid items: {message}.")
    report.dropped[kind] = int(mask.sum())
    bad_items |= mask
  items = dataset.items.loc[~bad_items].reset_index(drop=True)
  embeddings = np.ascontiguousarray(dataset.embeddings[~bad_items], dtype=np.float32)
  filtered = dataclasses.replace(dataset, items=items, embeddings=embeddings)
  bad_rows = np.zeros(len(dataset.interactions), bool)
  for kind, mask, message in _interaction_problems(filtered, items["item_id"].to_numpy()):
    if not drop_invalid:
      raise SchemaError(f"Invalid interactions: {message}.")
    report.dropped[kind] = int(mask.sum())
    bad_rows |= mask
  inter = dataset.interactions.loc[~bad_rows]
  return dataclasses.replace(
    filtered, items=_typed_items(items), interactions=_typed_interactions(inter)
  ), report


def _typed_items(items: pd.DataFrame) -> pd.DataFrame:
  out = items.copy()
  out["item_id"] = out["item_id"].astype(np.int64)
  out["first_seen"] = out["first_seen"].astype(np.int64)
  return out


def _typed_interactions(inter: pd.DataFrame) -> pd.DataFrame:
  out = inter.copy()
  out["item_id"] = out["item_id"].astype(np.int64)
  out["timestamp"] = out["timestamp"].astype(np.int64)
  out["click"] = pd.to_numeric(out["click"]).astype(np.int8)
  out["second_label"] = out["second_label"].astype(np.float32)
  if not pd.api.types.is_integer_dtype(out["user_id"]):
    out["user_id"] = out["user_id"].astype(str)
  return out.sort_values("timestamp", kind="stable").reset_index(drop=True)
