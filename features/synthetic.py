"""The built-in synthetic dataset: deterministic, topic-structured, production-like.

It is built to have the properties of the paper's setting (each is checked by
`tests/features/synthetic_test.py` on generated data, and the rankers' trade-off by the main
job's report):
  - heavy-tailed popularity: the top 1% of items take over a quarter of the impressions (hundreds
    to thousands each at the default size), so head items can be memorised;
  - an item-specific effect that the content does not reveal (`quality_std`), large enough that
    memorising it (a random-hash item ID) pays on warm items;
  - a real content signal (user-topic affinity and a content-revealed item effect), so content
    helps on items never seen in training;
  - items introduced continuously, so every evaluation window holds items first seen in it.

Generative model (every draw comes from `numpy.random.default_rng(seed)` streams, so the same config
gives the same bytes):

1. Topic tree. `branching=(b1, b2, b3)` gives b1 top topics, each with b2 children, each with b3
   leaves. Every node has a random direction in R^D; a node at depth k is scaled by
   `level_scales[k]`. A leaf's centre is the sum of the vectors on its root-to-leaf path, so leaves
   under one parent are close and leaves under different top topics are far: similar content shares
   a coarse prefix, exactly what an RQ-VAE should find.
2. Items. Item i picks a leaf (Zipf-ish topic sizes), and its content embedding is the leaf centre
   plus isotropic noise (`item_noise`), L2-normalised. Each item has a hidden quality q_i ~
   N(0, quality_std^2) that its content does not reveal (what ID memorisation can learn), a content
   effect c_i (a fixed random direction's projection of its topic centre, standardised to
   `content_effect_std`: what content input can learn and carry to new items) and a popularity
   weight p_i: Zipf, p_i = rank_i^-zipf_exponent over a random ranking (`popularity="zipf"`), or
   LogNormal(0, popularity_sigma). Items enter the catalogue over time: first_seen_i is uniform
   over [start_time, start_time + horizon).
3. Users. User u has a taste vector: the normalised sum of the centres of `user_topics` random
   leaves, so users like whole regions of the tree; and an activity weight ~ LogNormal(0, 1).
4. Impressions. Time is cut into `time_windows` windows. For an impression at time t (uniform over
   the horizon), the user is drawn by activity and the item among items with first_seen <= t, with
   probability proportional to p_i * exp(-(t - first_seen_i) / recency_scale) (popularity and
   recency).
5. Labels. affinity = affinity_scale * cos(taste_u, centre of item's leaf);
   click ~ Bernoulli(sigmoid(click_bias + affinity + c_i + q_i + N(0, label_noise^2)));
   engagement (the second label) = click * softplus(affinity + 0.5 q_i + N(0, label_noise^2)).

Profiles (`config_for_profile`, `--synthetic_profile`): "production" (the defaults above) and
"topics_v1", the generator of earlier versions (LogNormal popularity, quality_std 0.8, no content
effect, recency 60 days), byte for byte.

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
  quality_std: float = 2.2
  content_effect_std: float = 0.8
  popularity: str = "zipf"
  popularity_sigma: float = 1.0
  zipf_exponent: float = 0.9
  user_topics: int = 3
  affinity_scale: float = 3.0
  click_bias: float = -1.0
  label_noise: float = 0.5
  start_time: int = 1_704_067_200  # 2024-01-01 UTC; timestamps are start_time + offset
  horizon_days: int = 365
  recency_days: float = 365.0
  time_windows: int = 64
  chunk_size: int = 1_000_000
  seed: int = 0

  def __post_init__(self):
    for name in ("n_items", "n_users", "n_interactions", "embedding_dim", "horizon_days"):
      if getattr(self, name) <= 0:
        raise ValueError(f"`{name}` must be positive. Received: {name}={getattr(self, name)}")
    if self.popularity not in POPULARITY:
      raise ValueError(
        f"`popularity` must be one of {POPULARITY}. Received: popularity={self.popularity!r}"
      )
    if len(self.branching) != len(self.level_scales) or min(self.branching) <= 0:
      raise ValueError(
        "`branching` and `level_scales` must have one positive entry per tree level. Received: "
        f"branching={self.branching}, level_scales={self.level_scales}"
      )


POPULARITY = ("lognormal", "zipf")
# The generator of earlier versions (light-tailed popularity, weaker item effect): every size
# stays as given, these knobs go back. `--synthetic_profile=topics_v1` selects it.
PROFILES = {
  "production": {},
  "topics_v1": {
    "popularity": "lognormal",
    "quality_std": 0.8,
    "content_effect_std": 0.0,
    "recency_days": 60.0,
  },
}


def config_for_profile(profile: str, **values) -> "SyntheticConfig":
  """A SyntheticConfig of `profile` ("production", the default, or "topics_v1") with `values`."""
  if profile not in PROFILES:
    raise ValueError(f"`profile` must be one of {sorted(PROFILES)}. Received: {profile!r}")
  return SyntheticConfig(**{**PROFILES[profile], **values})


def popularity_weights(cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
  """Item popularity weights: LogNormal(0, sigma), or Zipf (rank^-a over a random ranking)."""
  if cfg.popularity == "zipf":
    ranks = rng.permutation(cfg.n_items) + 1
    return ranks.astype(np.float64) ** -cfg.zipf_exponent
  return rng.lognormal(0.0, cfg.popularity_sigma, cfg.n_items)


@dataclasses.dataclass(frozen=True)
class _World:
  """The latent state shared by every chunk of interactions."""

  leaf_centres: np.ndarray  # [n_leaves, D]
  item_leaf: np.ndarray  # [n_items]
  quality: np.ndarray  # [n_items], hidden from the content
  content_effect: np.ndarray  # [n_items], a linear function of the item's content embedding
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
  popularity = popularity_weights(cfg, rng)
  first_seen = np.sort(rng.integers(0, cfg.horizon_days * _DAY, cfg.n_items))
  liked = rng.integers(0, n_leaves, (cfg.n_users, cfg.user_topics))
  taste = _normalise(leaves[liked].sum(axis=1))
  activity = rng.lognormal(0.0, 1.0, cfg.n_users)
  return _World(
    leaves,
    item_leaf,
    quality,
    _content_effect(cfg, leaves, item_leaf),
    popularity,
    first_seen,
    taste,
    activity / activity.sum(),
  )


def _content_effect(cfg: SyntheticConfig, leaves: np.ndarray, item_leaf: np.ndarray) -> np.ndarray:
  """An item effect that its content reveals: a fixed random direction's projection of the item's
  topic centre, standardised to `content_effect_std` (zero for the topics_v1 profile)."""
  if cfg.content_effect_std <= 0:
    return np.zeros(len(item_leaf))
  direction = _normalise(np.random.default_rng([cfg.seed, 4]).standard_normal(cfg.embedding_dim))
  per_leaf = _normalise(leaves) @ direction
  per_leaf = (per_leaf - per_leaf.mean()) / max(per_leaf.std(), 1e-12)
  return cfg.content_effect_std * per_leaf[item_leaf]


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
    cfg.click_bias
    + affinity
    + world.content_effect[items]
    + world.quality[items]
    + rng.normal(0, cfg.label_noise, len(items))
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


def oracle_scores(cfg: SyntheticConfig, frame: pd.DataFrame) -> dict:
  """What the generator knows and no model sees, per row of `frame` (user_id, item_id): the
  noiseless click logit ("full") and its two parts: what the content reveals ("content": user-topic
  affinity plus the content effect) and the item's hidden quality. Its AUC is the data's ceiling."""
  world = _world(cfg)
  users = frame["user_id"].to_numpy().astype(np.int64)
  items = frame["item_id"].to_numpy().astype(np.int64)
  centres = _normalise(world.leaf_centres[world.item_leaf[items]])
  affinity = cfg.affinity_scale * np.einsum("ij,ij->i", world.user_taste[users], centres)
  quality = world.quality[items]
  content = affinity + world.content_effect[items]
  return {"full": content + quality, "content": content, "hidden quality": quality}


def item_topic_path(cfg: SyntheticConfig) -> np.ndarray:
  """Every item's node of the topic tree at each depth, int64[n_items, len(branching)] (read-only:
  recomputes the generator's latent assignment; the generated data does not change).

  Column k is the item's depth-k topic, numbered over all prod(branching[:k+1]) topics of that
  depth, so two items share column k exactly when they share their first k+1 topics: column 0 is
  the top topic, the last column the leaf. Rows are item ids (0..n_items-1).
  """
  leaf = _world(cfg).item_leaf.astype(np.int64)
  below = [int(np.prod(cfg.branching[k + 1 :])) for k in range(len(cfg.branching))]
  return np.stack([leaf // leaves for leaves in below], axis=1)
