"""Ranking metrics for the experiments: global AUC, user-grouped AUC (GAUC), slices, user-clustered
bootstrap.

GAUC is the mean of per-user AUC over users with both labels in the slice, weighted by the user's
rows. A ranker orders candidates for one user at a time, so GAUC on cold rows measures item cold
start; pooled AUC on cold rows is dominated by user bias. Everything here is numpy; AUCs handle ties
(a tie counts one half) and sample weights, so a bootstrap resample of users is a weight vector over
rows, not a copy of them.
"""

from typing import Dict, Optional, Sequence

import numpy as np

SLICES = ("all", "warm", "cold")


class _Sorted:
  """Rows sorted by score once, with tie groups, so weighted AUCs cost O(N) each."""

  def __init__(self, labels: np.ndarray, scores: np.ndarray):
    order = np.argsort(scores, kind="stable")
    self.order = order
    self.pos = np.asarray(labels, np.float64)[order] > 0.5
    s = np.asarray(scores)[order]
    self.starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if len(s) else np.zeros(0, int)

  def auc(self, weights: Optional[np.ndarray] = None) -> float:
    w = np.ones(len(self.order)) if weights is None else np.asarray(weights, np.float64)[self.order]
    if len(w) == 0:
      return float("nan")
    wp = np.add.reduceat(w * self.pos, self.starts)
    wn = np.add.reduceat(w * ~self.pos, self.starts)
    total_p, total_n = wp.sum(), wn.sum()
    if total_p <= 0 or total_n <= 0:
      return float("nan")
    below = np.cumsum(wn) - wn
    return float((wp * (below + 0.5 * wn)).sum() / (total_p * total_n))


def auc(labels: np.ndarray, scores: np.ndarray, weights: Optional[np.ndarray] = None) -> float:
  """ROC AUC (ties count one half); NaN when a label is missing.

  >>> auc(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.5, 0.5]))
  0.875
  """
  return _Sorted(labels, scores).auc(weights)


def per_user_auc(labels: np.ndarray, scores: np.ndarray, users: np.ndarray):
  """Returns (user codes per row, per-user AUC (NaN without both labels), per-user row counts)."""
  _, codes = np.unique(users, return_inverse=True)
  n_users = int(codes.max()) + 1 if len(codes) else 0
  order = np.lexsort((scores, codes))
  aucs = np.full(n_users, np.nan)
  counts = np.bincount(codes, minlength=n_users)
  bounds = np.r_[0, np.cumsum(counts)]
  for u in range(n_users):
    rows = order[bounds[u] : bounds[u + 1]]
    y = labels[rows]
    if 0 < y.sum() < len(y):
      aucs[u] = auc(y, scores[rows])
  return codes, aucs, counts


def gauc_from_parts(aucs: np.ndarray, counts: np.ndarray, user_weights=None) -> float:
  """Row-weighted mean of per-user AUCs over users with both labels."""
  weight = counts * (1.0 if user_weights is None else user_weights)
  ok = ~np.isnan(aucs) & (weight > 0)
  if not ok.any():
    return float("nan")
  return float(np.average(aucs[ok], weights=weight[ok]))


def gauc(labels: np.ndarray, scores: np.ndarray, users: np.ndarray) -> float:
  """User-grouped AUC: row-weighted mean of per-user AUC over users with both labels."""
  _, aucs, counts = per_user_auc(np.asarray(labels), np.asarray(scores), np.asarray(users))
  return gauc_from_parts(aucs, counts)


# A slice's GAUC is reported only when at least this many users have both labels in it; below
# that, a handful of users would decide it (it is reported as too small instead).
MIN_GAUC_USERS = 20
# Popularity bands of items by training impressions: the top 1% of the items with any training
# impression are the head, the next 9% the torso, the other 90% the tail (cold items have none).
HEAD_FRACTION = 0.01
TORSO_FRACTION = 0.10
DAY_S = 86_400


def slice_masks(cold: np.ndarray) -> Dict[str, np.ndarray]:
  cold = np.asarray(cold, bool)
  return {"all": np.ones_like(cold), "warm": ~cold, "cold": cold}


def popularity_bands(train_item_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
  """The band of each of `item_ids` by its impressions in `train_item_ids`: "head", "torso",
  "tail", or "none" (no training impression: a cold item).

  Example:
  >>> popularity_bands(np.array([1] * 5 + [2] * 2 + [3]), np.array([1, 2, 3, 4])).tolist()
  ['head', 'tail', 'tail', 'none']
  """
  ids, counts = np.unique(np.asarray(train_item_ids), return_counts=True)
  order = np.lexsort((ids, -counts))  # most impressed first, ties by id
  rank = np.empty(len(ids), np.int64)
  rank[order] = np.arange(len(ids))
  n_head = max(1, int(np.ceil(HEAD_FRACTION * len(ids))))
  n_torso = max(n_head, int(np.ceil(TORSO_FRACTION * len(ids))))
  band_of = np.where(rank < n_head, "head", np.where(rank < n_torso, "torso", "tail"))
  pos = np.searchsorted(ids, item_ids)
  pos = np.clip(pos, 0, max(len(ids) - 1, 0))
  known = (len(ids) > 0) & (ids[pos] == item_ids) if len(ids) else np.zeros(len(item_ids), bool)
  return np.where(known, band_of[pos] if len(ids) else "none", "none")


def extra_slice_masks(bands: np.ndarray, age_s: np.ndarray) -> Dict[str, np.ndarray]:
  """The paper's slices beyond warm/cold: popularity bands, and item age at the impression (an
  item first seen less than a day before it: the paper's CTR/1D, vs older)."""
  bands, age_s = np.asarray(bands), np.asarray(age_s)
  return {
    "head": bands == "head",
    "torso": bands == "torso",
    "tail": bands == "tail",
    "age_under_1d": age_s < DAY_S,
    "age_1d_or_more": age_s >= DAY_S,
  }


def slice_metrics(
  labels: np.ndarray,
  scores: np.ndarray,
  users: np.ndarray,
  cold: np.ndarray,
  extra_masks: Optional[Dict[str, np.ndarray]] = None,
  min_gauc_users: int = MIN_GAUC_USERS,
) -> Dict[str, Dict[str, float]]:
  """{slice: {"auc", "gauc", "rows", "positives", "gauc_users", "gauc_too_small"}} for slices
  all/warm/cold and `extra_masks`. GAUC is over users with both labels; with fewer than
  `min_gauc_users` such users it is None and `gauc_too_small` is True."""
  out = {}
  masks = {**slice_masks(cold), **(extra_masks or {})}
  for name, mask in masks.items():
    y, s, u = np.asarray(labels)[mask], np.asarray(scores)[mask], np.asarray(users)[mask]
    _, aucs, _ = per_user_auc(y, s, u) if len(y) else (None, np.zeros(0), None)
    n_users = int(np.sum(~np.isnan(aucs)))
    too_small = n_users < min_gauc_users
    out[name] = {
      "auc": auc(y, s),
      "gauc": None if too_small else gauc(y, s, u),
      "rows": int(mask.sum()),
      "positives": int(np.sum(y > 0.5)),
      "gauc_users": n_users,
      "gauc_too_small": too_small,
    }
  return out


def format_gauc(entry: Dict[str, float]) -> str:
  """A slice's GAUC for a report: the value, or "too small (n users)" below the minimum."""
  if entry.get("gauc") is None or entry.get("gauc_too_small"):
    return f"too small ({entry.get('gauc_users', 0)} users)"
  return f"{entry['gauc']:.4f}"


def bootstrap_difference(
  labels: np.ndarray,
  users: np.ndarray,
  scores_a: Sequence[np.ndarray],
  scores_b: Sequence[np.ndarray],
  metric: str = "auc",
  n_resamples: int = 200,
  seed: int = 0,
  level: float = 0.95,
) -> Dict[str, float]:
  """User-clustered bootstrap of mean(metric(a_s)) - mean(metric(b_s)) over seeds s, on the same
  rows.

  Users are resampled with replacement; a user drawn k times weighs k. Both models see the same
  resample.

  Args:
    labels: float[N]. Click labels.
    users: [N]. User ids (the clusters).
    scores_a: list of float[N], one per seed, for model A.
    scores_b: list of float[N], one per seed, for model B (the reference, e.g. hashing).
    metric: "auc" or "gauc".
    n_resamples: int. Bootstrap resamples. Defaults to 200.
    seed: int. RNG seed. Defaults to 0.
    level: float. Confidence level. Defaults to 0.95.

  Returns:
    {"diff", "low", "high", "p_below_zero"}: the point estimate, the percentile interval, and the
    share of resamples with a negative difference.
  """
  labels, users = np.asarray(labels), np.asarray(users)
  if metric not in ("auc", "gauc"):
    raise ValueError(f"`metric` must be 'auc' or 'gauc'. Received: metric={metric!r}")
  _, codes = np.unique(users, return_inverse=True)
  n_users = int(codes.max()) + 1 if len(codes) else 0
  if metric == "auc":
    sorted_a = [_Sorted(labels, s) for s in scores_a]
    sorted_b = [_Sorted(labels, s) for s in scores_b]

    def value(user_w):
      w = None if user_w is None else user_w[codes]
      a = np.mean([s.auc(w) for s in sorted_a])
      return a - np.mean([s.auc(w) for s in sorted_b])
  else:
    parts_a = [per_user_auc(labels, s, users)[1:] for s in scores_a]
    parts_b = [per_user_auc(labels, s, users)[1:] for s in scores_b]

    def value(user_w):
      a = np.mean([gauc_from_parts(x, c, user_w) for x, c in parts_a])
      return a - np.mean([gauc_from_parts(x, c, user_w) for x, c in parts_b])

  rng = np.random.default_rng(seed)
  point = value(None)
  draws = np.array(
    [
      value(np.bincount(rng.integers(0, n_users, n_users), minlength=n_users).astype(float))
      for _ in range(n_resamples)
    ]
  )
  draws = draws[~np.isnan(draws)]
  alpha = (1.0 - level) / 2.0
  low, high = np.quantile(draws, [alpha, 1.0 - alpha]) if len(draws) else (np.nan, np.nan)
  return {
    "diff": float(point),
    "low": float(low),
    "high": float(high),
    "p_below_zero": float(np.mean(draws < 0)) if len(draws) else float("nan"),
  }
