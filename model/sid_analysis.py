"""Label-invariant analyses of semantic-ID assignments: the appendix of Singh et al. (2024).

Stability (A.2) compares two assignments of the same items (two RQ-VAE versions) without caring
which integer a code got, since two trainings never agree on that: for a prefix length n,
`prefix_agreement` is the fraction of item pairs sharing an n-prefix in version A that also share
it in version B (and the reverse), with the fraction a random assignment of the same group sizes
would give; `level_mutual_information` is the mutual information between the versions' codes at
each level. Hierarchy (A.3/A.4): `prefix_similarity` (mean cosine of items sharing an n-prefix,
`model.rqvae_metrics.prefix_table`, against random pairs), `subtrie_sizes` (items per n-prefix) and
`category_agreement` (normalised mutual information and purity of n-prefixes against known
categories, against shuffled categories).

Pairs are counted from group sizes, never enumerated: a group of m items holds m(m-1)/2 pairs, and
the pairs sharing a prefix in both versions are those within the groups of the joint key (A prefix,
B prefix). Intervals come from a bootstrap over items (`bootstrap_interval`): a resample is a
multiplicity weight per item, a group then holds ((sum w)^2 - sum w^2) / 2 pairs, so two copies of
one item never count as a pair. Plug-in information and purity, which resampling shifts up, get
the normal interval (estimate -/+ 1.96 bootstrap standard deviations); their own upward bias on
small groups is what the shuffled (chance) values beside them show. Information is in bits.

Example:
>>> a = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
>>> b = np.array([[5, 0], [5, 0], [3, 0], [7, 0]])  # version B: other labels, other groups
>>> pairs_within(prefix_groups(a, 1)), pairs_within(joint_groups(prefix_groups(a, 1),
...   prefix_groups(b, 1)))
(2.0, 1.0)
>>> round(mutual_information(a[:, 0], b[:, 0]), 3)  # H(A1) = 1 bit, all of it shared
1.0
"""

import functools
import statistics
from typing import Callable, Dict, List, Optional

import numpy as np

from model import rqvae_metrics

Weights = Optional[np.ndarray]


def _weights(n: int, weights: Weights) -> np.ndarray:
  return np.ones(n) if weights is None else np.asarray(weights, np.float64)


def prefix_groups(codes: np.ndarray, n: int) -> np.ndarray:
  """Dense group ids int64[N] of the items' n-prefixes (n=0: one group of every item).

  Raises:
    ValueError: when `n` is not in [0, L].
  """
  codes = np.asarray(codes)
  if codes.ndim != 2 or not 0 <= n <= codes.shape[1]:
    raise ValueError(
      f"`n` must be in [0, L] for codes int[N, L]. Received: n={n}, codes.shape={codes.shape}"
    )
  if n == 0:
    return np.zeros(len(codes), np.int64)
  _, inverse = np.unique(np.ascontiguousarray(codes[:, :n]), axis=0, return_inverse=True)
  return inverse.reshape(-1).astype(np.int64)


def joint_groups(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Dense ids int64[N] of the pairs (a_i, b_i) of two non-negative integer labellings."""
  a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
  if a.shape != b.shape:
    raise ValueError(f"The labellings must align. Received: shapes {a.shape} and {b.shape}")
  if not len(a):
    return a
  _, inverse = np.unique(a * (int(b.max()) + 1) + b, return_inverse=True)
  return inverse.reshape(-1).astype(np.int64)


def pairs_within(groups: np.ndarray, weights: Weights = None) -> float:
  """Item pairs inside the same group: sum over groups of ((sum w)^2 - sum w^2) / 2 (unweighted:
  m(m-1)/2 for a group of m)."""
  groups = np.asarray(groups)
  w = _weights(len(groups), weights)
  total = np.bincount(groups, w)
  squares = np.bincount(groups, w * w)
  return float((total @ total - squares.sum()) / 2.0)


def _distribution(labels: np.ndarray, weights: Weights) -> np.ndarray:
  counts = np.bincount(np.asarray(labels), _weights(len(labels), weights))
  counts = counts[counts > 0]
  return counts / counts.sum()


def entropy(labels: np.ndarray, weights: Weights = None) -> float:
  """Shannon entropy in bits of a non-negative integer labelling."""
  if not len(labels):
    return 0.0
  p = _distribution(labels, weights)
  return float(-(p * np.log2(p)).sum())


def mutual_information(x: np.ndarray, y: np.ndarray, weights: Weights = None) -> float:
  """I(X; Y) in bits of two aligned labellings: H(X) + H(Y) - H(X, Y) (plug-in estimate)."""
  joint = joint_groups(x, y)
  return max(entropy(x, weights) + entropy(y, weights) - entropy(joint, weights), 0.0)


def normalized_mutual_information(x: np.ndarray, y: np.ndarray, weights: Weights = None) -> float:
  """I(X; Y) / mean(H(X), H(Y)) in [0, 1] (scikit-learn's default normalisation); 1.0 when both
  labellings are constant."""
  mean = (entropy(x, weights) + entropy(y, weights)) / 2.0
  return 1.0 if mean <= 0 else min(mutual_information(x, y, weights) / mean, 1.0)


def purity(groups: np.ndarray, labels: np.ndarray, weights: Weights = None) -> float:
  """Share of items whose label is their group's most common one."""
  joint = joint_groups(groups, labels)
  w = _weights(len(joint), weights)
  counts = np.bincount(joint, w)
  first = np.zeros(len(counts), np.int64)
  first[joint] = np.asarray(groups)  # The group of each (group, label) cell.
  best = np.zeros(int(first.max()) + 1 if len(first) else 0)
  np.maximum.at(best, first, counts)
  return float(best.sum() / w.sum()) if w.sum() > 0 else float("nan")


def _unit(embeddings: np.ndarray) -> np.ndarray:
  x = np.asarray(embeddings, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def group_cosine_sums(groups: np.ndarray, embeddings: np.ndarray):
  """(sum of cosines over the pairs of each group, pairs of each group), two float[G]: for a group,
  the sum over its pairs of cos(i, j) is (|sum of unit vectors|^2 - m) / 2."""
  unit = _unit(embeddings)
  groups = np.asarray(groups)
  n_groups = int(groups.max()) + 1 if len(groups) else 0
  totals = np.zeros((n_groups, unit.shape[1]))
  np.add.at(totals, groups, unit)
  sizes = np.bincount(groups, minlength=n_groups).astype(np.float64)
  return (np.einsum("gd,gd->g", totals, totals) - sizes) / 2.0, sizes * (sizes - 1) / 2.0


def mean_pair_cosine(embeddings: np.ndarray) -> float:
  """Mean cosine similarity over every pair of distinct items (exact, in O(N D))."""
  sums, pairs = group_cosine_sums(np.zeros(len(embeddings), np.int64), embeddings)
  return float(sums[0] / pairs[0]) if len(pairs) and pairs[0] else float("nan")


def bootstrap_interval(
  statistic: Callable[[Weights], float],
  n: int,
  n_resamples: int = 200,
  seed: int = 0,
  level: float = 0.95,
  method: str = "percentile",
) -> Dict[str, float]:
  """{"value", "low", "high"}: `statistic(None)` and its bootstrap interval over resamples of n
  units with replacement (`statistic(weights)`, weights: the multiplicities).

  Args:
    statistic: callable(weights or None) -> float.
    n: int. Units (items, groups) resampled.
    n_resamples: int. Resamples. Defaults to 200.
    seed: int. Defaults to 0.
    level: float. Confidence level. Defaults to 0.95.
    method: str. "percentile" (the resamples' quantiles), or "normal" (value -/+ z times the
      resamples' standard deviation), for plug-in entropies, information and purity: a resample's
      duplicated items look like extra certainty, which shifts every resample up (the percentile
      interval then misses the estimate itself), while their spread still measures the sampling
      error. Defaults to "percentile".

  Raises:
    ValueError: for a negative `n_resamples`, a `level` outside (0, 1) or an unknown `method`.
  """
  if n_resamples < 0 or not 0.0 < level < 1.0 or method not in ("percentile", "normal"):
    raise ValueError(
      "`n_resamples` must be >= 0, `level` in (0, 1) and `method` 'percentile' or 'normal'. "
      f"Received: n_resamples={n_resamples}, level={level}, method={method!r}"
    )
  rng = np.random.default_rng(seed)
  draws = np.array(
    [
      statistic(np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64))
      for _ in range(n_resamples if n else 0)
    ]
  )
  draws = draws[~np.isnan(draws)]
  value = float(statistic(None))
  alpha = (1.0 - level) / 2.0
  if not len(draws):
    low, high = np.nan, np.nan
  elif method == "normal":
    half = statistics.NormalDist().inv_cdf(1.0 - alpha) * float(np.std(draws, ddof=1))
    low, high = value - half, value + half
  else:
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
  return {"value": value, "low": float(low), "high": float(high)}


def _ratio(numerator: float, denominator: float) -> float:
  return numerator / denominator if denominator > 0 else float("nan")


def _pair_share(both: np.ndarray, groups: np.ndarray, weights: Weights) -> float:
  """Of the pairs within `groups`, the share also within the finer `both`."""
  return _ratio(pairs_within(both, weights), pairs_within(groups, weights))


def prefix_agreement(
  codes_a: np.ndarray, codes_b: np.ndarray, n_resamples: int = 200, seed: int = 0
) -> List[Dict]:
  """Per prefix length n: of the item pairs sharing an n-prefix in A, the fraction sharing it in B
  (`agreement`), the reverse (`reverse_agreement`), each with a bootstrap interval over items, and
  `chance`/`reverse_chance`: what a random assignment with the other version's group sizes would
  give (its pairs / all pairs).

  Raises:
    ValueError: when the two code arrays differ in shape.
  """
  codes_a, codes_b = np.asarray(codes_a), np.asarray(codes_b)
  if codes_a.shape != codes_b.shape:
    raise ValueError(
      f"Both versions need codes for the same items and levels. Received: {codes_a.shape} and "
      f"{codes_b.shape}"
    )
  everyone = np.zeros(len(codes_a), np.int64)
  rows = []
  for n in range(1, codes_a.shape[1] + 1):
    ga, gb = prefix_groups(codes_a, n), prefix_groups(codes_b, n)
    both = joint_groups(ga, gb)
    rows.append(
      {
        "prefix_length": n,
        "agreement": bootstrap_interval(
          functools.partial(_pair_share, both, ga), len(ga), n_resamples, seed
        ),
        "reverse_agreement": bootstrap_interval(
          functools.partial(_pair_share, both, gb), len(ga), n_resamples, seed
        ),
        "chance": _pair_share(gb, everyone, None),
        "reverse_chance": _pair_share(ga, everyone, None),
        "pairs_a": pairs_within(ga),
        "pairs_b": pairs_within(gb),
        "pairs_both": pairs_within(both),
      }
    )
  return rows


def _shuffled_mean(fn: Callable[..., float], fixed, labels, permutations: int, seed: int) -> float:
  """Mean of fn(fixed, shuffled labels) over `permutations` shuffles."""
  rng = np.random.default_rng(seed)
  values = [fn(fixed, rng.permutation(labels)) for _ in range(permutations)]
  return float(np.mean(values)) if values else float("nan")


def _intervals(fns, x, y, n_resamples: int, seed: int) -> Dict[str, Dict[str, float]]:
  """{name: normal bootstrap interval of fn(x, y, weights)} over the items (plug-in measures)."""
  return {
    name: bootstrap_interval(
      functools.partial(fn, x, y), len(x), n_resamples, seed, method="normal"
    )
    for name, fn in fns.items()
  }


def level_mutual_information(
  codes_a: np.ndarray,
  codes_b: np.ndarray,
  n_resamples: int = 200,
  seed: int = 0,
  permutations: int = 5,
) -> List[Dict]:
  """Per level l: I(c_l^A; c_l^B) in bits (`mi_bits`) and normalised (`nmi`), with bootstrap
  intervals over items, the entropies, and `chance_mi_bits`: its mean over `permutations` shuffles
  of B's codes (the plug-in estimate's value for unrelated codes of these sizes, i.e. its bias)."""
  codes_a, codes_b = np.asarray(codes_a), np.asarray(codes_b)
  fns = {"mi_bits": mutual_information, "nmi": normalized_mutual_information}
  rows = []
  for level in range(codes_a.shape[1]):
    a, b = codes_a[:, level], codes_b[:, level]
    row = {"level": level + 1, **_intervals(fns, a, b, n_resamples, seed)}
    row.update(
      chance_mi_bits=_shuffled_mean(mutual_information, a, b, permutations, seed),
      entropy_a_bits=entropy(a),
      entropy_b_bits=entropy(b),
    )
    rows.append(row)
  return rows


def _weighted_ratio(sums: np.ndarray, pairs: np.ndarray, weights: Weights) -> float:
  w = _weights(len(sums), weights)
  return _ratio(float(sums @ w), float(pairs @ w))


def prefix_similarity(
  codes: np.ndarray, embeddings: np.ndarray, n_resamples: int = 200, seed: int = 0
) -> List[Dict]:
  """The paper's Table 1 (`rqvae_metrics.prefix_table`, exact: no subsampling) with a bootstrap
  interval of each mean cosine over the n-prefix groups (`mean_cosine_low`/`high`), and
  `random_pair_cosine`, the mean over every pair of items."""
  rows = rqvae_metrics.prefix_table(codes, embeddings, max_pairs_per_group=None)
  baseline = mean_pair_cosine(embeddings)
  for row in rows:
    sums, pairs = group_cosine_sums(prefix_groups(codes, row["prefix_length"]), embeddings)
    statistic = functools.partial(_weighted_ratio, sums, pairs)
    interval = bootstrap_interval(statistic, len(sums), n_resamples, seed)
    row.update(
      mean_cosine_low=interval["low"],
      mean_cosine_high=interval["high"],
      random_pair_cosine=baseline,
    )
  return rows


def size_histogram(sizes: np.ndarray) -> Dict[str, List[int]]:
  """Group sizes in powers-of-two bins: `bin_low[k]` = 2^k, `groups[k]` = how many sizes lie in
  [2^k, 2^(k+1)), `items[k]` = the items in those groups."""
  sizes = np.asarray(sizes, np.int64)
  sizes = sizes[sizes > 0]
  if not len(sizes):
    return {"bin_low": [], "groups": [], "items": []}
  bins = np.floor(np.log2(sizes)).astype(np.int64)
  n_bins = int(bins.max()) + 1
  return {
    "bin_low": [2**k for k in range(n_bins)],
    "groups": np.bincount(bins, minlength=n_bins).tolist(),
    "items": np.bincount(bins, sizes, minlength=n_bins).astype(np.int64).tolist(),
  }


def subtrie_sizes(codes: np.ndarray) -> List[Dict]:
  """Per prefix length n, the items per n-prefix (sub-trie sizes): quartiles over the n-prefixes,
  mean, largest, the share of items alone in their n-prefix, and the `size_histogram`."""
  rows = []
  for n in range(1, np.asarray(codes).shape[1] + 1):
    sizes = np.bincount(prefix_groups(codes, n))
    p25, p50, p75 = np.percentile(sizes, [25, 50, 75])
    rows.append(
      {
        "prefix_length": n,
        "groups": int(len(sizes)),
        "p25": float(p25),
        "p50": float(p50),
        "p75": float(p75),
        "mean": float(sizes.mean()),
        "max": int(sizes.max()),
        "singleton_item_share": float(np.sum(sizes == 1) / sizes.sum()),
        "histogram": size_histogram(sizes),
      }
    )
  return rows


def category_agreement(
  codes: np.ndarray,
  labels: np.ndarray,
  n_resamples: int = 200,
  seed: int = 0,
  permutations: int = 5,
) -> List[Dict]:
  """Per prefix length n: NMI and purity of the n-prefixes against one category per item (labels
  int[N]; -1: unknown, left out), with bootstrap intervals over items, and their means over
  `permutations` shuffles of the labels (`chance_nmi`, `chance_purity`: what prefixes unrelated to
  the categories, with the same group sizes, score)."""
  labels = np.asarray(labels)
  known = labels >= 0
  codes, labels = np.asarray(codes)[known], labels[known]
  fns = {"nmi": normalized_mutual_information, "purity": purity}
  rows = []
  for n in range(1, codes.shape[1] + 1):
    groups = prefix_groups(codes, n)
    row = {"prefix_length": n, "items": int(len(labels)), "groups": int(len(np.unique(groups)))}
    row.update(_intervals(fns, groups, labels, n_resamples, seed))
    row.update(
      chance_nmi=_shuffled_mean(normalized_mutual_information, groups, labels, permutations, seed),
      chance_purity=_shuffled_mean(purity, groups, labels, permutations, seed),
    )
    rows.append(row)
  return rows
