"""Semantic-ID item representation: content -> SID codes -> subword tokens -> sum-pooled embeddings.

All of it runs in the graph, so a served model takes the raw content embedding:
  1. `SemanticIdEncoder` (frozen RQ-VAE encoder + quantizer): float32[B, D] -> codes int32[B, L];
  2. a subword layer (n-gram, prefix-ngram or SentencePiece): codes -> token ids, padded to
     int64[B, T] with -1 (T = `max_tokens`, at most L for every built-in tokenizer);
  3. one embedding table of `tokenizer.num_rows` rows; the item vector is the SUM of its tokens'
     rows.
Unigram, bigram, prefix-ngram and SPM are configurations of this one class: `model.schemes` picks
the tokenizer of each scheme.

The encoder is frozen and the tokenizers are deterministic, so steps 1 and 2 can also run ahead of
time. A `SidItem` reads one of three inputs (`sid_input`), all named in `features.feature_spec`:

| `sid_input`         | reads                           | in the graph          | used by         |
|---------------------|---------------------------------|-----------------------|-----------------|
| `content_embedding` | float32[B, D]                   | encoder, tokens, pool | serving_default |
| `codes`             | int32[B, L], from `semantic_id` | tokens, pool          | predict_codes   |
| `sid_tokens`        | int64[B, T], `catalogue_inputs` | pool                  | training        |

`feature_keys` follows `sid_input`, so the ranker's inputs and the user tower's history inputs
(`history_<key>`) follow it too; `reading(representation, key)` switches every `SidItem` inside a
representation (a `HybridItem`'s SID part too) for a block, `use_inputs` for good. `sid_input` is
a runtime choice, not part of the config: a reloaded ranker always reads content embeddings. Every
path pools the same padded tokens the same way, so their predictions agree exactly.

A small SID space (K^L <= `MAX_TABULATED_SIDS`, e.g. the experiments' L=3, K=64) is tabulated at
construction: every SID's tokens, packed into one int64, in a `tf.lookup.StaticHashTable` keyed by
the SID's mixed-radix index (`TokenTable`). In the graph, tokenizing is then one lookup instead of
the tokenizer's ops (about 115 for the SentencePiece segmentation), with the same result; at the
paper's scale (2048^8 SIDs) the tokenizer runs.

A known catalogue can be cached in the graph too (`cache_catalogue`, for an export; off by
default): a `model.catalogue_cache.CatalogueCache` maps each catalogue item's content embedding
(and, for an untabulated SID space, its SID) to its tokens by a row match (a FarmHash fingerprint
by default, or the exact row; SIDs always exactly), so a catalogue item skips the nearest-code
search (and the tokenizer); other rows, and only those, take the path above. Like `sid_input` it
is a runtime choice, not part of the config or the checkpoint.
"""

import contextlib
from typing import Any, Dict, Iterator, List, Mapping, Optional

import numpy as np
import tensorflow as tf

from features import feature_spec
from model import catalogue_cache as catalogue_cache_lib
from model import item_representation

CONTENT = feature_spec.CONTENT_EMBEDDING
CODES = feature_spec.CODES
TOKENS = feature_spec.SID_TOKENS
SID_INPUTS = (CONTENT, CODES, TOKENS)
PAD_TOKEN = -1
MAX_TABULATED_SIDS = 2**18


def sum_pool_padded(table: tf.Tensor, tokens: tf.Tensor) -> tf.Tensor:
  """Sums the rows of `table` named by `tokens` int64[B, T], skipping -1: float[B, dim].

  One `SparseSegmentSum` over the valid tokens (their row as the segment, both from one `Where`):
  no [B, T, dim] intermediate and no mask multiply. Its gradient is dense, [num_rows, dim]
  (`sparse_gradient` off): Keras' Adam decays every row's moments and updates every row on each
  step even for an `IndexedSlices` gradient, so a dense one adds no work there and saves the
  scatter of B x T x (1 + H) gathered rows per step, the main cost of a SID training step over a
  hash one.
  A table split across parameter servers (a `ShardedVariable`, not a `tf.Variable`) is read with
  `tf.nn.embedding_lookup` of the distinct tokens instead, which reads each shard where it lives
  and sends only those rows' gradients back.
  """
  tokens = tf.convert_to_tensor(tokens)
  where = tf.where(tokens >= 0)  # int64[n, 2] (row, position) of the valid tokens, row-major.
  ids = tf.gather_nd(tokens, where)
  segments = where[:, 0]  # Sorted, as SparseSegmentSum needs.
  data = table
  if not isinstance(table, (tf.Variable, tf.Tensor)):
    ids, index = tf.unique(ids)
    data, ids = tf.nn.embedding_lookup(table, ids), index
  return tf.sparse.segment_sum(data, ids, segments, num_segments=tf.shape(tokens)[0])


def drop_tokens(
  tokens: tf.RaggedTensor, rate: float, seed: Optional[int] = None
) -> tf.RaggedTensor:
  """Drops each token but the first of its row with probability `rate` (training-time
  regulariser)."""
  position = tf.range(tf.size(tokens.flat_values, out_type=tf.int64)) - tf.gather(
    tokens.row_starts(), tokens.value_rowids()
  )
  keep = (position == 0) | (tf.random.uniform(tf.shape(position), seed=seed) >= rate)
  return tf.ragged.boolean_mask(tokens, tokens.with_flat_values(keep))


def drop_padded_tokens(tokens: tf.Tensor, rate: float, seed: Optional[int] = None) -> tf.Tensor:
  """`drop_tokens` for tokens int64[B, T] padded with -1: a dropped token becomes -1."""
  first = tf.range(tf.shape(tokens)[1])[tf.newaxis, :] == 0
  keep = first | (tf.random.uniform(tf.shape(tokens), seed=seed) >= rate)
  return tf.where(keep, tokens, tf.fill(tf.shape(tokens), tf.constant(PAD_TOKEN, tokens.dtype)))


def padded(tokens: tf.RaggedTensor, max_tokens: int) -> tf.Tensor:
  """Ragged token ids -> int64[B, max_tokens], padded with -1.

  Raises:
    tf.errors.InvalidArgumentError: at run time, if a row has more than `max_tokens` tokens.
  """
  tokens = tf.cast(tokens, tf.int64)
  longest = tf.reduce_max(tokens.row_lengths())  # The lowest int64 for an empty batch.
  check = tf.debugging.assert_less_equal(
    longest,
    tf.constant(max_tokens, tf.int64),
    message=f"The tokenizer gave an item more than max_tokens={max_tokens} tokens",
  )
  with tf.control_dependencies([check]):
    return tokens.to_tensor(default_value=PAD_TOKEN, shape=[None, max_tokens])


def sid_index(codes: tf.Tensor, codebook_size: int) -> tf.Tensor:
  """Mixed-radix index of each SID, codes int[B, L] -> int64[B] (c_0 K^(L-1) + ... + c_(L-1))."""
  codes = tf.cast(codes, tf.int64)
  index = codes[:, 0]
  for level in range(1, codes.shape[1]):
    index = index * codebook_size + codes[:, level]
  return index


def checked(codes: tf.Tensor, codebook_size: int, name: str = CODES) -> tf.Tensor:
  """`codes` behind one in-graph check that every code lies in [0, K), naming `name`."""
  codes = tf.convert_to_tensor(codes)
  # An empty batch passes: its min is the largest int and its max the smallest.
  in_range = (tf.reduce_min(codes) >= 0) & (tf.reduce_max(codes) < codebook_size)
  check = tf.debugging.Assert(
    in_range, [f"Every code of `{name}` must lie in [0, codebook_size={codebook_size})"]
  )
  with tf.control_dependencies([check]):
    return tf.identity(codes)


class TokenTable(tf.Module):
  """Every SID's padded tokens under one tokenizer, for a small SID space (see the module doc).

  The T tokens of a SID (each + 1, so -1 padding becomes 0) are packed into one int64, `bits` each,
  in a `tf.lookup.StaticHashTable` from the SID's mixed-radix index: a tracked resource saved in the
  SavedModel, not a weight (it is not in checkpoints and is rebuilt from the tokenizer).

  Args:
    tokens: int64[K^L, T]. The padded tokens of SID index 0, 1, ...; -1 = no token.
    codebook_size: int. K.
    bits: int. Bits per packed token (T * bits <= 63).
  """

  def __init__(self, tokens: np.ndarray, codebook_size: int, bits: int):
    super().__init__(name="token_table")
    self.codebook_size, self.bits, self.max_tokens = codebook_size, bits, tokens.shape[1]
    shifts = np.arange(tokens.shape[1], dtype=np.int64) * bits
    packed = np.bitwise_or.reduce((tokens.astype(np.int64) + 1) << shifts, axis=1)
    self.table = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(
        tf.range(len(tokens), dtype=tf.int64), tf.constant(packed, tf.int64)
      ),
      default_value=tf.constant(0, tf.int64),
      name="sid_token_table",
    )

  @classmethod
  def bits_for(cls, num_rows: int, max_tokens: int):
    """Bits per token for a table of `num_rows` rows, or None when T tokens do not fit 63 bits."""
    bits = max(1, int(num_rows).bit_length())
    return bits if bits * max_tokens <= 63 else None

  def __call__(self, codes: tf.Tensor) -> tf.Tensor:
    """Padded tokens int64[B, T] of valid SIDs int[B, L]."""
    with tf.name_scope("token_table"):
      packed = self.table.lookup(sid_index(codes, self.codebook_size))[:, tf.newaxis]
      shifts = tf.constant(np.arange(self.max_tokens, dtype=np.int64) * self.bits)
      mask = tf.constant((1 << self.bits) - 1, tf.int64)
      return tf.bitwise.bitwise_and(tf.bitwise.right_shift(packed, shifts), mask) - 1


@tf.keras.utils.register_keras_serializable(package="semantic_ids")
class SidItem(item_representation.ItemRepresentation):
  """SemanticIdEncoder -> subword layer -> sum-pooled embedding table.

  Args:
    sid_encoder: Keras layer, `call(content float32[B, D]) -> codes int32[B, L]`, with attributes
      `num_levels` and `codebook_size`; frozen (not trained here).
    tokenizer: Keras layer, `call(codes) -> RaggedTensor int64[B, (tokens)]` in [0, num_rows),
      attribute `num_rows`; optional `max_tokens` or (fixed-length tokenizers) `num_tokens`, the
      most tokens of one item, else L.
    embedding_dim: int. Output width. Defaults to 32.
    token_dropout: float. Training-time probability of dropping each token but the first. Defaults
      to 0.
    embeddings_initializer: Keras initializer (identifier, config or object) of the subword table.
      Defaults to RandomNormal(stddev=0.05). "zeros" makes a subword no training example contained
      (a new item's long piece) contribute nothing instead of noise, as when token dropout drops it.
    **kwargs: passed to `tf.keras.layers.Layer`.

  Call arguments:
    features: dict with the input `sid_input` names (see the module docstring): by default
      `content_embedding` float32[B, D]. Precomputed `sid_tokens` or `codes`, when present, are
      used instead of encoding the content.
    training: bool. Enables token dropout.

  Returns:
    float32[B, embedding_dim].
  """

  def __init__(
    self,
    sid_encoder: tf.keras.layers.Layer,
    tokenizer: tf.keras.layers.Layer,
    embedding_dim: int = 32,
    token_dropout: float = 0.0,
    embeddings_initializer=None,
    **kwargs,
  ):
    super().__init__(embedding_dim=embedding_dim, **kwargs)
    if not 0.0 <= token_dropout < 1.0:
      raise ValueError(
        f"`token_dropout` must be in [0, 1). Received: token_dropout={token_dropout}"
      )
    if int(tokenizer.num_rows) <= 0:
      raise ValueError(f"`tokenizer.num_rows` must be positive. Received: {tokenizer.num_rows}")
    self.sid_encoder = sid_encoder
    self.sid_encoder.trainable = False
    self.tokenizer = tokenizer
    self.token_dropout = token_dropout
    self.embeddings_initializer = item_representation.table_initializer(embeddings_initializer)
    self.max_tokens = int(
      getattr(tokenizer, "max_tokens", None)
      or getattr(tokenizer, "num_tokens", None)
      or sid_encoder.num_levels
    )
    self.sid_input = CONTENT
    self.token_table = self._tabulate()
    self.catalogue_cache: Optional[catalogue_cache_lib.CatalogueCache] = None
    self.frozen_vectors: Optional["FrozenVectors"] = None  # Set while an export is traced.

  def _tabulate(self) -> Optional[TokenTable]:
    """The `TokenTable` of a small SID space (K^L <= MAX_TABULATED_SIDS), else None."""
    size = self.codebook_size**self.num_levels
    bits = TokenTable.bits_for(self.num_rows, self.max_tokens)
    if size > MAX_TABULATED_SIDS or bits is None or not tf.executing_eagerly():
      return None
    sids = np.indices([self.codebook_size] * self.num_levels).reshape(self.num_levels, -1).T
    tokenize = tf.function(self._tokenize)
    step = 1 << 18
    tokens = np.concatenate(
      [tokenize(tf.constant(sids[i : i + step], tf.int32)).numpy() for i in range(0, size, step)]
    )
    return TokenTable(tokens, self.codebook_size, bits)

  @property
  def sid_input(self) -> str:
    """The input this layer reads: one of `SID_INPUTS` (see the module docstring)."""
    return self._sid_input

  @sid_input.setter
  def sid_input(self, key: str) -> None:
    if key not in SID_INPUTS:
      raise ValueError(f"`sid_input` must be one of {list(SID_INPUTS)}. Received: {key!r}")
    self._sid_input = key

  @property
  def feature_keys(self):
    return (self.sid_input,)

  @property
  def num_levels(self) -> int:
    return int(self.sid_encoder.num_levels)

  @property
  def codebook_size(self) -> int:
    return int(self.sid_encoder.codebook_size)

  @property
  def num_rows(self) -> int:
    return int(self.tokenizer.num_rows)

  def build(self, input_shape):
    self.table = self.add_weight(
      name="subword_embeddings",
      shape=(self.num_rows, self.embedding_dim),
      initializer=self.embeddings_initializer,
    )
    super().build(input_shape)

  def codes(self, content: tf.Tensor) -> tf.Tensor:
    """The semantic IDs of `content`, int32[B, L]."""
    return self.sid_encoder(tf.cast(content, tf.float32))

  def _tokenize(self, codes: tf.Tensor) -> tf.Tensor:
    """The tokenizer's ids of SIDs int[B, L], int64[B, max_tokens] padded with -1."""
    tokens = self.tokenizer(codes)
    if hasattr(self.tokenizer, "max_tokens") or hasattr(self.tokenizer, "num_tokens"):
      return tf.cast(tokens, tf.int64).to_tensor(
        default_value=PAD_TOKEN, shape=[None, self.max_tokens]
      )
    return padded(tokens, self.max_tokens)  # A bound the tokenizer does not declare: checked.

  def tokens_of_codes(self, codes: tf.Tensor, validated: bool = False) -> tf.Tensor:
    """The subword token ids of SIDs int[B, L], int64[B, max_tokens] padded with -1.

    Args:
      codes: int[B, L].
      validated: bool. The codes are known to lie in [0, K) (the encoder's): skips the range
        check of the tabulated path (the tokenizer checks its own input).
    """
    if self.token_table is None:
      index = self._cache_index(codes, "codes_index")
      if index is not None:  # Catalogue SIDs from the cache, the others through the tokenizer.
        return self.catalogue_cache.tokens(index, codes, self._tokenize)
      return self._tokenize(codes)
    if not validated:
      codes = checked(codes, self.codebook_size)
    return self.token_table(codes)

  def tokens(self, content: tf.Tensor) -> tf.Tensor:
    """The subword token ids of `content`, int64[B, max_tokens] padded with -1."""
    content = tf.cast(content, tf.float32)
    index = self._cache_index(content, "content_index")
    if index is None:
      return self.tokens_of_codes(self.codes(content), validated=True)
    encode = lambda rows: self.tokens_of_codes(self.codes(rows), validated=True)  # noqa: E731
    return self.catalogue_cache.tokens(index, content, encode)

  def _cache_index(self, inputs: tf.Tensor, kind: str):
    """The catalogue cache's `kind` index when it applies to `inputs`, else None (no cache, or a
    shape or dtype the index does not take: the normal path then reports it)."""
    index = getattr(self.catalogue_cache, kind, None) if self.catalogue_cache is not None else None
    if index is None or inputs.shape.rank != 2 or inputs.shape[-1] != index.width:
      return None
    kind_matches = inputs.dtype.is_integer if index.dtype.is_integer else inputs.dtype == tf.float32
    return index if kind_matches else None

  def cache_catalogue(
    self,
    embeddings: Optional[np.ndarray] = None,
    codes: Optional[np.ndarray] = None,
    batch_size: int = 4096,
    match: str = catalogue_cache_lib.DEFAULT_MATCH,
  ) -> Optional[catalogue_cache_lib.CatalogueCache]:
    """Caches known items' tokens in the graph (see the module docstring); no arguments clear it.

    Args:
      embeddings: Optional float[N, D]. The catalogue's content embeddings: a served row equal to
        one of them skips the encoder (and the tokenizer). Adds about N * (D + T) * 4 bytes to an
        export (plus N * (L + T) * 4 for their SIDs when the SID space is not tabulated).
      codes: Optional int[M, L]. More SIDs for the `codes` input (`predict_codes`), beside the
        embeddings' own; used only when the SID space is not tabulated (`token_table` is None).
      batch_size: int. Rows per encoding batch. Defaults to 4096.
      match: str. How a served content embedding is matched to a catalogue row
        (`catalogue_cache.MATCHES`): "fingerprint" (a 64-bit FarmHash of the row, 8 bytes per
        item; the default) or "exact" (the whole row, N * D * 4 bytes).

    Returns:
      The `CatalogueCache` now in use, or None when there is nothing to cache.
    """
    cache = {}
    code_rows, code_tokens = [], []
    if embeddings is not None:
      cache["embeddings"] = np.asarray(embeddings, np.float32)
      computed = self.catalogue_inputs(cache["embeddings"], batch_size)
      cache["embedding_tokens"] = computed[TOKENS]
      code_rows.append(computed[CODES])
      code_tokens.append(computed[TOKENS])
    if codes is not None and len(codes) and self.token_table is None:
      code_rows.append(np.asarray(codes, np.int32))
      tokenize = tf.function(self.tokens_of_codes)
      code_tokens += [
        tokenize(tf.constant(code_rows[-1][i : i + batch_size])).numpy()
        for i in range(0, len(code_rows[-1]), batch_size)
      ]
    if self.token_table is None and code_rows:  # A token table is exact for every SID already.
      cache["codes"], cache["code_tokens"] = np.concatenate(code_rows), np.concatenate(code_tokens)
    self.catalogue_cache = (
      catalogue_cache_lib.CatalogueCache(**cache, vector_dim=self.embedding_dim, match=match)
      if cache
      else None
    )
    return self.catalogue_cache

  def catalogue_inputs(self, embeddings: np.ndarray, batch_size: int = 4096) -> Dict[str, Any]:
    """Every item's precomputed inputs, computed once: {"codes": int32[N, L], "sid_tokens":
    int64[N, T]} for content embeddings float[N, D] (the training cache)."""
    embeddings = np.asarray(embeddings, np.float32)
    if hasattr(self.sid_encoder, "assign_codes"):  # SemanticIdEncoder: the shared SID loop.
      codes = self.sid_encoder.assign_codes(embeddings, batch_size)
    else:
      encode = tf.function(self.codes)
      codes = np.concatenate(
        [
          encode(tf.constant(embeddings[i : i + batch_size])).numpy()
          for i in range(0, len(embeddings), batch_size)
        ]
        or [np.zeros((0, self.num_levels), np.int32)]
      )
    tokenize = tf.function(self.tokens_of_codes)
    parts = [
      tokenize(tf.constant(codes[start : start + batch_size])).numpy()
      for start in range(0, len(codes), batch_size)
    ]
    tokens = np.concatenate(parts) if parts else np.zeros((0, self.max_tokens), np.int64)
    return {CODES: codes.astype(np.int32), TOKENS: tokens.astype(np.int64)}

  def _catalogue_vectors(self, features: Mapping[str, tf.Tensor]) -> Optional[tf.Tensor]:
    """The item vectors of `features` [B, embedding_dim] from `frozen_vectors` (one gather for a
    catalogue row, the full path for the others), or None when no frozen vectors apply."""
    if TOKENS in features:
      return None
    if CODES in features:
      rows, kind = features[CODES], "codes_index"
      compute = self._tokenize  # A codes index exists only for an untabulated SID space.
    else:
      rows, kind = tf.cast(self.select(features)[CONTENT], tf.float32), "content_index"
      compute = lambda content: self.tokens_of_codes(self.codes(content), validated=True)  # noqa: E731
    index = self._cache_index(rows, kind)
    if index is None:
      return None
    vectors = self.frozen_vectors.of(self, index)
    hit, row = index.find(rows)
    with tf.name_scope(index.name):
      cached = tf.gather(vectors, row)
    pool = lambda misses: sum_pool_padded(self.table, compute(misses))  # noqa: E731
    return catalogue_cache_lib.merge_misses(hit, cached, rows, pool)

  def call(self, features: Mapping[str, tf.Tensor], training=None) -> tf.Tensor:
    if not training and self.frozen_vectors is not None:
      vectors = self._catalogue_vectors(features)
      if vectors is not None:
        return vectors
    if TOKENS in features:
      tokens = tf.cast(features[TOKENS], tf.int64)
    elif CODES in features:
      tokens = self.tokens_of_codes(features[CODES])
    else:
      tokens = self.tokens(self.select(features)[CONTENT])
    if training and self.token_dropout > 0.0:
      tokens = drop_padded_tokens(tokens, self.token_dropout)
    return sum_pool_padded(self.table, tokens)

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(
      {
        "sid_encoder": tf.keras.layers.serialize(self.sid_encoder),
        "tokenizer": tf.keras.layers.serialize(self.tokenizer),
        "token_dropout": self.token_dropout,
        "embeddings_initializer": tf.keras.initializers.serialize(self.embeddings_initializer),
      }
    )
    return config

  @classmethod
  def from_config(cls, config: Dict[str, Any]) -> "SidItem":
    config = dict(config)
    config["sid_encoder"] = tf.keras.layers.deserialize(config["sid_encoder"])
    config["tokenizer"] = tf.keras.layers.deserialize(config["tokenizer"])
    return cls(**config)


def sid_items(representation: Optional[tf.Module]) -> List[SidItem]:
  """Every `SidItem` in `representation` (itself, or a `HybridItem`'s SID part); [] for None."""
  if representation is None:
    return []
  if isinstance(representation, SidItem):
    return [representation]
  return [m for m in representation.submodules if isinstance(m, SidItem)]


def use_inputs(representation: Optional[tf.Module], key: str) -> None:
  """Makes every `SidItem` in `representation` read `key` (one of `SID_INPUTS`) from now on."""
  if key not in SID_INPUTS:
    raise ValueError(f"`key` must be one of {list(SID_INPUTS)}. Received: {key!r}")
  for layer in sid_items(representation):
    layer.sid_input = key


@contextlib.contextmanager
def reading(representation: Optional[tf.Module], key: str) -> Iterator[None]:
  """Within the block, every `SidItem` in `representation` reads `key`; restored afterwards.

  Example: trace a ranker that takes precomputed SIDs (`export.export_model` builds
  `predict_codes` so):
    with sid_item.reading(ranker.item_representation, sid_item.CODES):
      specs = ranker.input_specs(content_dim)  # codes, history_codes, ... instead of content
  """
  layers = sid_items(representation)
  previous = [layer.sid_input for layer in layers]
  use_inputs(representation, key)
  try:
    yield
  finally:
    for layer, value in zip(layers, previous):
      layer.sid_input = value


class FrozenVectors:
  """Catalogue items' item vectors as constants of an export's graph.

  A cached catalogue row's vector is the sum of its tokens' rows of the subword table, fixed once
  the weights are. While `tracing()` is entered, every `SidItem` of `representation` that holds a
  `CatalogueCache` (and is not training) serves a row it finds there the stored sum, one
  `GatherV2` of [B, embedding_dim], instead of gathering its tokens and pooling them; other rows
  take the normal path. The sums are computed from the table at trace time, outside the traced
  graph (`tf.init_scope`), so an export holds the vectors of the weights it saves; a retrace
  after the weights changed computes them again (one constant per distinct value, shared by every
  signature traced with the same values). `export.export_model.keras_serving_module` traces its
  signatures so; training and the Keras model never use them.

  Adds N * embedding_dim * 4 bytes per cached index to an export (counted in
  `catalogue_cache.MAX_CACHED_BYTES`).

  Args:
    representation: the item representation (a `SidItem`, a `HybridItem`, or one without a SID
      part: then nothing changes).
  """

  def __init__(self, representation: Optional[tf.Module]):
    self._layers = sid_items(representation)
    self._constants: Dict[tuple, tf.Tensor] = {}

  @contextlib.contextmanager
  def tracing(self) -> Iterator[None]:
    """Within the block, the layers serve cached rows their stored vectors."""
    previous = [layer.frozen_vectors for layer in self._layers]
    for layer in self._layers:
      layer.frozen_vectors = self
    try:
      yield
    finally:
      for layer, value in zip(self._layers, previous):
        layer.frozen_vectors = value

  def of(self, layer: SidItem, index: catalogue_cache_lib.RowIndex) -> tf.Tensor:
    """float32[N, embedding_dim]: the vector of each of `index`'s rows (its `values` pooled in
    `layer`'s table now)."""
    with tf.init_scope():
      values = sum_pool_padded(layer.table, tf.cast(index.values, tf.int64)).numpy()
      key = (id(layer), index.name)
      stored = self._constants.get(key)
      if stored is None or not np.array_equal(stored.numpy(), values):
        stored = self._constants[key] = tf.constant(values)
      return stored


def catalogue_inputs(
  representation: Optional[tf.Module], embeddings: np.ndarray
) -> Dict[str, np.ndarray]:
  """The precomputed inputs of every catalogue item for `representation` (its one SID part):
  {"codes": int32[N, L], "sid_tokens": int64[N, T]}, or {} when it has no SID part.

  Raises:
    ValueError: if the representation holds more than one `SidItem` (their caches would clash).
  """
  layers = sid_items(representation)
  if not layers:
    return {}
  if len(layers) > 1:
    raise ValueError(
      f"Can precompute the inputs of one SidItem only. Received {len(layers)}: "
      f"{[layer.name for layer in layers]}"
    )
  return layers[0].catalogue_inputs(embeddings)


def cache_catalogue(
  representation: Optional[tf.Module],
  embeddings: Optional[np.ndarray] = None,
  codes: Optional[np.ndarray] = None,
  match: str = catalogue_cache_lib.DEFAULT_MATCH,
) -> List[catalogue_cache_lib.CatalogueCache]:
  """`SidItem.cache_catalogue` on every `SidItem` in `representation` (no arguments clear the
  caches); returns the caches now in use. Call it before tracing an export
  (`export.export_model.keras_serving_module`): the caches become constants of its graph.

  Example:
    sid_item.cache_catalogue(ranker.item_representation, dataset.embeddings)
    module = export_model.keras_serving_module(ranker, dataset.embedding_dim, 10_000)
  """
  caches = [
    layer.cache_catalogue(embeddings, codes, match=match) for layer in sid_items(representation)
  ]
  return [cache for cache in caches if cache is not None]
