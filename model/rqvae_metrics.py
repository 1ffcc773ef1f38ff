"""Quality measures of semantic IDs: codebook usage, SID uniqueness and the paper's prefix table.

`CodeUsage` is a Keras metric that counts codes per level over an epoch (utilization and perplexity
in the epoch logs). The NumPy functions measure a finished assignment: `unique_sid_fraction`,
`max_items_per_sid`, `level_utilization`, and `prefix_table`, the analogue of Table 1 of Singh et
al. (2024): for each prefix length n, the mean cosine similarity of items sharing an n-prefix and
the quartiles of n-prefix sub-trie sizes.
"""

from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf


def _as_counts(counts) -> np.ndarray:
  return np.asarray(counts, dtype=np.float64)


def utilization_from_counts(counts) -> np.ndarray:
  """Fraction of codes used at least once, per level, from counts [L, K]."""
  return (_as_counts(counts) > 0).mean(axis=-1)


def perplexity_from_counts(counts) -> np.ndarray:
  """exp(entropy) of each level's code distribution, from counts [L, K] (K: perfectly uniform)."""
  counts = _as_counts(counts)
  p = counts / np.maximum(counts.sum(axis=-1, keepdims=True), 1.0)
  logs = np.log(np.where(p > 0, p, 1.0))
  return np.exp(-(p * logs).sum(axis=-1))


def code_counts(codes: np.ndarray, codebook_size: int) -> np.ndarray:
  """int64[L, K]: how many items chose each code at each level, from codes int[N, L]."""
  codes = np.asarray(codes)
  return np.stack([np.bincount(column, minlength=codebook_size) for column in codes.T])


def level_utilization(codes: np.ndarray, codebook_size: int) -> np.ndarray:
  """Fraction of the K codes used by the items at each level, float[L]."""
  return utilization_from_counts(code_counts(codes, codebook_size))


def _group_sizes(codes: np.ndarray) -> np.ndarray:
  """Sizes of the groups of identical rows of codes int[N, n]."""
  if codes.shape[1] == 0:
    return np.array([len(codes)])
  _, counts = np.unique(np.ascontiguousarray(codes), axis=0, return_counts=True)
  return counts


def unique_sid_fraction(codes: np.ndarray) -> float:
  """Distinct full SIDs divided by items (1.0: no collisions)."""
  codes = np.asarray(codes)
  return float(len(_group_sizes(codes)) / max(len(codes), 1))


def max_items_per_sid(codes: np.ndarray) -> int:
  """Largest number of items sharing one full SID."""
  codes = np.asarray(codes)
  return int(_group_sizes(codes).max()) if len(codes) else 0


def prefix_table(
  codes: np.ndarray,
  embeddings: np.ndarray,
  max_pairs_per_group: Optional[int] = 2000,
  seed: int = 0,
) -> List[Dict[str, float]]:
  """Table 1 of the paper: per prefix length n, cosine similarity within n-prefixes, trie sizes.

  Args:
    codes: int[N, L]. The SIDs.
    embeddings: float[N, D]. Content embeddings, rows aligned with `codes`.
    max_pairs_per_group: Optional int. Cap on the items per prefix group used for the similarity (a
      random subset), to bound the O(size^2) cost of big groups; None uses all. Defaults to 2000.
    seed: int. Seed of that subsampling. Defaults to 0.

  Returns:
    One dict per n: `prefix_length`, `mean_cosine` (mean over all pairs of distinct items that share
    the n-prefix), `pairs`, `groups`, and `subtrie_p25`/`p50`/`p75` (percentiles of group sizes,
    over groups).
  """
  codes = np.asarray(codes)
  unit = np.asarray(embeddings, np.float64)
  unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
  rng = np.random.default_rng(seed)
  rows = []
  for n in range(1, codes.shape[1] + 1):
    _, inverse, sizes = np.unique(codes[:, :n], axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    sim_sum, pairs = 0.0, 0
    for g in np.flatnonzero(sizes > 1):
      members = order[bounds[g] : bounds[g + 1]]
      if max_pairs_per_group and len(members) > max_pairs_per_group:
        members = rng.choice(members, max_pairs_per_group, replace=False)
      total = unit[members].sum(axis=0)
      m = len(members)
      # Sum over ordered pairs i != j of cos(i, j) = |sum u|^2 - sum |u|^2.
      sim_sum += (total @ total - m) / 2.0
      pairs += m * (m - 1) // 2
    p25, p50, p75 = np.percentile(sizes, [25, 50, 75])
    rows.append(
      {
        "prefix_length": n,
        "mean_cosine": float(sim_sum / pairs) if pairs else float("nan"),
        "pairs": int(pairs),
        "groups": int(len(sizes)),
        "subtrie_p25": float(p25),
        "subtrie_p50": float(p50),
        "subtrie_p75": float(p75),
      }
    )
  return rows


def sid_stats(codes: np.ndarray, codebook_size: int) -> Dict[str, object]:
  """Unique-SID fraction, max items per SID, per-level utilization and perplexity of codes."""
  counts = code_counts(codes, codebook_size)
  return {
    "unique_sid_fraction": unique_sid_fraction(codes),
    "max_items_per_sid": max_items_per_sid(codes),
    "utilization": utilization_from_counts(counts).tolist(),
    "perplexity": perplexity_from_counts(counts).tolist(),
  }


@tf.keras.utils.register_keras_serializable(package="semantic_ids")
class CodeUsage(tf.keras.metrics.Metric):
  """Counts code use per level over an epoch; reports `utilization_l` and `perplexity_l`.

  Args:
    num_levels: int. L.
    codebook_size: int. K.
    **kwargs: base Metric arguments.
  """

  def __init__(self, num_levels: int, codebook_size: int, name: str = "code_usage", **kwargs):
    super().__init__(name=name, **kwargs)
    if num_levels <= 0:
      raise ValueError(f"`num_levels` must be positive. Received: num_levels={num_levels}")
    if codebook_size <= 0:
      raise ValueError(f"`codebook_size` must be positive. Received: codebook_size={codebook_size}")
    self.num_levels = num_levels
    self.codebook_size = codebook_size
    self.counts = self.add_weight(
      name="counts", shape=(num_levels, codebook_size), initializer="zeros", dtype=tf.float32
    )

  def update_state(self, codes: tf.Tensor, sample_weight=None):
    """Adds the codes int32[B, L] of one batch."""
    del sample_weight
    counts = tf.stack(
      [
        tf.math.bincount(
          codes[:, level],
          minlength=self.codebook_size,
          maxlength=self.codebook_size,
          dtype=tf.float32,
        )
        for level in range(self.num_levels)
      ]
    )
    self.counts.assign_add(counts)

  def result(self) -> Dict[str, tf.Tensor]:
    used = tf.reduce_mean(tf.cast(self.counts > 0, tf.float32), axis=-1)
    p = self.counts / tf.maximum(tf.reduce_sum(self.counts, axis=-1, keepdims=True), 1.0)
    entropy = -tf.reduce_sum(tf.math.multiply_no_nan(tf.math.log(p), p), axis=-1)
    perplexity = tf.exp(entropy)
    out = {}
    for level in range(self.num_levels):
      out[f"utilization_{level}"] = used[level]
    for level in range(self.num_levels):
      out[f"perplexity_{level}"] = perplexity[level]
    return out

  def reset_state(self):
    self.counts.assign(tf.zeros_like(self.counts))

  def get_config(self):
    config = super().get_config()
    config.update({"num_levels": self.num_levels, "codebook_size": self.codebook_size})
    return config
