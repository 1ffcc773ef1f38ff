"""TIGER's collision level: numbers the items sharing a full semantic ID, for a unique ID per item.

Items with the same SID (c1..cL) get collision indices 0, 1, 2, ... in a stable order (their order
in the input); appending that index as an extra level (c1..cL, j) makes every item's ID unique
(Rajput et al., 2023). The index is a property of the catalogue, not of the content embedding, so it
is looked up from the SID table rather than computed in the serving graph; consumers that can share
IDs (the ranker's subword layers) ignore it.
"""

import numpy as np


def collision_index(codes: np.ndarray) -> np.ndarray:
  """int32[N]: each item's rank among the items sharing its full SID (0 first, input order).

  Args:
    codes: int[N, L]. The SIDs.

  Returns:
    int32[N] collision indices; all zero when the SIDs are unique.

  Example:
    >>> collision_index(np.array([[1, 2], [1, 2], [0, 5], [1, 2]])).tolist()
    [0, 1, 0, 2]
  """
  codes = np.asarray(codes)
  if codes.ndim != 2:
    raise ValueError(f"`codes` must be a [N, L] array. Received shape {codes.shape}.")
  n = len(codes)
  if n == 0:
    return np.zeros(0, np.int32)
  # Sort rows lexicographically (stable, so equal SIDs keep input order), then count within runs.
  order = np.lexsort(codes.T[::-1])
  ordered = codes[order]
  new_group = np.ones(n, bool)
  new_group[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
  starts = np.flatnonzero(new_group)
  run_start = starts[np.cumsum(new_group) - 1]
  rank = np.arange(n) - run_start
  out = np.empty(n, np.int32)
  out[order] = rank
  return out


def with_collision_level(codes: np.ndarray, collisions: np.ndarray = None) -> np.ndarray:
  """int32[N, L + 1]: the SIDs with the collision index appended (unique per item)."""
  codes = np.asarray(codes, np.int32)
  if collisions is None:
    collisions = collision_index(codes)
  collisions = np.asarray(collisions, np.int32)
  if collisions.shape != (len(codes),):
    raise ValueError(
      f"`collisions` must have one entry per item ({len(codes)}). "
      f"Received shape {collisions.shape}."
    )
  return np.concatenate([codes, collisions[:, np.newaxis]], axis=1)


def collision_level_size(collisions: np.ndarray) -> int:
  """Distinct values the extra level needs: 1 + the largest collision index (0 when empty)."""
  collisions = np.asarray(collisions)
  return int(collisions.max()) + 1 if len(collisions) else 0
