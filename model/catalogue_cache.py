"""Known catalogue items' subword tokens inside the serving graph, found by a row match.

The RQ-VAE is frozen and the tokenizers are deterministic, so once the catalogue is known (at export
time) every catalogue item's SID and subword tokens are fixed. A `CatalogueCache` holds them as
constants of the exported graph: a served content embedding (or SID) that is a catalogue row gets
its tokens from one table lookup and two gathers instead of the nearest-code search (and the
tokenizer); any other row goes through the encoder and tokenizer as before, and only those rows.

Lookup of a batch of rows (float32 content embeddings [B, D] or integer codes [B, L]), per row:
  1. key: the row's 32-bit words (float32 bit patterns; integers modulo 2^32) times two fixed
     columns of odd int32 multipliers, summed modulo 2^32 (one int32 `MatMul`, about half the time
     of an int64 one), the two sums read as one int64 (`Bitcast`, in the machine's byte order, as
     NumPy's `view` at export: an export served on a machine of the other byte order only misses);
  2. key -> catalogue row index, a `tf.lookup.StaticHashTable` (a tracked resource);
  3. collision guard, one of two (`MATCHES`):
     - "exact" (`ExactRowIndex`): the stored catalogue row at that index must have the same int64
       words (two float32 bit patterns per word; integers widened exactly), so a key collision can
       only turn a hit into a miss, never into wrong tokens. It reads and compares the whole row
       (D * 4 bytes per served row) and stores the catalogue's rows in the graph.
     - "fingerprint" (`FingerprintRowIndex`): the stored 64-bit FarmHash fingerprint of the row's
       bytes (`tf.fingerprint`) must equal the served row's. The linear key and FarmHash are
       independent, so a row that is not in the catalogue is taken for one only if both its
       64-bit key and its 64-bit FarmHash collide with that row's: for rows that are not built to
       collide, about N * 2^-128 per served row; for rows that collide in the linear key by
       construction (two sign flips, see below), 2^-64. It reads the row once more (FarmHash)
       but compares 8 bytes per row, and stores 8 bytes per catalogue row instead of D * 4.
     The table keeps the first catalogue row of each key: a duplicate row finds it (same tokens), a
     different row with the same key always misses. (The key is linear: two rows that differ in
     exactly two sign bits have the same key, since 2 * 2^31 = 0 modulo 2^32.)

Everything is core TF (`Bitcast`, `MatMul`, `LookupTableFindV2`, `GatherV2`, `Equal`, `All`,
`Fingerprint`), so stock TF Serving loads it; the stored data are constants of the graph
(saved_model.pb grows by N * D * 4 bytes for exact content rows, N * 8 for fingerprints), not
weights: checkpoints do not change.
"""

from typing import Callable, Optional, Tuple

import numpy as np
import tensorflow as tf

FINGERPRINT_SEED = 20_240_607
MAX_CACHED_BYTES = 1 << 30  # Graph constants live in saved_model.pb, a protobuf (2 GiB at most).


def multipliers(width: int) -> np.ndarray:
  """The fixed odd multipliers uint32[width, 2] of the fingerprint of rows of `width` words."""
  rng = np.random.default_rng(FINGERPRINT_SEED + width)
  return (rng.integers(0, 2**32, size=(width, 2), dtype=np.uint64) | 1).astype(np.uint32)


def words(rows: tf.Tensor) -> tf.Tensor:
  """int64[B, W] words of `rows` [B, D]: float32 bit patterns two per word (W = D / 2; one per
  word for odd D), integers widened (W = D). Equal words mean bit-identical rows."""
  if rows.dtype != tf.float32:
    return tf.cast(rows, tf.int64)
  bits = tf.bitcast(rows, tf.int32)
  width = rows.shape[-1]
  if width is None or width % 2:
    return tf.cast(bits, tf.int64)
  return tf.bitcast(tf.reshape(bits, [-1, width // 2, 2]), tf.int64)


def numpy_words(rows: np.ndarray) -> np.ndarray:
  """`words` in NumPy: int64[N, W]."""
  rows = np.ascontiguousarray(rows)
  if rows.dtype != np.float32:
    return rows.astype(np.int64)
  if rows.shape[1] % 2:
    return rows.view(np.int32).astype(np.int64)
  return rows.view(np.int64)  # Little-endian pairs, as `tf.bitcast` of [..., 2] int32.


def fingerprints(rows: tf.Tensor, factors: tf.Tensor) -> tf.Tensor:
  """int64[B] fingerprints of `rows` [B, D] (float32 or integer; `factors`: `multipliers(D)` as
  int32[D, 2])."""
  bits = tf.bitcast(rows, tf.int32) if rows.dtype == tf.float32 else tf.cast(rows, tf.int32)
  sums = tf.matmul(bits, factors)  # int32: wraps modulo 2^32.
  return tf.bitcast(sums, tf.int64)  # The two sums as one word, in the machine's byte order.


def numpy_fingerprints(rows: np.ndarray) -> np.ndarray:
  """`fingerprints` in NumPy (uint32 arithmetic, wrapping by definition): int64[N]."""
  rows = np.ascontiguousarray(rows)
  bits = (
    rows.view(np.uint32) if rows.dtype == np.float32 else rows.astype(np.int64).astype(np.uint32)
  )
  factors = multipliers(rows.shape[1])
  sums = np.zeros((len(rows), 2), np.uint32)
  with np.errstate(over="ignore"):
    for start in range(0, len(rows), 8192):  # Bounded memory for the [chunk, D, 2] products.
      chunk = bits[start : start + 8192, :, None] * factors[None, :, :]
      sums[start : start + 8192] = chunk.sum(axis=1, dtype=np.uint32)
  return sums.view(np.int64)[:, 0]  # As `tf.bitcast` of the [N, 2] sums.


class RowIndex(tf.Module):
  """Lookup of rows in a fixed table of rows, each with a value row (see the module doc): the
  linear key and its `StaticHashTable`; a subclass is one collision guard (`MATCHES`).

  Subclasses set `match` (the guard's name) and implement `guard_of_rows` (what the guard stores
  per catalogue row), `guard_bytes` (its bytes per row) and `same` (served rows against the
  gathered stored guard).

  Args:
    rows: float32 or integer [N, W]. The catalogue's rows (content embeddings or codes).
    values: [N, ...]. What a row maps to (its padded subword tokens).
    name: str. Module name.

  Call arguments:
    inputs: [B, W], the dtype of `rows` (integers of any width for integer rows).

  Returns:
    `(hit bool[B], values [B, ...])`; where `hit` is False the value is that of some catalogue row
    and must be replaced by the caller.

  Raises:
    ValueError: if `rows` is not 2-D, holds no row, or `values` has another number of rows.
  """

  match: str = ""

  def __init__(self, rows: np.ndarray, values: np.ndarray, name: str = "row_index"):
    super().__init__(name=name)
    rows, values = np.asarray(rows), np.asarray(values)
    if rows.ndim != 2 or not len(rows) or len(values) != len(rows):
      raise ValueError(
        "`rows` must be [N, W] with N >= 1 and `values` [N, ...]. Received: "
        f"rows {rows.shape}, values {values.shape}"
      )
    if rows.dtype != np.float32 and not np.issubdtype(rows.dtype, np.integer):
      raise ValueError(f"`rows` must be float32 or integers. Received: dtype={rows.dtype}")
    keys = numpy_fingerprints(rows)
    _, first = np.unique(keys, return_index=True)  # One row per fingerprint (module docstring).
    first = np.sort(first)
    self.width = rows.shape[1]
    self.dtype = tf.as_dtype(rows.dtype)
    self.num_rows = len(first)
    self.guard = tf.constant(self.guard_of_rows(rows[first]))
    self.values = tf.constant(values[first])
    self.factors = tf.constant(multipliers(self.width).view(np.int32))
    self.table = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(
        tf.constant(keys[first]), tf.range(self.num_rows, dtype=tf.int64)
      ),
      default_value=tf.constant(-1, tf.int64),
      name=f"{name}_table",
    )

  @staticmethod
  def guard_of_rows(rows: np.ndarray) -> np.ndarray:
    """What the guard stores per catalogue row of `rows` [N, W]: [N, ...]."""
    raise NotImplementedError

  @staticmethod
  def guard_bytes(rows: np.ndarray) -> int:
    """Bytes `guard_of_rows` stores per row of `rows` [N, D], without computing it."""
    raise NotImplementedError

  def same(self, stored: tf.Tensor, inputs: tf.Tensor) -> tf.Tensor:
    """bool[B]: the served rows `inputs` pass the guard of the gathered `stored` guard rows."""
    raise NotImplementedError

  def find(self, inputs: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """`(hit bool[B], row int64[B])`: the stored row matching each input (any row where `hit`
    is False). Rows index `values` and anything else aligned with them (`SidItem`'s vectors)."""
    with tf.name_scope(self.name):
      found = self.table.lookup(fingerprints(inputs, self.factors))
      row = tf.maximum(found, 0)
      same = self.same(tf.gather(self.guard, row), inputs)
      return tf.logical_and(found >= 0, same), row

  def __call__(self, inputs: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    hit, row = self.find(inputs)
    with tf.name_scope(self.name):
      return hit, tf.gather(self.values, row)


class ExactRowIndex(RowIndex):
  """A `RowIndex` whose guard compares the whole row (the "exact" match of the module docstring:
  a key collision can only turn a hit into a miss). Same arguments, call and results."""

  match = "exact"

  def __init__(self, rows: np.ndarray, values: np.ndarray, name: str = "exact_row_index"):
    super().__init__(rows, values, name=name)

  @staticmethod
  def guard_of_rows(rows: np.ndarray) -> np.ndarray:
    """The rows' int64 words [N, W] (`numpy_words`)."""
    return numpy_words(rows)

  @staticmethod
  def guard_bytes(rows: np.ndarray) -> int:
    width = rows.shape[1]
    return 8 * (width // 2 if rows.dtype == np.float32 and width % 2 == 0 else width)

  def same(self, stored: tf.Tensor, inputs: tf.Tensor) -> tf.Tensor:
    return tf.reduce_all(tf.equal(stored, words(inputs)), axis=1)


class FingerprintRowIndex(RowIndex):
  """A `RowIndex` whose guard compares 64-bit FarmHash fingerprints of the rows' bytes
  (`tf.fingerprint`) instead of the rows (the "fingerprint" match of the module docstring: a row
  outside the catalogue hits with probability about N * 2^-128, at most 2^-64). Same arguments,
  call and results, for float32 rows only (content embeddings: integer SIDs are short, and the
  exact guard reads them as cheaply).

  Raises:
    ValueError: as `RowIndex`, and if `rows` are not float32.
  """

  match = "fingerprint"

  def __init__(self, rows: np.ndarray, values: np.ndarray, name: str = "fingerprint_row_index"):
    if np.asarray(rows).dtype != np.float32:
      raise ValueError(
        f"A FingerprintRowIndex takes float32 rows. Received: dtype={np.asarray(rows).dtype}"
      )
    super().__init__(rows, values, name=name)

  @staticmethod
  def guard_of_rows(rows: np.ndarray) -> np.ndarray:
    """uint8[N, 8]: each row's `tf.fingerprint` (the same op the graph runs on served rows)."""
    return tf.fingerprint(tf.constant(rows)).numpy()

  @staticmethod
  def guard_bytes(rows: np.ndarray) -> int:
    del rows  # One 64-bit fingerprint per row, whatever its width.
    return 8

  def same(self, stored: tf.Tensor, inputs: tf.Tensor) -> tf.Tensor:
    served = tf.fingerprint(inputs)
    return tf.equal(tf.bitcast(stored, tf.int64), tf.bitcast(served, tf.int64))


MATCHES = {index.match: index for index in (ExactRowIndex, FingerprintRowIndex)}
DEFAULT_MATCH = "fingerprint"


def merge_misses(
  hit: tf.Tensor, cached: tf.Tensor, inputs: tf.Tensor, compute: Callable[[tf.Tensor], tf.Tensor]
) -> tf.Tensor:
  """`cached` [B, ...] with the rows where `hit` [B] is False replaced by `compute` of those rows
  of `inputs` only. Every row a hit: `compute` does not run; no row a hit (a request of new
  items): it runs on `inputs` as they are, with nothing gathered or scattered; otherwise on the
  gathered misses (`GatherV2` of whole rows), scattered back over `cached`."""

  def some_misses():
    misses = tf.where(tf.logical_not(hit))[:, 0]
    fresh = compute(tf.gather(inputs, misses))
    return tf.tensor_scatter_nd_update(cached, misses[:, None], tf.cast(fresh, cached.dtype))

  def misses():
    return tf.cond(tf.reduce_any(hit), some_misses, lambda: tf.cast(compute(inputs), cached.dtype))

  return tf.cond(tf.reduce_all(hit), lambda: tf.identity(cached), misses)


class CatalogueCache(tf.Module):
  """The catalogue's padded subword tokens, keyed by content embedding and/or by SID.

  Args:
    embeddings: Optional float32[N, D]. The items' content embeddings; None: no content index.
    embedding_tokens: Optional int64[N, T]. Their padded tokens (-1 = no token).
    codes: Optional int[M, L]. SIDs; None: no SID index (a tabulated SID space needs none:
      `model.sid_item.TokenTable` is exact and cheaper).
    code_tokens: Optional int64[M, T]. Their padded tokens.
    vector_dim: int. Width of the float32 vector an export also stores per cached row (the
      pooled item vector, `model.sid_item.frozen_vectors`); counted in the size limit. Defaults
      to 0.
    match: str. The content index's guard, a key of `MATCHES` (module docstring): "fingerprint"
      (FarmHash, 8 bytes per row; the default) or "exact" (the whole row). The SID index is
      always exact.
    name: str. Module name.

  Attributes:
    content_index: `MATCHES[match]` or None.
    codes_index: `ExactRowIndex` or None.
    match: str. The content index's guard.

  Raises:
    ValueError: if neither index is given, rows and tokens disagree, `match` is unknown, or the
      stored rows would exceed `MAX_CACHED_BYTES`.
  """

  def __init__(
    self,
    embeddings: Optional[np.ndarray] = None,
    embedding_tokens: Optional[np.ndarray] = None,
    codes: Optional[np.ndarray] = None,
    code_tokens: Optional[np.ndarray] = None,
    vector_dim: int = 0,
    match: str = DEFAULT_MATCH,
    name: str = "catalogue_cache",
  ):
    super().__init__(name=name)
    pairs = {"content_index": (embeddings, embedding_tokens), "codes_index": (codes, code_tokens)}
    if all(rows is None for rows, _ in pairs.values()):
      raise ValueError("A CatalogueCache needs `embeddings`, `codes` or both. Received neither.")
    if match not in MATCHES:
      raise ValueError(f"`match` must be one of {sorted(MATCHES)}. Received: match={match!r}")
    classes = {"content_index": MATCHES[match], "codes_index": ExactRowIndex}
    self.match = match
    given, total = {}, 0
    for kind, (rows, tokens) in pairs.items():
      if (rows is None) != (tokens is None):
        raise ValueError("Each of `embeddings` and `codes` needs its tokens, and only then.")
      if rows is not None:
        rows = np.asarray(rows, np.float32 if kind == "content_index" else np.int32)
        tokens = np.asarray(tokens, np.int64)
        per_row = 8 + 8 + classes[kind].guard_bytes(rows) + int(vector_dim) * 4
        total += len(rows) * per_row + tokens.size * 4  # Key, row id, guard, vector; tokens.
        given[kind] = rows, tokens
    if total > MAX_CACHED_BYTES:
      raise ValueError(
        f"The catalogue cache would hold {total / 2**20:.0f} MiB of graph constants; at most "
        f"{MAX_CACHED_BYTES / 2**20:.0f} MiB fit a SavedModel. Cache fewer items."
      )
    for kind in pairs:
      rows, tokens = given.get(kind, (None, None))
      index = None if rows is None else classes[kind](rows, _narrow(tokens), name=kind)
      setattr(self, kind, index)

  def tokens(
    self,
    index: RowIndex,
    inputs: tf.Tensor,
    compute: Callable[[tf.Tensor], tf.Tensor],
  ) -> tf.Tensor:
    """Padded tokens int64[B, T] of `inputs`: cached for catalogue rows, `compute` for the rest."""
    hit, cached = index(inputs)
    return merge_misses(hit, tf.cast(cached, tf.int64), inputs, compute)


def _narrow(tokens: np.ndarray) -> np.ndarray:
  """Token ids as int32 when they fit (half the bytes in the export), else as they are."""
  if tokens.size and (tokens.max() >= 2**31 or tokens.min() < -(2**31)):
    return tokens
  return tokens.astype(np.int32)
