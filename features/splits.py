"""Train/evaluation splits with cold-start slices, each reporting its counts.

- `global_time` (the paper's protocol): train on interactions before a cut, evaluate on those at or
  after it. The cut is `split_time` (Unix seconds) when given, else the `time_quantile` of
  interaction timestamps (default 0.8). Evaluation rows whose item has no training interaction are
  cold.
- `new_items`: items are ordered by their first interaction (or, with `new_items_by="first_seen"`,
  by the items table's `first_seen`, e.g. release dates a user supplies; ties by item id); the
  latest `cold_item_fraction` (default 0.2, rounded up) are new items, and every interaction with
  them is held out (cold rows). For the other (warm) items, each user's latest
  floor(`warm_holdout_fraction` x n) of their n warm interactions are held out (warm rows; ties in
  time broken by row order).
  Users keep their earlier rows in training, so item cold start is measured on users the model
  knows.
"""

import dataclasses
import enum
import math
from typing import Dict, Optional

import numpy as np
import pandas as pd

from features import schema


class SplitMethod(enum.Enum):
  GLOBAL_TIME = "global_time"
  NEW_ITEMS = "new_items"


@dataclasses.dataclass
class Split:
  """Train and eval interactions; `eval["cold"]` marks rows whose item is unseen in training."""

  method: SplitMethod
  train: pd.DataFrame
  eval: pd.DataFrame
  cold_item_ids: np.ndarray
  params: Dict[str, float]
  first_seen: Optional[pd.Series] = None  # item_id -> first_seen, for new_items_by="first_seen"

  def counts(self) -> Dict[str, int]:
    users = pd.Index(self.train["user_id"].unique())
    all_rows = pd.concat([self.train, self.eval], ignore_index=True)
    return {
      "n_items": int(all_rows["item_id"].nunique()),
      "n_users": int(all_rows["user_id"].nunique()),
      "n_interactions": len(all_rows),
      "n_train": len(self.train),
      "n_eval": len(self.eval),
      "n_warm_eval": int((~self.eval["cold"]).sum()),
      "n_cold_eval": int(self.eval["cold"].sum()),
      "n_cold_items": len(self.cold_item_ids),
      "n_eval_rows_unknown_user": int((~self.eval["user_id"].isin(users)).sum()),
    }


def parse_method(method: str) -> SplitMethod:
  try:
    return SplitMethod(method)
  except ValueError:
    choices = [m.value for m in SplitMethod]
    raise ValueError(f"`split` must be one of {choices}. Received: split={method!r}") from None


def _check_fraction(name: str, value: float) -> None:
  if not 0.0 < value < 1.0:
    raise ValueError(f"`{name}` must be in (0, 1). Received: {name}={value}")


def _mark_cold(train: pd.DataFrame, evaluation: pd.DataFrame) -> pd.DataFrame:
  cold = ~evaluation["item_id"].isin(pd.Index(train["item_id"].unique()))
  return evaluation.assign(cold=cold.to_numpy())


def global_time_split(
  interactions: pd.DataFrame, time_quantile: float = 0.8, split_time: Optional[int] = None
) -> Split:
  """Splits at a timestamp; see the module docstring."""
  if split_time is None:
    _check_fraction("time_quantile", time_quantile)
    split_time = int(np.quantile(interactions["timestamp"].to_numpy(), time_quantile))
  before = interactions["timestamp"].to_numpy() < split_time
  train = interactions.loc[before].reset_index(drop=True)
  evaluation = _mark_cold(train, interactions.loc[~before].reset_index(drop=True))
  if train.empty or evaluation.empty:
    raise ValueError(
      f"split_time={split_time} leaves {len(train)} training and {len(evaluation)} evaluation "
      "rows; "
      "choose a cut inside the data's time range."
    )
  cold_items = np.unique(evaluation.loc[evaluation["cold"], "item_id"].to_numpy())
  params = {"split_time": split_time, "time_quantile": time_quantile}
  return Split(SplitMethod.GLOBAL_TIME, train, evaluation, cold_items, params)


NEW_ITEMS_BY = ("first_interaction", "first_seen")


def new_items_split(
  interactions: pd.DataFrame,
  cold_item_fraction: float = 0.2,
  warm_holdout_fraction: float = 0.1,
  new_items_by: str = "first_interaction",
  first_seen: Optional[pd.Series] = None,
) -> Split:
  """Holds out all rows of the newest items and each user's latest warm rows (module docstring).

  Args:
    interactions: the rows to split.
    cold_item_fraction, warm_holdout_fraction: see the module docstring.
    new_items_by: "first_interaction" or "first_seen": what orders items by newness.
    first_seen: pd.Series item_id -> first_seen; required with new_items_by="first_seen".
  """
  _check_fraction("cold_item_fraction", cold_item_fraction)
  _check_fraction("warm_holdout_fraction", warm_holdout_fraction)
  if new_items_by not in NEW_ITEMS_BY:
    raise ValueError(f"`new_items_by` must be one of {NEW_ITEMS_BY}. Received: {new_items_by!r}")
  first = interactions.groupby("item_id")["timestamp"].min().reset_index()
  if new_items_by == "first_seen":
    if first_seen is None:
      raise ValueError('new_items_by="first_seen" needs the items\' `first_seen`.')
    first["timestamp"] = first["item_id"].map(first_seen).fillna(first["timestamp"])
  first = first.sort_values(["timestamp", "item_id"], kind="stable")
  n_cold = math.ceil(cold_item_fraction * len(first))
  cold_items = np.sort(first["item_id"].to_numpy()[len(first) - n_cold :])
  is_cold = interactions["item_id"].isin(cold_items).to_numpy()
  warm = interactions.loc[~is_cold]
  order = warm.sort_values("timestamp", kind="stable")
  rank_from_end = order.groupby("user_id").cumcount(ascending=False)
  n_user = order.groupby("user_id")["user_id"].transform("size")
  held = (rank_from_end < np.floor(n_user * warm_holdout_fraction)).reindex(warm.index)
  train = warm.loc[~held.to_numpy()].reset_index(drop=True)
  evaluation = pd.concat([warm.loc[held.to_numpy()], interactions.loc[is_cold]])
  evaluation = evaluation.sort_values("timestamp", kind="stable").reset_index(drop=True)
  evaluation = evaluation.assign(cold=evaluation["item_id"].isin(cold_items).to_numpy())
  params = {
    "cold_item_fraction": cold_item_fraction,
    "warm_holdout_fraction": warm_holdout_fraction,
  }
  if new_items_by != "first_interaction":
    params["new_items_by"] = new_items_by
  return Split(SplitMethod.NEW_ITEMS, train, evaluation, cold_items, params, first_seen)


def split_dataset(dataset: schema.Dataset, method: str = "global_time", **params) -> Split:
  """Splits `dataset.interactions` by `method` ("global_time" or "new_items") and its params."""
  kind = parse_method(method)
  if kind is SplitMethod.GLOBAL_TIME:
    return global_time_split(dataset.interactions, **params)
  first_seen = pd.Series(
    dataset.items["first_seen"].to_numpy(), index=dataset.items["item_id"].to_numpy()
  )
  return new_items_split(dataset.interactions, first_seen=first_seen, **params)
