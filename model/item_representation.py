"""The item-representation interface, its config, and the one factory that builds a scheme.

An item representation maps the raw item features of a batch (a dict holding `item_id` string[B] and
`content_embedding` float32[B, D]) to one vector per item, float32[B, embedding_dim]. The ranker and
the user tower's history feature only ever see this interface, so a new scheme is one new class plus
one line in `create`.

Schemes (the paper's Sec. 4 and its baselines):
  - `hash`: random-hash item ID (`hash_item.HashItem`), the production baseline.
  - `dense`: the content embedding through a learned projection (`dense_item.DenseItem`).
  - `unigram`, `bigram`, `prefix`, `spm`: semantic IDs tokenized into subwords and sum-pooled
    (`sid_item.SidItem`), differing only in the tokenizer.
  - `hybrid`: hash ID + one SID scheme, summed (`hybrid_item.HybridItem`).
  - `none`: no item feature at all (the user-only floor of the experiments); `create` returns None.
"""

import dataclasses
import enum
from typing import Any, Dict, Mapping, Optional, Tuple

import tensorflow as tf

ITEM_ID = "item_id"
CONTENT_EMBEDDING = "content_embedding"


class Scheme(enum.Enum):
  """The closed set of item representations."""

  NONE = "none"
  HASH = "hash"
  DENSE = "dense"
  UNIGRAM = "unigram"
  BIGRAM = "bigram"
  PREFIX = "prefix"
  SPM = "spm"
  HYBRID = "hybrid"

  @property
  def uses_sid(self) -> bool:
    return self in SID_SCHEMES or self is Scheme.HYBRID

  @property
  def uses_table_budget(self) -> bool:
    return self not in (Scheme.NONE, Scheme.DENSE)


SID_SCHEMES = (Scheme.UNIGRAM, Scheme.BIGRAM, Scheme.PREFIX, Scheme.SPM)

# `ItemRepresentationConfig.table_initializer` names -> Keras initializer identifiers.
TABLE_INITIALIZERS = {"normal": None, "zeros": "zeros"}


def table_initializer(identifier=None) -> tf.keras.initializers.Initializer:
  """The initializer of an embedding table: `identifier` (any Keras identifier, config or object)
  or, when None, RandomNormal(stddev=0.05)."""
  if identifier is None:
    return tf.keras.initializers.RandomNormal(stddev=0.05)
  return tf.keras.initializers.get(identifier)


@dataclasses.dataclass
class ItemRepresentationConfig:
  """Hyperparameters of an item representation.

  Attributes:
    scheme: Scheme. Which representation. Defaults to HASH.
    embedding_dim: int. Width of the output vector. Defaults to 32.
    table_rows: int. Embedding-table budget in rows (hash buckets, or subword rows; for `spm` the
      vocabulary size of the SentencePiece model, which fixes the rows; for `hybrid` the total of
      both tables). Defaults to 10_000.
    hybrid_sid_scheme: Scheme. The SID scheme inside `hybrid`. Defaults to PREFIX.
    hybrid_hash_fraction: float. Share of `table_rows` given to the hash part of `hybrid`; rows the
      SID part cannot use (a unigram table needs only L*K) go to the hash part too. Defaults to
      0.5.
    id_dropout: float. `hybrid` only: during training, the probability of zeroing an example's
      hash-ID vector, so the model learns to rank from the SID part alone, as it must for a new
      item. Defaults to 0.
    token_dropout: float. SID schemes: during training, the probability of dropping each subword
      token other than the first (the coarsest), so long pieces do not carry everything. Defaults to
      0.
    max_prefix_length: Optional int. `prefix` only: longest prefix; None means all L levels.
    table_initializer: str. How the hash and subword tables start: "normal" (RandomNormal,
      stddev 0.05) or "zeros", so a row no training example reached (a new item's hash bucket or
      long SID piece) adds nothing instead of random noise: a new item then looks like a training
      example whose ID was dropped (`id_dropout`, `token_dropout`). Defaults to "normal".
  """

  scheme: Scheme = Scheme.HASH
  embedding_dim: int = 32
  table_rows: int = 10_000
  hybrid_sid_scheme: Scheme = Scheme.PREFIX
  hybrid_hash_fraction: float = 0.5
  id_dropout: float = 0.0
  token_dropout: float = 0.0
  max_prefix_length: Optional[int] = None
  table_initializer: str = "normal"

  def __post_init__(self):
    self.scheme = Scheme(self.scheme)
    self.hybrid_sid_scheme = Scheme(self.hybrid_sid_scheme)
    if self.embedding_dim <= 0:
      raise ValueError(
        f"`embedding_dim` must be positive. Received: embedding_dim={self.embedding_dim}"
      )
    if self.table_rows <= 0:
      raise ValueError(f"`table_rows` must be positive. Received: table_rows={self.table_rows}")
    if self.hybrid_sid_scheme not in SID_SCHEMES:
      raise ValueError(
        f"`hybrid_sid_scheme` must be one of {[s.value for s in SID_SCHEMES]}. "
        f"Received: hybrid_sid_scheme={self.hybrid_sid_scheme.value}"
      )
    if not 0.0 < self.hybrid_hash_fraction < 1.0:
      raise ValueError(
        "`hybrid_hash_fraction` must be in (0, 1). "
        f"Received: hybrid_hash_fraction={self.hybrid_hash_fraction}"
      )
    if self.table_initializer not in TABLE_INITIALIZERS:
      raise ValueError(
        f"`table_initializer` must be one of {sorted(TABLE_INITIALIZERS)}. "
        f"Received: table_initializer={self.table_initializer!r}"
      )
    for name in ("id_dropout", "token_dropout"):
      value = getattr(self, name)
      if not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1). Received: {name}={value}")

  def to_dict(self) -> Dict[str, Any]:
    out = dataclasses.asdict(self)
    out["scheme"] = self.scheme.value
    out["hybrid_sid_scheme"] = self.hybrid_sid_scheme.value
    return out

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> "ItemRepresentationConfig":
    return cls(**dict(values))


class ItemRepresentation(tf.keras.layers.Layer):
  """Base class: raw item features in, float32[B, embedding_dim] out.

  Subclasses set `feature_keys` (the raw features they read) and implement `call(features,
  training)`. Inputs of any leading shape are not supported; callers flatten (the user tower
  flattens [B, H] histories).

  Args:
    embedding_dim: int. Width of the output vector.
    **kwargs: passed to `tf.keras.layers.Layer`.
  """

  feature_keys: Tuple[str, ...] = ()

  def __init__(self, embedding_dim: int = 32, **kwargs):
    super().__init__(**kwargs)
    if embedding_dim <= 0:
      raise ValueError(f"`embedding_dim` must be positive. Received: embedding_dim={embedding_dim}")
    self.embedding_dim = embedding_dim

  def select(self, features: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Returns the subset of `features` this representation reads; raises if one is missing."""
    missing = [k for k in self.feature_keys if k not in features]
    if missing:
      raise KeyError(
        f"{type(self).__name__} needs features {list(self.feature_keys)}; missing {missing}. "
        f"Received keys: {sorted(features)}"
      )
    return {k: features[k] for k in self.feature_keys}

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update({"embedding_dim": self.embedding_dim})
    return config


def create(
  config: ItemRepresentationConfig,
  *,
  sid_encoder: Optional[tf.keras.layers.Layer] = None,
  spm_model_proto: Optional[bytes] = None,
  name: Optional[str] = None,
) -> Optional[ItemRepresentation]:
  """Builds the representation `config` describes.

  Args:
    config: ItemRepresentationConfig.
    sid_encoder: Optional layer, codes int32[B, L] from content float32[B, D] (`SemanticIdEncoder`);
      required by SID schemes and `hybrid`. Needs attributes `num_levels` and `codebook_size`.
    spm_model_proto: Optional bytes. The SentencePiece model; required by `spm` (directly or in
      `hybrid`).
    name: Optional layer name. Defaults to "<scheme>_item".

  Returns:
    The layer, or None for `Scheme.NONE`.

  Raises:
    ValueError: if a scheme's dependency is missing.
  """
  # Imported here: those modules import this one for the base class.
  from model import dense_item, hash_item, hybrid_item, sid_item  # noqa: PLC0415

  scheme = config.scheme
  name = name or f"{scheme.value}_item"
  initializer = TABLE_INITIALIZERS[config.table_initializer]
  if scheme is Scheme.NONE:
    return None
  if scheme is Scheme.HASH:
    return hash_item.HashItem(
      num_bins=config.table_rows,
      embedding_dim=config.embedding_dim,
      embeddings_initializer=initializer,
      name=name,
    )
  if scheme is Scheme.DENSE:
    return dense_item.DenseItem(embedding_dim=config.embedding_dim, name=name)
  if scheme in SID_SCHEMES:
    tokenizer = sid_item.make_tokenizer(
      scheme.value,
      sid_encoder,
      num_rows=config.table_rows,
      spm_model_proto=spm_model_proto,
      max_prefix_length=config.max_prefix_length,
    )
    return sid_item.SidItem(
      sid_encoder=sid_encoder,
      tokenizer=tokenizer,
      embedding_dim=config.embedding_dim,
      token_dropout=config.token_dropout,
      embeddings_initializer=initializer,
      name=name,
    )
  if scheme is Scheme.HYBRID:
    # The SID part gets its share; rows its tokenizer cannot use (unigram needs only L*K) go to
    # the hash part, so the hybrid spends its whole budget.
    sid_share = max(
      1, config.table_rows - int(round(config.table_rows * config.hybrid_hash_fraction))
    )
    sid_config = dataclasses.replace(config, scheme=config.hybrid_sid_scheme, table_rows=sid_share)
    sid_part = create(
      sid_config, sid_encoder=sid_encoder, spm_model_proto=spm_model_proto, name="sid_part"
    )
    id_part = hash_item.HashItem(
      num_bins=max(1, config.table_rows - int(sid_part.num_rows)),
      embedding_dim=config.embedding_dim,
      embeddings_initializer=initializer,
      name="hash_part",
    )
    return hybrid_item.HybridItem(
      id_part=id_part, sid_part=sid_part, id_dropout=config.id_dropout, name=name
    )
  raise ValueError(f"Unknown item representation scheme. Received: scheme={scheme}")
