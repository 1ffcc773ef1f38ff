"""Paper-scale SIDs without an RQ-VAE: the benchmarks' shared corpus (L=8, K=2048 by default)."""

from typing import Tuple

import numpy as np

NUM_LEVELS, CODEBOOK_SIZE = 8, 2048


def synthetic_sids(
  num_items: int, seed: int, num_levels: int = NUM_LEVELS, codebook_size: int = CODEBOOK_SIZE
) -> Tuple[np.ndarray, np.ndarray]:
  """(codes int32[N, L] that share prefixes, Zipf impressions int64[N]): each level's code is a
  function of its parent's plus a Zipf step, so SIDs branch like an RQ-VAE's."""
  rng = np.random.default_rng(seed)
  codes = np.zeros((num_items, num_levels), np.int64)
  codes[:, 0] = np.minimum(rng.zipf(1.2, num_items) - 1, codebook_size - 1)
  for level in range(1, num_levels):
    step = np.minimum(rng.zipf(1.2, num_items) - 1, codebook_size - 1)
    codes[:, level] = (codes[:, level - 1] * 7919 + step) % codebook_size
  impressions = np.minimum(rng.zipf(1.6, num_items), 1_000_000)
  return codes.astype(np.int32), impressions.astype(np.int64)
