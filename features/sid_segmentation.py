"""Exact SentencePiece segmentation of semantic IDs in core TensorFlow integer ops (no TF Text).

A SID SentencePiece model (`spm_training`, checked by `sid_spm.check_model_proto`) holds every
(level, code) symbol as its own piece, and every piece is a run of consecutive levels in order. So
an item of L codes has at most L(L+1)/2 candidate pieces, one per span (start level i, end level j),
and segmenting it needs neither strings nor TF Text: look up which spans are pieces, then run the
model's own decoder over the L positions, vectorised over the batch.

Span lookup: a trie with exact integer keys. Keying a whole piece by its codes in mixed radix would
need up to L*log2(K) bits (88 at L=8, K=2048: more than an int64 holds). Instead every prefix of a
piece gets a node id: a piece's node id is its piece id; a prefix that is no piece gets an id from
`vocab_size` on; the empty prefix at level i is the root `root_base + i`. A node's child for the
next code c has the key

  key(child) = node * K + c,

unique because node ids are unique and c < K. Node ids are below 2^31 and K <= 131,068 < 2^17, so
keys stay below 2^48: exact (no hashing, no collision, no overflow) for every (L, K) the SID symbols
allow (L*K <= 131,068; L=8, K=2048 uses 16,384; here also L <= 63) and any model with fewer than
2^31 trie nodes (a trie has at most vocab_size * L). One `tf.lookup.StaticHashTable` maps each key
to the child's node id and the piece's float32 score, packed into one int64:
`node << 32 | float32_bits(score)` (score -inf for a prefix that is no piece). Walking the trie one
level at a time from every start gives all spans in `max_piece_length` rounds of lookups (at most
L(L+1)/2 keys per item); a missing key returns node -1 and score -inf, and the children of -1 have
negative keys (c - K), never present.

Decoders, written to give exactly the ids of `sentencepiece.SentencePieceProcessor.encode`
(sentencepiece 0.2.x, `src/unigram_model.cc` and `src/bpe_model.cc`):

- Unigram (`unigram_viterbi`), as `unigram::Model::EncodeOptimized`, the default encoder: the best
  total score of the first j symbols is max over i < j of best[i] + score(i..j-1), in float32, with
  best[0] = 0. SentencePiece visits start positions in increasing order and replaces the best path
  into j only on a strictly greater float32 total, so among exactly equal totals the smallest start
  (the longest last piece) wins; `UNUSED` pieces are skipped. The path is kept as a bit mask of
  piece ends per position, so no backtracking pass is needed.
- BPE (`bpe_merge`), as `bpe::Model::SampleEncode` without dropout: start from single symbols and
  repeatedly merge the adjacent pair whose concatenation is a piece with the highest score, equal
  scores resolved to the leftmost pair, until no pair is a piece (at most L - 1 rounds).

Both pick "the first maximum" with a max, an equality and a min over positions (`first_max`), exact
on every device (`argmax` leaves the choice among equal values unspecified), and add in float32 as
SentencePiece does: float32(-0.1) + float32(-0.2) == float32(-0.3), a tie float64 would not see.

Models with user-defined pieces, BPE models with `UNUSED` pieces (SentencePiece re-splits those
after merging) and word or char models are refused with a ValueError.
"""

import dataclasses
from typing import Dict, Tuple

import numpy as np
import tensorflow as tf
from sentencepiece import sentencepiece_model_pb2

from features import sid_symbols

UNIGRAM = "unigram"
BPE = "bpe"
_MODEL_TYPES = {
  sentencepiece_model_pb2.TrainerSpec.UNIGRAM: UNIGRAM,
  sentencepiece_model_pb2.TrainerSpec.BPE: BPE,
}
_PIECE = sentencepiece_model_pb2.ModelProto.SentencePiece
MAX_NODES = 2**31 - 1
MAX_LEVELS = 63


@dataclasses.dataclass(frozen=True)
class PieceTrie:
  """The pieces of a SID SentencePiece model as a trie with exact int64 keys (NumPy).

  Attributes:
    model_type: str. `UNIGRAM` or `BPE`.
    num_levels: int. L.
    codebook_size: int. K.
    vocab_size: int. Pieces in the model; node ids below it are piece ids.
    max_piece_length: int. Longest piece, in symbols.
    root_base: int. The root (empty prefix) at level i has node id `root_base + i`.
    keys: int64[E]. `parent * K + code` of every non-root node.
    values: int64[E]. `node << 32 | float32_bits(score)` of the same nodes (score -inf for
      prefixes that are no piece).
  """

  model_type: str
  num_levels: int
  codebook_size: int
  vocab_size: int
  max_piece_length: int
  root_base: int
  keys: np.ndarray
  values: np.ndarray


def build_piece_trie(model_proto: bytes, num_levels: int, codebook_size: int) -> PieceTrie:
  """Builds the trie of a model's pieces over (level, code) symbols.

  Args:
    model_proto: bytes. A serialized SentencePiece `ModelProto` over SID symbols.
    num_levels: int. L.
    codebook_size: int. K.

  Returns:
    The `PieceTrie`.

  Raises:
    ValueError: if L > 63, the model is not unigram or BPE, has user-defined pieces, adds a dummy
      prefix, is BPE with `UNUSED` pieces, has a piece that is no run of consecutive SID levels or
      a score whose sum over L pieces could overflow float32.
  """
  sid_symbols.check_capacity(num_levels, codebook_size)
  if num_levels > MAX_LEVELS:
    raise ValueError(
      f"`num_levels` must be at most {MAX_LEVELS} (the Viterbi path is an int64 bit mask). "
      f"Received: num_levels={num_levels}"
    )
  model = sentencepiece_model_pb2.ModelProto.FromString(model_proto)
  model_type = _check_model(model)
  paths = _piece_paths(model, model_type, num_levels, codebook_size)
  nodes = dict(paths)
  next_id = len(model.pieces)
  for start, codes in paths:
    for length in range(1, len(codes)):
      if (start, codes[:length]) not in nodes:
        nodes[(start, codes[:length])] = next_id
        next_id += 1
  if next_id + num_levels > MAX_NODES:
    raise ValueError(
      f"The model's piece trie has {next_id + num_levels} nodes; at most {MAX_NODES}."
    )
  keys, node_ids, scores = [], [], []
  for (start, codes), node in nodes.items():
    parent = next_id + start if len(codes) == 1 else nodes[(start, codes[:-1])]
    keys.append(parent * codebook_size + codes[-1])
    node_ids.append(node)
    scores.append(model.pieces[node].score if node < len(model.pieces) else -np.inf)
  return PieceTrie(
    model_type=model_type,
    num_levels=num_levels,
    codebook_size=codebook_size,
    vocab_size=len(model.pieces),
    max_piece_length=max(len(codes) for _, codes in paths),
    root_base=next_id,
    keys=np.array(keys, np.int64),
    values=pack(np.array(node_ids, np.int64), np.array(scores, np.float32)),
  )


def _check_model(model: sentencepiece_model_pb2.ModelProto) -> str:
  model_type = model.trainer_spec.model_type
  if model_type not in _MODEL_TYPES:
    name = sentencepiece_model_pb2.TrainerSpec.ModelType.Name(model_type)
    raise ValueError(
      "Only unigram and BPE SentencePiece models can segment SIDs; train with "
      f"model_type=unigram (spm_training.ModelType.UNIGRAM). Received: model_type={name}"
    )
  if model.normalizer_spec.add_dummy_prefix:
    raise ValueError(
      "SID SentencePiece models must not add a dummy prefix (train with add_dummy_prefix=False)."
    )
  user_defined = [p.piece for p in model.pieces if p.type == _PIECE.USER_DEFINED]
  if user_defined:
    raise ValueError(
      f"SID SentencePiece models must have no user-defined pieces. Received: {len(user_defined)}, "
      f"first {user_defined[0]!r}"
    )
  if _MODEL_TYPES[model_type] == BPE and any(p.type == _PIECE.UNUSED for p in model.pieces):
    raise ValueError(
      "BPE models with UNUSED pieces cannot be segmented exactly in the graph (SentencePiece "
      "re-splits them after merging): train with model_type=unigram or keep every piece NORMAL."
    )
  return _MODEL_TYPES[model_type]


def _piece_paths(
  model: sentencepiece_model_pb2.ModelProto, model_type: str, num_levels: int, codebook_size: int
) -> Dict[Tuple[int, Tuple[int, ...]], int]:
  """(start level, codes) -> piece id of every piece the decoder may emit."""
  paths = {}
  for piece_id, piece in enumerate(model.pieces):
    if piece.type != _PIECE.NORMAL:  # UNKNOWN and CONTROL never match; UNUSED (unigram) is skipped.
      continue
    pairs = sid_symbols.decode_piece(piece.piece, codebook_size)
    levels = [level for level, _ in pairs]
    if levels != list(range(levels[0], levels[0] + len(levels))) or levels[-1] >= num_levels:
      raise ValueError(f"Piece {piece_id} is no run of consecutive levels < L: levels {levels}")
    paths[(levels[0], tuple(code for _, code in pairs))] = piece_id
  if not paths:
    raise ValueError("The model has no NORMAL piece.")
  scores = np.array([model.pieces[i].score for i in paths.values()], np.float32)
  if not np.all(np.abs(scores) < np.finfo(np.float32).max / num_levels):
    # Sums of L finite scores must stay finite: -inf marks spans that are no piece.
    raise ValueError(
      f"Piece scores must be finite and below float32 max / L in magnitude. Received: min "
      f"{scores.min()}, max {scores.max()}"
    )
  return paths


def pack(nodes: np.ndarray, scores: np.ndarray) -> np.ndarray:
  """Packs node ids int64[...] (in [-1, 2^31)) and float32 scores into int64 `node << 32 | bits`."""
  bits = np.asarray(scores, np.float32).view(np.uint32).astype(np.int64)
  return (np.asarray(nodes, np.int64) << 32) | bits


# What a key that is no trie node looks up: node -1 (so its children are missing too), score -inf.
MISSING = int(pack(-1, -np.inf))


def unpack(values: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """Inverse of `pack` in TF: int64 values -> (node int64, score float32)."""
  nodes = tf.bitwise.right_shift(values, tf.constant(32, tf.int64))
  bits = tf.cast(tf.bitwise.bitwise_and(values, tf.constant(0xFFFFFFFF, tf.int64)), tf.uint32)
  return nodes, tf.bitcast(bits, tf.float32)


@dataclasses.dataclass(frozen=True)
class SpanLayout:
  """Where each span of levels sits in the columns of the span tensors.

  Spans of n levels (n = 1..max_piece_length) fill consecutive blocks, shortest first: the span of
  levels i..j is column `offsets[j - i] + i`. Spans longer than `max_piece_length` (never a piece)
  all point into one trailing block of L missing entries.

  Attributes:
    num_levels: int. L.
    max_piece_length: int. The longest piece, in levels.

  Example:

  >>> layout = SpanLayout(num_levels=3, max_piece_length=3)
  >>> layout.offsets.tolist(), layout.width
  ([0, 3, 5], 9)
  >>> [int(layout.column(i, j)) for i, j in [(0, 0), (2, 2), (0, 1), (1, 2), (0, 2)]]
  [0, 2, 3, 4, 5]
  """

  num_levels: int
  max_piece_length: int

  @property
  def offsets(self) -> np.ndarray:
    """int64[L]: the first column of the spans of n levels, at index n - 1."""
    widths = [self.num_levels - n + 1 for n in range(1, self.max_piece_length + 1)]
    starts = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    return np.concatenate([starts[:-1], np.full(self.num_levels - len(widths), starts[-1])])

  @property
  def width(self) -> int:
    """Columns: every span of at most `max_piece_length` levels, then the missing block."""
    lengths = range(1, self.max_piece_length + 1)
    return sum(self.num_levels - n + 1 for n in lengths) + self.num_levels

  def column(self, start, end):
    """Column of the span start..end (ints, arrays or int64 tensors)."""
    if isinstance(start, tf.Tensor) or isinstance(end, tf.Tensor):
      return tf.gather(tf.constant(self.offsets), end - start) + start
    return self.offsets[np.asarray(end) - np.asarray(start)] + np.asarray(start)


def span_values(
  table: tf.lookup.StaticHashTable, codes: tf.Tensor, trie: PieceTrie
) -> Tuple[tf.Tensor, tf.Tensor]:
  """Trie node and score of every span: codes int64[B, L] -> (int64[B, C], float32[B, C]).

  Column `SpanLayout(L, trie.max_piece_length).column(i, j)` describes levels i..j: its node (a
  piece id when below `vocab_size`, -1 when the span is no trie node) and its piece score (-inf
  when it is no piece).
  """
  num_levels, k = trie.num_levels, trie.codebook_size
  parents = trie.root_base + tf.range(num_levels, dtype=tf.int64)[tf.newaxis, :]
  by_length = []  # by_length[n - 1][:, i]: the span of n levels starting at level i.
  for length in range(1, trie.max_piece_length + 1):
    by_length.append(
      table.lookup(parents[:, : num_levels - length + 1] * k + codes[:, length - 1 :])
    )
    parents = tf.bitwise.right_shift(by_length[-1], tf.constant(32, tf.int64))
  missing = tf.fill([tf.shape(codes)[0], num_levels], tf.constant(MISSING, tf.int64))
  return unpack(tf.concat(by_length + [missing], axis=1))


def unigram_viterbi(
  nodes: tf.Tensor, scores: tf.Tensor, layout: SpanLayout
) -> Tuple[tf.Tensor, tf.Tensor]:
  """Unigram Viterbi over spans, breaking ties as SentencePiece's optimized encoder does.

  Args:
    nodes: int64[B, C]. Span nodes as `span_values` gives them (piece ids where scores are finite).
    scores: float32[B, C]. Finite piece scores (log probabilities), -inf where a span is no piece;
      every single level must be a piece.
    layout: SpanLayout. The columns of the spans.

  Returns:
    (is_end bool[B, L], ids int64[B, L]): whether level j ends a piece of the best path, and the id
    of the best last piece ending at level j.
  """
  num_levels = layout.num_levels
  # Scores by end level (rows) and start level (columns, -inf past the end): one gather.
  totals = tf.reshape(tf.gather(scores, _by_end(layout), axis=1), [-1, num_levels, num_levels])
  best = tf.zeros_like(scores[:, :1])  # best[:, j]: best total of levels 0..j-1.
  paths = tf.zeros_like(nodes[:, :1])  # paths[:, j]: bit e set when level e ends one of its pieces.
  starts = []
  for end in range(num_levels):
    top, start = first_max(best + totals[:, end, : end + 1])  # A tie goes to the smallest start.
    best = tf.concat([best, top], axis=1)
    previous = tf.gather(paths, start, batch_dims=1)
    paths = tf.concat([paths, tf.bitwise.bitwise_or(previous, 1 << end)], axis=1)
    starts.append(start)
  starts = tf.concat(starts, axis=1)
  ids = tf.gather(nodes, layout.column(starts, tf.range(num_levels, dtype=tf.int64)), batch_dims=1)
  bits = tf.bitwise.left_shift(tf.constant(1, tf.int64), tf.range(num_levels, dtype=tf.int64))
  is_end = tf.not_equal(tf.bitwise.bitwise_and(paths[:, -1:], bits[None, :]), 0)
  return is_end, ids


def first_max(values: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """Row maxima of float32[B, n] and the first column holding each (both [B, 1]; int64 index).

  Exact on every device: a max, an equality and a min over column numbers (unlike `argmax`,
  whose choice among equal values is unspecified).
  """
  top = tf.reduce_max(values, axis=1, keepdims=True)
  columns = tf.range(values.shape[1], dtype=tf.int64)
  index = tf.reduce_min(tf.where(tf.equal(values, top), columns, values.shape[1]), 1, keepdims=True)
  return top, index


def _by_end(layout: SpanLayout) -> np.ndarray:
  """int64[L * L]: at [j * L + i] the column of the span i..j, a missing column where i > j."""
  num_levels, missing = layout.num_levels, layout.width - 1
  return np.array(
    [
      layout.column(i, j) if i <= j else missing
      for j in range(num_levels)
      for i in range(num_levels)
    ],
    np.int64,
  )


def bpe_merge(
  nodes: tf.Tensor, scores: tf.Tensor, layout: SpanLayout
) -> Tuple[tf.Tensor, tf.Tensor]:
  """SentencePiece BPE over spans: merge the best-scored adjacent pair, leftmost on ties, repeat.

  Args:
    nodes: int64[B, C]. Span nodes as `span_values` gives them (piece ids where scores are finite).
    scores: float32[B, C]. Finite piece scores, -inf where a span is no piece.
    layout: SpanLayout. The columns of the spans.

  Returns:
    (is_end bool[B, L], ids int64[B, L]) as in `unigram_viterbi` (ids only meaningful at ends).
  """
  num_levels = layout.num_levels
  levels = tf.range(num_levels, dtype=tf.int64)[None, :]
  # The segment holding level l spans levels first[:, l] .. last[:, l] (inclusive).
  first = tf.tile(levels, [tf.shape(nodes)[0], 1])
  last = first
  for _ in range(num_levels - 1):
    # Boundary b (1..L-1), open when first[:, b] == b, would merge first[:, b-1] .. last[:, b].
    left, right = first[:, :-1], last[:, 1:]
    merged = tf.gather(scores, layout.column(left, right), batch_dims=1)
    merged = tf.where(tf.equal(first[:, 1:], levels[:, 1:]), merged, -np.inf)
    top, at = first_max(merged)  # A tie goes to the leftmost pair.
    new_first = tf.gather(left, at, batch_dims=1)
    new_last = tf.gather(right, at, batch_dims=1)
    inside = tf.logical_and(levels >= new_first, levels <= new_last)
    inside = tf.logical_and(inside, top > -np.inf)  # No pair forms a piece: nothing merges.
    first = tf.where(inside, new_first, first)
    last = tf.where(inside, new_last, last)
  ids = tf.gather(nodes, layout.column(first, levels), batch_dims=1)
  return tf.equal(last, levels), ids


class SidPieceSegmenter(tf.Module):
  """Segments SIDs into piece ids with a `PieceTrie` held in a `StaticHashTable` (core TF only).

  Args:
    trie: PieceTrie. From `build_piece_trie`.
    name: str or None. Module name.

  Call arguments:
    codes: int64[B, L] semantic IDs, each code in [0, K) (checked by the caller).

  Returns:
    tf.RaggedTensor int64 [B, (pieces)] of piece ids, 1 to L per item, in level order.
  """

  def __init__(self, trie: PieceTrie, name: str = None):
    super().__init__(name=name)
    self.trie = trie
    self.table = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(
        tf.constant(trie.keys, tf.int64), tf.constant(trie.values, tf.int64)
      ),
      default_value=tf.constant(MISSING, tf.int64),
      name="sid_piece_trie",
    )
    self.layout = SpanLayout(trie.num_levels, trie.max_piece_length)

  def __call__(self, codes: tf.Tensor) -> tf.RaggedTensor:
    nodes, scores = span_values(self.table, tf.cast(codes, tf.int64), self.trie)
    decode = unigram_viterbi if self.trie.model_type == UNIGRAM else bpe_merge
    is_end, ids = decode(nodes, scores, self.layout)
    return tf.ragged.boolean_mask(ids, is_end)
