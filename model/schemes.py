"""The scheme registry: one spec per item representation, and the one factory that builds them.

A `SchemeSpec` says everything a job needs to know about an item representation: how to build it
from an `ItemRepresentationConfig` (and the frozen SID encoder / SentencePiece model it may need),
whether it needs semantic IDs and a SentencePiece model, how many table rows it really uses for a
budget, and how `hybrid` splits its budget. The experiment, the pipeline, the report and the
benchmarks iterate over `REGISTRY` instead of keeping their own lists, so a new representation is
one new `ItemRepresentation` subclass plus one `register(SchemeSpec(...))` call (TF Ranking's
`key_to_cls`).

Built-in schemes (the paper's Sec. 4 and its baselines):
  - `hash`: random-hash item ID (`hash_item.HashItem`), the production baseline.
  - `dense`: the content embedding through a learned projection (`dense_item.DenseItem`).
  - `unigram`, `bigram`, `prefix`, `spm`: semantic IDs tokenized into subwords and sum-pooled
    (`sid_item.SidItem`), differing only in the tokenizer.
  - `hybrid`: hash ID + one SID scheme, summed (`hybrid_item.HybridItem`).
  - `none`: no item feature at all (the user-only floor of the experiments); builds None.

Example:
>>> config = ItemRepresentationConfig(scheme="hash", table_rows=8, embedding_dim=4)
>>> create(config).num_rows
8
>>> get("unigram").rows(budget=10_000, num_levels=3, codebook_size=64)
192
"""

import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import tensorflow as tf

from features import sid_ngram, sid_prefix_ngram, sid_spm
from model import dense_item, hash_item, hybrid_item, item_representation, sid_item

NONE = "none"
HASH = "hash"
DENSE = "dense"
HYBRID = "hybrid"
SPM = "spm"


@dataclasses.dataclass
class ItemRepresentationConfig:
  """Hyperparameters of an item representation.

  Attributes:
    scheme: str. A registered scheme name (`names()`). Defaults to "hash".
    embedding_dim: int. Width of the output vector. Defaults to 32.
    table_rows: int. Embedding-table budget in rows (hash buckets, or subword rows; for `spm` the
      vocabulary size of the SentencePiece model, which fixes the rows; for `hybrid` the total of
      both tables). Defaults to 10_000.
    hybrid_sid_scheme: str. The SID scheme inside `hybrid`. Defaults to "prefix".
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
      long SID piece) adds nothing instead of random noise. Defaults to "normal".
  """

  scheme: str = HASH
  embedding_dim: int = 32
  table_rows: int = 10_000
  hybrid_sid_scheme: str = "prefix"
  hybrid_hash_fraction: float = 0.5
  id_dropout: float = 0.0
  token_dropout: float = 0.0
  max_prefix_length: Optional[int] = None
  table_initializer: str = "normal"

  def __post_init__(self):
    self.scheme = get(self.scheme).name
    if self.embedding_dim <= 0:
      raise ValueError(
        f"`embedding_dim` must be positive. Received: embedding_dim={self.embedding_dim}"
      )
    if self.table_rows <= 0:
      raise ValueError(f"`table_rows` must be positive. Received: table_rows={self.table_rows}")
    if self.hybrid_sid_scheme not in sid_scheme_names():
      raise ValueError(
        f"`hybrid_sid_scheme` must be one of {list(sid_scheme_names())}. "
        f"Received: hybrid_sid_scheme={self.hybrid_sid_scheme!r}"
      )
    if not 0.0 < self.hybrid_hash_fraction < 1.0:
      raise ValueError(
        "`hybrid_hash_fraction` must be in (0, 1). "
        f"Received: hybrid_hash_fraction={self.hybrid_hash_fraction}"
      )
    if self.table_initializer not in item_representation.TABLE_INITIALIZERS:
      raise ValueError(
        f"`table_initializer` must be one of {sorted(item_representation.TABLE_INITIALIZERS)}. "
        f"Received: table_initializer={self.table_initializer!r}"
      )
    for name in ("id_dropout", "token_dropout"):
      value = getattr(self, name)
      if not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1). Received: {name}={value}")

  @property
  def spec(self) -> "SchemeSpec":
    return get(self.scheme)

  @property
  def initializer(self) -> Optional[str]:
    """The Keras identifier of the tables' initializer (None: RandomNormal(0.05))."""
    return item_representation.TABLE_INITIALIZERS[self.table_initializer]

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> "ItemRepresentationConfig":
    return cls(**dict(values))


# build(config, sid_encoder, spm_model_proto, name) -> layer or None.
Builder = Callable[
  [ItemRepresentationConfig, Optional[tf.keras.layers.Layer], Optional[bytes], str],
  Optional[item_representation.ItemRepresentation],
]
# rows(budget, num_levels, codebook_size) -> rows really used, or None (no table).
RowsFn = Callable[[int, int, int], Optional[int]]


def _budget_rows(budget: int, num_levels: int, codebook_size: int) -> int:
  return budget


def _no_rows(budget: int, num_levels: int, codebook_size: int) -> None:
  return None


@dataclasses.dataclass(frozen=True)
class SchemeSpec:
  """Everything the jobs need to know about one item representation.

  Attributes:
    name: str. The scheme's name (`--item_representation`, `--schemes`, run folders).
    build: `build(config, sid_encoder, spm_model_proto, name)` -> the layer (None for no item
      feature).
    uses_sid: bool. Needs the frozen semantic-ID encoder.
    is_sid_scheme: bool. A pure SID scheme (allowed as the SID part of `hybrid`).
    rows: `rows(budget, num_levels, codebook_size)` -> the table rows the scheme really uses at
      `budget` (None when it has no table); runs with equal values are the same model.
    spm_budget: `spm_budget(config)` -> the row budget of the SentencePiece model the scheme
      needs, or None when it needs none.
    doc: str. One line for `--help` and reports.
  """

  name: str
  build: Builder
  uses_sid: bool = False
  is_sid_scheme: bool = False
  rows: RowsFn = _budget_rows
  spm_budget: Callable[[ItemRepresentationConfig], Optional[int]] = lambda config: None
  doc: str = ""

  @property
  def uses_table_budget(self) -> bool:
    return self.rows(1, 1, 1) is not None


REGISTRY: Dict[str, SchemeSpec] = {}


def register(spec: SchemeSpec, *, replace: bool = False) -> SchemeSpec:
  """Adds `spec` to the registry (every job and report then knows it).

  Raises:
    ValueError: if the name is taken and `replace` is False.
  """
  if spec.name in REGISTRY and not replace:
    raise ValueError(f"Scheme {spec.name!r} is already registered.")
  REGISTRY[spec.name] = spec
  return spec


def unregister(name: str) -> None:
  REGISTRY.pop(name, None)


def get(name: str) -> SchemeSpec:
  """The spec of scheme `name`.

  Raises:
    ValueError: naming the unknown scheme and the registered ones.
  """
  if name not in REGISTRY:
    raise ValueError(f"Unknown item representation {name!r}; registered: {names()}")
  return REGISTRY[name]


def names() -> Tuple[str, ...]:
  """Every registered scheme, in registration order."""
  return tuple(REGISTRY)


def sid_scheme_names() -> Tuple[str, ...]:
  return tuple(s.name for s in REGISTRY.values() if s.is_sid_scheme)


def comparison_names() -> Tuple[str, ...]:
  """The schemes an experiment compares by default: every one with an item feature."""
  return tuple(n for n in REGISTRY if n != NONE)


def create(
  config: ItemRepresentationConfig,
  *,
  sid_encoder: Optional[tf.keras.layers.Layer] = None,
  spm_model_proto: Optional[bytes] = None,
  name: Optional[str] = None,
) -> Optional[item_representation.ItemRepresentation]:
  """Builds the representation `config` describes.

  Args:
    config: ItemRepresentationConfig.
    sid_encoder: Optional layer, codes int32[B, L] from content float32[B, D] (`SemanticIdEncoder`);
      required by schemes with `uses_sid`. Needs attributes `num_levels` and `codebook_size`.
    spm_model_proto: Optional bytes. The SentencePiece model; required when `spm_budget(config)` is
      not None.
    name: Optional layer name. Defaults to "<scheme>_item".

  Returns:
    The layer, or None for a scheme without item feature (`none`).

  Raises:
    ValueError: if a scheme's dependency is missing.
  """
  spec = config.spec
  if spec.uses_sid and sid_encoder is None:
    raise ValueError(
      f"Scheme {spec.name!r} needs a `sid_encoder` (a SemanticIdEncoder). Received None."
    )
  if spec.spm_budget(config) is not None and spm_model_proto is None:
    raise ValueError(
      f"Scheme {spec.name!r} needs `spm_model_proto` (a trained SentencePiece model)."
    )
  return spec.build(config, sid_encoder, spm_model_proto, name or f"{spec.name}_item")


def hybrid_sid_share(config: ItemRepresentationConfig) -> int:
  """The rows `hybrid` offers its SID part (at least 1); the rest, and whatever the SID part cannot
  use, goes to the hash part."""
  hash_rows = int(round(config.table_rows * config.hybrid_hash_fraction))
  return max(1, config.table_rows - hash_rows)


def sid_levels_and_k(sid_encoder: tf.keras.layers.Layer) -> Tuple[int, int]:
  return int(sid_encoder.num_levels), int(sid_encoder.codebook_size)


# ---------------------------------------------------------------------------------------------
# The built-in schemes.


def _build_none(config, sid_encoder, spm_model_proto, name):
  return None


def _build_hash(config, sid_encoder, spm_model_proto, name):
  return hash_item.HashItem(
    num_bins=config.table_rows,
    embedding_dim=config.embedding_dim,
    embeddings_initializer=config.initializer,
    name=name,
  )


def _build_dense(config, sid_encoder, spm_model_proto, name):
  return dense_item.DenseItem(embedding_dim=config.embedding_dim, name=name)


def _sid_builder(make_tokenizer: Callable) -> Builder:
  """A builder of `SidItem` around the tokenizer `make_tokenizer(config, L, K, spm_proto)`."""

  def build(config, sid_encoder, spm_model_proto, name):
    levels, k = sid_levels_and_k(sid_encoder)
    return sid_item.SidItem(
      sid_encoder=sid_encoder,
      tokenizer=make_tokenizer(config, levels, k, spm_model_proto),
      embedding_dim=config.embedding_dim,
      token_dropout=config.token_dropout,
      embeddings_initializer=config.initializer,
      name=name,
    )

  return build


def _ngram_rows(n: int) -> RowsFn:
  def rows(budget: int, num_levels: int, codebook_size: int) -> int:
    return min(budget, sid_ngram.ngram_exact_num_rows(num_levels, codebook_size, n))

  return rows


def _ngram_tokenizer(n: int) -> Callable:
  def make(config, levels, k, spm_model_proto):
    return sid_ngram.SidNgram(
      num_levels=levels,
      codebook_size=k,
      ngram_size=n,
      num_rows=config.table_rows,
    )

  return make


def _prefix_tokenizer(config, levels, k, spm_model_proto):
  return sid_prefix_ngram.SidPrefixNgram(
    num_levels=levels,
    codebook_size=k,
    max_prefix_length=config.max_prefix_length,
    num_rows=config.table_rows,
  )


def _spm_tokenizer(config, levels, k, spm_model_proto):
  return sid_spm.SidSentencePiece(model_proto=spm_model_proto, num_levels=levels, codebook_size=k)


def _spm_rows(budget: int, num_levels: int, codebook_size: int) -> int:
  """An SPM vocabulary holds at least every (level, code) symbol plus <unk>."""
  return max(budget, num_levels * codebook_size + 1)


def _build_hybrid(config, sid_encoder, spm_model_proto, name):
  sid_config = dataclasses.replace(
    config, scheme=config.hybrid_sid_scheme, table_rows=hybrid_sid_share(config)
  )
  sid_part = create(
    sid_config, sid_encoder=sid_encoder, spm_model_proto=spm_model_proto, name="sid_part"
  )
  id_part = hash_item.HashItem(
    num_bins=max(1, config.table_rows - int(sid_part.num_rows)),
    embedding_dim=config.embedding_dim,
    embeddings_initializer=config.initializer,
    name="hash_part",
  )
  return hybrid_item.HybridItem(
    id_part=id_part, sid_part=sid_part, id_dropout=config.id_dropout, name=name
  )


def _hybrid_spm_budget(config: ItemRepresentationConfig) -> Optional[int]:
  if config.hybrid_sid_scheme != SPM:
    return None
  return hybrid_sid_share(config)


for _spec in (
  SchemeSpec(NONE, _build_none, rows=_no_rows, doc="no item feature (the user-only floor)"),
  SchemeSpec(HASH, _build_hash, doc="random-hash item ID (the production baseline)"),
  SchemeSpec(DENSE, _build_dense, rows=_no_rows, doc="content embedding through a projection"),
  SchemeSpec(
    "unigram",
    _sid_builder(_ngram_tokenizer(1)),
    uses_sid=True,
    is_sid_scheme=True,
    rows=_ngram_rows(1),
    doc="one token per (level, code)",
  ),
  SchemeSpec(
    "bigram",
    _sid_builder(_ngram_tokenizer(2)),
    uses_sid=True,
    is_sid_scheme=True,
    rows=_ngram_rows(2),
    doc="non-overlapping code pairs",
  ),
  SchemeSpec(
    "prefix",
    _sid_builder(_prefix_tokenizer),
    uses_sid=True,
    is_sid_scheme=True,
    doc="prefix-ngram: one token per SID prefix",
  ),
  SchemeSpec(
    SPM,
    _sid_builder(_spm_tokenizer),
    uses_sid=True,
    is_sid_scheme=True,
    rows=_spm_rows,
    spm_budget=lambda config: config.table_rows,
    doc="SentencePiece pieces over SIDs",
  ),
  SchemeSpec(
    HYBRID,
    _build_hybrid,
    uses_sid=True,
    spm_budget=_hybrid_spm_budget,
    doc="hash ID + a SID scheme (--hybrid_sid_scheme)",
  ),
):
  register(_spec)
