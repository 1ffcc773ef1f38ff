"""The built-in synthetic dataset: deterministic, topic-structured, with cold-start items.

Generative model (every draw comes from `numpy.random.default_rng(seed)` streams, so the same config
gives the same bytes):

1. Topic tree. `branching=(b1, b2, b3)` gives b1 top topics, each with b2 children, each with b3
   leaves. Every node has a random direction in R^D; a node at depth k is scaled by
   `level_scales[k]`. A leaf's centre is the sum of the vectors on its root-to-leaf path, so leaves
   under one parent are close and leaves under different top topics are far: similar content shares
   a coarse prefix, exactly what an RQ-VAE should find.
2. Items. Item i picks a leaf (Zipf-ish topic sizes), and its content embedding is the leaf centre
   plus isotropic noise (`item_noise`), L2-normalised. Each item also has a hidden quality q_i ~
   N(0, quality_std^2) that its content does not reveal (what ID memorisation can learn) and a
   popularity weight p_i ~ LogNormal(0, popularity_sigma). Items enter the catalogue over time:
   first_seen_i is uniform over [start_time, start_time + horizon); the last window therefore
   holds items never seen before it.
3. Users. User u has a taste vector: the normalised sum of the centres of `user_topics` random
   leaves, so users like whole regions of the tree; and an activity weight ~ LogNormal(0, 1).
4. Impressions. Time is cut into `time_windows` windows. For an impression at time t (uniform over
   the horizon), the user is drawn by activity and the item among items with first_seen <= t, with
   probability proportional to p_i * exp(-(t - first_seen_i) / recency_scale) (popularity and
   recency).
5. Labels. affinity = affinity_scale * cos(taste_u, centre of item's leaf);
   click ~ Bernoulli(sigmoid(click_bias + affinity + q_i + N(0, label_noise^2)));
   engagement (the second label) = click * softplus(affinity + 0.5 q_i + N(0, label_noise^2)).

Interactions are produced in chunks of `chunk_size` impressions (`iter_interaction_chunks`), so 1M
items and 10M interactions are generated without materialising more than one chunk of temporaries at
a time.
"""

import dataclasses
from typing import Iterator, Optional, Tuple

import numpy as np
import pandas as pd

from features import schema

_DAY = 86_400


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """Sizes and knobs of the generator (the defaults run the pipeline in minutes on 2 cores)."""

  n_items: int = 10_000
  n_users: int = 2_000
  n_interactions: int = 200_000
  embedding_dim: int = 128
  branching: Tuple[int, ...] = (8, 4, 4)
  level_scales: Tuple[float, ...] = (1.0, 0.6, 0.35)
  item_noise: float = 0.25
  quality_std: float = 0.8
  popularity_sigma: float = 1.0
  user_topics: int = 3
  affinity_scale: float = 3.0
  click_bias: float = -1.0
  label_noise: float = 0.5
  start_time: int = 1_704_067_200  # 2024-01-01 UTC; timestamps are start_time + offset
  horizon_days: int = 365
  recency_days: float = 60.0
  time_windows: int = 64
  chunk_size: int = 1_000_000
  seed: int = 0

  def __post_init__(self):
    for name in ("n_items", "n_users", "n_interactions", "embedding_dim", "horizon_days"):
      if getattr(self, name) <= 0:
        raise ValueError(f"`{name}` must be positive. Received: {name}={getattr(self, name)}")
    if len(self.branching) != len(self.level_scales) or min(self.branching) <= 0:
      raise ValueError(
        "`branching` and `level_scales` must have one positive entry per tree level. Received: "
        f"branching={self.branching}, level_scales={self.level_scales}"
      )


@dataclasses.dataclass(frozen=True)
class _World:
  """The latent state shared by every chunk of interactions."""

  leaf_centres: np.ndarray  # [n_leaves, D]
  item_leaf: np.ndarray  # [n_items]
  quality: np.ndarray  # [n_items]
  popularity: np.ndarray  # [n_items]
  first_seen: np.ndarray  # [n_items], seconds, sorted ascending
  user_taste: np.ndarray  # [n_users, D]
  user_activity: np.ndarray  # [n_users], normalised


def _normalise(x: np.ndarray) -> np.ndarray:
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _leaf_centres(cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
  """Sum of node directions along each root-to-leaf path, [prod(branching), D]."""
  centres = np.zeros((1, cfg.embedding_dim))
  for width, scale in zip(cfg.branching, cfg.level_scales):
    nodes = _normalise(rng.standard_normal((len(centres) * width, cfg.embedding_dim))) * scale
    centres = np.repeat(centres, width, axis=0) + nodes
  return centres


def _world(cfg: SyntheticConfig) -> _World:
  rng = np.random.default_rng([cfg.seed, 1])
  leaves = _leaf_centres(cfg, rng)
  n_leaves = len(leaves)
  topic_weight = 1.0 / np.arange(1, n_leaves + 1) ** 0.7
  topic_weight = rng.permutation(topic_weight / topic_weight.sum())
  item_leaf = rng.choice(n_leaves, size=cfg.n_items, p=topic_weight)
  quality = rng.normal(0.0, cfg.quality_std, cfg.n_items)
  popularity = rng.lognormal(0.0, cfg.popularity_sigma, cfg.n_items)
  first_seen = np.sort(rng.integers(0, cfg.horizon_days * _DAY, cfg.n_items))
  liked = rng.integers(0, n_leaves, (cfg.n_users, cfg.user_topics))
  taste = _normalise(leaves[liked].sum(axis=1))
  activity = rng.lognormal(0.0, 1.0, cfg.n_users)
  return _World(
    leaves, item_leaf, quality, popularity, first_seen, taste, activity / activity.sum()
  )


def _item_embeddings(cfg: SyntheticConfig, world: _World) -> np.ndarray:
  """Content embeddings, generated in chunks to bound temporaries; float32[n_items, D]."""
  rng = np.random.default_rng([cfg.seed, 2])
  out = np.empty((cfg.n_items, cfg.embedding_dim), np.float32)
  for start in range(0, cfg.n_items, cfg.chunk_size):
    stop = min(start + cfg.chunk_size, cfg.n_items)
    noise = rng.standard_normal((stop - start, cfg.embedding_dim)) * (
      cfg.item_noise / np.sqrt(cfg.embedding_dim)
    )
    out[start:stop] = _normalise(world.leaf_centres[world.item_leaf[start:stop]] + noise)
  return out


def _sample_items(
  cfg: SyntheticConfig, world: _World, times: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
  """Draws one item per time, by popularity x recency among items already introduced."""
  horizon = cfg.horizon_days * _DAY
  edges = np.linspace(0, horizon, cfg.time_windows + 1)
  window = np.clip(np.searchsorted(edges, times, side="right") - 1, 0, cfg.time_windows - 1)
  items = np.empty(len(times), np.int64)
  for w in np.unique(window):
    rows = np.flatnonzero(window == w)
    t_end = edges[w + 1]
    available = int(np.searchsorted(world.first_seen, t_end, side="right"))
    available = max(available, 1)
    age = np.maximum(edges[w] + (t_end - edges[w]) / 2 - world.first_seen[:available], 0.0)
    weight = world.popularity[:available] * np.exp(-age / (cfg.recency_days * _DAY))
    cdf = np.cumsum(weight)
    draws = np.searchsorted(cdf, rng.random(len(rows)) * cdf[-1], side="right")
    draws = np.minimum(draws, available - 1)
    items[rows] = draws
  return items


def _labels(
  cfg: SyntheticConfig,
  world: _World,
  users: np.ndarray,
  items: np.ndarray,
  rng: np.random.Generator,
) -> Tuple[np.ndarray, np.ndarray]:
  centres = _normalise(world.leaf_centres[world.item_leaf[items]])
  affinity = cfg.affinity_scale * np.einsum("ij,ij->i", world.user_taste[users], centres)
  logit = (
    cfg.click_bias + affinity + world.quality[items] + rng.normal(0, cfg.label_noise, len(items))
  )
  click = (rng.random(len(items)) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
  engaged = affinity + 0.5 * world.quality[items] + rng.normal(0, cfg.label_noise, len(items))
  engagement = (click * np.logaddexp(0.0, engaged)).astype(np.float32)
  return click, engagement


def iter_interaction_chunks(
  cfg: SyntheticConfig, world: Optional[_World] = None
) -> Iterator[pd.DataFrame]:
  """Yields the interactions in chunks of at most `cfg.chunk_size` rows, each sorted by time."""
  world = world or _world(cfg)
  horizon = cfg.horizon_days * _DAY
  for chunk, start in enumerate(range(0, cfg.n_interactions, cfg.chunk_size)):
    n = min(cfg.chunk_size, cfg.n_interactions - start)
    rng = np.random.default_rng([cfg.seed, 3, chunk])
    times = np.sort(rng.integers(0, horizon, n))
    users = rng.choice(cfg.n_users, size=n, p=world.user_activity)
    items = _sample_items(cfg, world, times, rng)
    times = np.maximum(times, world.first_seen[items])
    click, engagement = _labels(cfg, world, users, items, rng)
    order = np.argsort(times, kind="stable")
    yield pd.DataFrame(
      {
        "user_id": users[order].astype(np.int64),
        "item_id": items[order],
        "timestamp": times[order].astype(np.int64) + cfg.start_time,
        "click": click[order],
        "second_label": engagement[order],
      }
    )


def generate(cfg: SyntheticConfig = SyntheticConfig()) -> schema.Dataset:
  """Generates the whole synthetic dataset (item ids are 0..n_items-1 in order of introduction).

  Args:
    cfg: SyntheticConfig. Sizes, seed and generative knobs. Defaults to the small built-in default.

  Returns:
    A `schema.Dataset` with `second_label_name="engagement"`.
  """
  world = _world(cfg)
  items = pd.DataFrame(
    {
      "item_id": np.arange(cfg.n_items, dtype=np.int64),
      "first_seen": world.first_seen + cfg.start_time,
    }
  )
  interactions = pd.concat(list(iter_interaction_chunks(cfg, world)), ignore_index=True)
  interactions = interactions.sort_values("timestamp", kind="stable").reset_index(drop=True)
  return schema.Dataset(
    name="synthetic",
    items=items,
    embeddings=_item_embeddings(cfg, world),
    interactions=interactions,
    second_label_name="engagement",
  )
