"""One private-use Unicode character per (level, code) pair, so a semantic ID becomes a string.

SentencePiece works on Unicode text. To let it learn pieces over semantic IDs, each (level, code)
pair is written as its own character: symbol index `i = level * K + code` is mapped to the i-th code
point of the Supplementary Private Use Areas A and B, skipping the two noncharacters at the end of
each plane:

  i in [0, 65534)       -> U+F0000 + i            (plane 15, U+F0000..U+FFFFD)
  i in [65534, 131068)  -> U+100000 + (i - 65534) (plane 16, U+100000..U+10FFFD)

An item's SID string is its L symbols in level order. Because the level is part of every symbol, any
substring of a SID string (and so any SentencePiece piece learned from SID strings) is a run of
consecutive levels in order, and the same code at two levels is two different symbols. `K * L` must
not exceed 131,068 (L=8 x K=2048 = 16,384 fits).

The same mapping is written twice: in NumPy for the trainer (`sid_strings`) and in TensorFlow ops
for the serving graph (`sid_strings_tf`, core ops only).
"""

from typing import List, Sequence, Tuple

import numpy as np
import tensorflow as tf

PLANE_15_START = 0xF0000
PLANE_16_START = 0x100000
PLANE_SIZE = 65534  # U+xFFFE and U+xFFFF are noncharacters, so each plane gives 65,534 symbols.
MAX_SYMBOLS = 2 * PLANE_SIZE  # 131,068


def check_capacity(num_levels: int, codebook_size: int) -> None:
  """Raises ValueError unless `num_levels * codebook_size` symbols fit in the private-use planes.

  Args:
    num_levels: int. L, the number of codes per semantic ID.
    codebook_size: int. K, the number of codes per level.

  Raises:
    ValueError: if an argument is not positive or `L * K` exceeds `MAX_SYMBOLS`.
  """
  if num_levels < 1:
    raise ValueError(f"`num_levels` must be positive. Received: num_levels={num_levels}")
  if codebook_size < 1:
    raise ValueError(f"`codebook_size` must be positive. Received: codebook_size={codebook_size}")
  if num_levels * codebook_size > MAX_SYMBOLS:
    raise ValueError(
      "`num_levels * codebook_size` must be at most "
      f"{MAX_SYMBOLS} (the code points of the Supplementary Private Use Areas A and B). "
      f"Received: num_levels={num_levels}, codebook_size={codebook_size} "
      f"({num_levels * codebook_size} symbols)"
    )


def codepoints(codes: np.ndarray, codebook_size: int) -> np.ndarray:
  """Maps codes int[..., L] to the code points int32[..., L] of their (level, code) symbols."""
  codes = np.asarray(codes, dtype=np.int64)
  num_levels = codes.shape[-1]
  check_capacity(num_levels, codebook_size)
  if codes.size and (codes.min() < 0 or codes.max() >= codebook_size):
    raise ValueError(
      f"codes must lie in [0, {codebook_size}). Received: min={codes.min()}, max={codes.max()}"
    )
  return _index_to_point(np.arange(num_levels, dtype=np.int64) * codebook_size + codes)


def _index_to_point(index: np.ndarray) -> np.ndarray:
  points = np.where(index < PLANE_SIZE, PLANE_15_START + index, PLANE_16_START + index - PLANE_SIZE)
  return points.astype(np.int32)


def symbol(level: int, code: int, codebook_size: int) -> str:
  """The one-character symbol of (`level`, `code`)."""
  if not 0 <= code < codebook_size:
    raise ValueError(f"`code` must lie in [0, {codebook_size}). Received: code={code}")
  index = level * codebook_size + code
  if not 0 <= index < MAX_SYMBOLS:
    raise ValueError(f"(level, code) = ({level}, {code}) has no symbol (index {index}).")
  return chr(PLANE_15_START + index if index < PLANE_SIZE else PLANE_16_START + index - PLANE_SIZE)


def all_symbols(num_levels: int, codebook_size: int) -> str:
  """Every symbol, level-major: the string SentencePiece must keep as single pieces."""
  check_capacity(num_levels, codebook_size)
  return "".join(map(chr, _index_to_point(np.arange(num_levels * codebook_size)).tolist()))


def decode_symbol(char: str, codebook_size: int) -> Tuple[int, int]:
  """Inverse of `symbol`: the (level, code) pair of a one-character symbol.

  Raises:
    ValueError: if `char` is not a SID symbol.
  """
  point = ord(char)
  if PLANE_15_START <= point < PLANE_15_START + PLANE_SIZE:
    index = point - PLANE_15_START
  elif PLANE_16_START <= point < PLANE_16_START + PLANE_SIZE:
    index = point - PLANE_16_START + PLANE_SIZE
  else:
    raise ValueError(f"{char!r} (U+{point:04X}) is not a SID symbol.")
  return divmod(index, codebook_size)


def decode_piece(piece: str, codebook_size: int) -> List[Tuple[int, int]]:
  """The (level, code) pairs of a SentencePiece piece made of SID symbols."""
  return [decode_symbol(char, codebook_size) for char in piece]


def sid_strings(codes: np.ndarray, codebook_size: int) -> List[str]:
  """SID strings of codes int[N, L] (NumPy; for training and analysis)."""
  points = codepoints(np.atleast_2d(codes), codebook_size)
  return ["".join(map(chr, row)) for row in points.tolist()]


def codes_of_string(text: str, codebook_size: int) -> Sequence[int]:
  """Inverse of `sid_strings` for one item: its codes, checking the levels are 0..L-1 in order."""
  pairs = decode_piece(text, codebook_size)
  levels = [level for level, _ in pairs]
  if levels != list(range(len(pairs))):
    raise ValueError(f"Levels out of order in SID string: {levels}")
  return [code for _, code in pairs]


def codepoints_tf(codes: tf.Tensor, codebook_size: int) -> tf.Tensor:
  """TF version of `codepoints`: codes int[B, L] (valid, in [0, K)) -> int32[B, L] code points."""
  num_levels = codes.shape[-1]
  if num_levels is None:
    raise ValueError("The last dimension of `codes` (num_levels) must be static.")
  check_capacity(num_levels, codebook_size)
  codes = tf.cast(codes, tf.int32)
  index = tf.range(num_levels, dtype=tf.int32) * codebook_size + codes
  return tf.where(index < PLANE_SIZE, PLANE_15_START + index, PLANE_16_START + (index - PLANE_SIZE))


def sid_strings_tf(codes: tf.Tensor, codebook_size: int) -> tf.Tensor:
  """TF version of `sid_strings`: codes int[B, L] -> UTF-8 string[B] (core ops; serving-safe)."""
  return tf.strings.unicode_encode(codepoints_tf(codes, codebook_size), output_encoding="UTF-8")
