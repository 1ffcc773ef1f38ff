"""N-gram semantic-ID tokens (Singh et al., RecSys 2024): one token per group of N codes.

The L codes of an item are split into non-overlapping groups of N levels: [0, N), [N, 2N), ... When
N does not divide L, the last group is shorter (L mod N levels), with its own, smaller id range.
Unigram is N=1 (L tokens, L*K rows), bigram is N=2, and N=L gives one token per full SID.

Exact ids. Group g covering levels s..s+n-1 gets the local id `sum_j c[s+j] * K^(n-1-j)` (the first
level is the most significant digit), offset by the sizes of the groups before it, so groups never
share rows:

  exact_id(g) = sum_{h<g} K^{n_h} + local_id(g),   exact rows = sum_g K^{n_g}.

Hashing into a budget. When `num_rows` is smaller than the exact row count, each exact id is hashed
into [0, num_rows) with a Lehmer (MINSTD) multiplicative mix followed by a modulo:

  key = exact_id mod P,  row = ((key * 48271) mod P) mod num_rows,  with P = 2^31 - 1 (a prime).

Keys are computed with Horner's rule modulo P, so nothing overflows int64 whatever K^N is (so N=L
works with K=2048). Multiplying by 48271 permutes [1, P), breaking the structure of the id ranges
before the modulo (without it, groups whose offsets are multiples of `num_rows` would collide on the
same rows). When the exact row count exceeds P, distinct ids can share a key before the budget
modulo; the extra collision rate is about num_rows / P, negligible for any table that fits in
memory. Everything here is a few integer ops per token, so the ids are identical eagerly, in graphs,
in `tf.data` and in TF Serving.

The pure functions (`ngram_groups`, `ngram_exact_num_rows`, `ngram_keys`, `hash_keys`, ...) are
shared with the prefix-ngram layer; `SidNgram` is the thin Keras layer around them.
"""

from typing import List, Optional, Tuple

import tensorflow as tf

HASH_PRIME = 2**31 - 1
HASH_MULTIPLIER = 48271


def ngram_groups(num_levels: int, ngram_size: int) -> List[Tuple[int, int]]:
  """(first level, number of levels) of each group; the last is shorter when N does not divide L."""
  return [
    (start, min(ngram_size, num_levels - start)) for start in range(0, num_levels, ngram_size)
  ]


def ngram_exact_num_rows(num_levels: int, codebook_size: int, ngram_size: int) -> int:
  """Exact n-gram rows: sum over groups of K^(group size) (a Python int; may be huge)."""
  return sum(codebook_size**size for _, size in ngram_groups(num_levels, ngram_size))


def hash_keys(keys: tf.Tensor, num_rows: int) -> tf.Tensor:
  """Hashes keys int64 in [0, P) into [0, num_rows): ((key * 48271) mod (2^31 - 1)) mod num_rows."""
  return tf.math.floormod(tf.math.floormod(keys * HASH_MULTIPLIER, HASH_PRIME), num_rows)


def keys_to_rows(keys: tf.Tensor, exact_num_rows: int, num_rows: int) -> tf.Tensor:
  """Exact ids when they fit in `num_rows` (then keys are the exact ids), hashed ids otherwise."""
  if num_rows >= exact_num_rows:
    return keys
  return hash_keys(keys, num_rows)


def checked_codes(codes: tf.Tensor, num_levels: int, codebook_size: int) -> tf.Tensor:
  """Casts codes [B, L] to int64 and asserts (in the graph) that they lie in [0, K).

  Raises:
    TypeError: if the codes are not integers.
    ValueError: if the static shape is not [batch, num_levels].
    tf.errors.InvalidArgumentError: at run time, if a code is out of range or the last dimension
      is not `num_levels`.
  """
  codes = tf.convert_to_tensor(codes)
  if not codes.dtype.is_integer:
    raise TypeError(f"`codes` must be integers. Received: dtype={codes.dtype.name}")
  if codes.shape.rank != 2 or codes.shape[-1] not in (None, num_levels):
    raise ValueError(
      f"`codes` must have shape [batch, {num_levels}]. Received: shape={codes.shape}"
    )
  codes = tf.ensure_shape(tf.cast(codes, tf.int64), [None, num_levels])
  with tf.control_dependencies(
    [
      tf.debugging.assert_non_negative(codes, message="SID codes must be non-negative"),
      tf.debugging.assert_less(
        codes, tf.constant(codebook_size, tf.int64), message="SID codes must be < codebook_size"
      ),
    ]
  ):
    return tf.identity(codes)


def ngram_keys(codes: tf.Tensor, codebook_size: int, ngram_size: int) -> tf.Tensor:
  """Exact n-gram ids modulo P: codes int64[B, L] -> int64[B, groups]."""
  num_levels = codes.shape[-1]
  keys, offset = [], 0
  for start, size in ngram_groups(num_levels, ngram_size):
    local = tf.zeros_like(codes[:, 0])
    for level in range(start, start + size):
      local = tf.math.floormod(local * codebook_size + codes[:, level], HASH_PRIME)
    keys.append(tf.math.floormod(local + offset % HASH_PRIME, HASH_PRIME))
    offset += codebook_size**size
  return tf.stack(keys, axis=1)


def check_args(num_levels: int, codebook_size: int, num_rows: Optional[int]) -> None:
  """Validates the arguments the n-gram and prefix-ngram layers share."""
  if num_levels < 1:
    raise ValueError(f"`num_levels` must be positive. Received: num_levels={num_levels}")
  if not 1 <= codebook_size < HASH_PRIME:
    raise ValueError(
      f"`codebook_size` must lie in [1, {HASH_PRIME}). Received: codebook_size={codebook_size}"
    )
  if num_rows is not None and num_rows < 1:
    raise ValueError(f"`num_rows` must be positive. Received: num_rows={num_rows}")


def resolve_num_rows(exact_num_rows: int, num_rows: Optional[int], what: str) -> int:
  """The rows a table needs: the exact count, or the budget when it is smaller.

  Raises:
    ValueError: if `num_rows` is None and the exact table would exceed 2^31 - 1 rows.
  """
  if num_rows is None:
    if exact_num_rows > HASH_PRIME:
      raise ValueError(
        f"The exact {what} table needs {exact_num_rows} rows (more than 2^31 - 1); pass a "
        f"`num_rows` budget to hash ids into. Received: num_rows=None"
      )
    return exact_num_rows
  return min(num_rows, exact_num_rows)


@tf.keras.utils.register_keras_serializable(package="semantic_ids")
class SidNgram(tf.keras.layers.Layer):
  """Maps semantic IDs to n-gram token ids for one shared embedding table.

  Args:
    num_levels: int. L, codes per semantic ID.
    codebook_size: int. K, codes per level.
    ngram_size: int. N, levels per group (1 = unigram, 2 = bigram). Must lie in [1, L].
    num_rows: int or None. Row budget. None (default) means the exact `sum_g K^{n_g}` rows; a
      smaller value hashes ids into [0, num_rows) (see the module docstring). A larger value is
      lowered to the exact count.

  Call arguments:
    codes: int[B, L] semantic IDs, each code in [0, K).

  Returns:
    tf.RaggedTensor int64 [B, (ceil(L / N))] of row ids in [0, num_rows) (every row has the same
    length).

  Example:

  >>> layer = SidNgram(num_levels=4, codebook_size=4, ngram_size=2)
  >>> layer.num_rows
  32
  >>> layer(tf.constant([[1, 2, 3, 0]])).to_list()
  [[6, 28]]
  """

  def __init__(
    self,
    num_levels: int,
    codebook_size: int,
    ngram_size: int,
    num_rows: Optional[int] = None,
    **kwargs,
  ):
    super().__init__(**kwargs)
    check_args(num_levels, codebook_size, num_rows)
    if not 1 <= ngram_size <= num_levels:
      raise ValueError(
        f"`ngram_size` must lie in [1, num_levels={num_levels}]. Received: ngram_size={ngram_size}"
      )
    self.num_levels = num_levels
    self.codebook_size = codebook_size
    self.ngram_size = ngram_size
    self.exact_num_rows = ngram_exact_num_rows(num_levels, codebook_size, ngram_size)
    self.num_rows = resolve_num_rows(self.exact_num_rows, num_rows, f"{ngram_size}-gram")
    self.num_tokens = len(ngram_groups(num_levels, ngram_size))

  @property
  def hashed(self) -> bool:
    """Whether ids are hashed into a budget smaller than the exact table."""
    return self.num_rows < self.exact_num_rows

  def call(self, codes: tf.Tensor) -> tf.RaggedTensor:
    codes = checked_codes(codes, self.num_levels, self.codebook_size)
    keys = ngram_keys(codes, self.codebook_size, self.ngram_size)
    return tf.RaggedTensor.from_tensor(keys_to_rows(keys, self.exact_num_rows, self.num_rows))

  def get_config(self) -> dict:
    config = super().get_config()
    config.update(
      {
        "num_levels": self.num_levels,
        "codebook_size": self.codebook_size,
        "ngram_size": self.ngram_size,
        "num_rows": self.num_rows,
      }
    )
    return config
