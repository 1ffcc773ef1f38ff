"""Prefix-ngram semantic-ID tokens (Zheng et al., RecSys 2025): one token per SID prefix.

An item with codes (c1, ..., cL) gets n tokens: (c1), (c1, c2), ..., (c1, ..., cn), with n =
`max_prefix_length` (L by default). Short prefixes are shared by many related items
(generalisation); the long ones are nearly unique (memorisation). Prefix length j has its own exact
id range of K^j rows:

  exact_id(j) = sum_{m<j} K^m + sum_{i<j} c_{i+1} * K^(j-1-i),   exact rows = sum_{j=1..n} K^j.

With L=8 and K=2048 the exact table is astronomically large, so ids are hashed into `num_rows` with
the same deterministic scheme as the n-gram layer (`sid_ngram.hash_keys`: Lehmer mix modulo 2^31 -
1, then modulo `num_rows`); when the budget covers the exact table, the exact ids are used as they
are.
"""

from typing import Optional

import tensorflow as tf

from features import sid_ngram


def prefix_exact_num_rows(codebook_size: int, max_prefix_length: int) -> int:
  """Exact rows of a prefix table: sum_{j=1..n} K^j (a Python int, may be huge)."""
  return sum(codebook_size**length for length in range(1, max_prefix_length + 1))


def prefix_keys(codes: tf.Tensor, codebook_size: int, max_prefix_length: int) -> tf.Tensor:
  """Exact prefix ids modulo P: codes int64[B, L] -> int64[B, max_prefix_length]."""
  prime = sid_ngram.HASH_PRIME
  keys, local, offset = [], tf.zeros_like(codes[:, 0]), 0
  for level in range(max_prefix_length):
    local = tf.math.floormod(local * codebook_size + codes[:, level], prime)
    keys.append(tf.math.floormod(local + offset % prime, prime))
    offset += codebook_size ** (level + 1)
  return tf.stack(keys, axis=1)


@tf.keras.utils.register_keras_serializable(package="semantic_ids")
class SidPrefixNgram(tf.keras.layers.Layer):
  """Maps semantic IDs to prefix token ids for one shared embedding table.

  Args:
    num_levels: int. L, codes per semantic ID.
    codebook_size: int. K, codes per level.
    max_prefix_length: int or None. n, the longest prefix (one token per length 1..n). None
      (default) means L.
    num_rows: int or None. Row budget. None (default) means the exact `sum_{j<=n} K^j` rows (an
      error when that exceeds 2^31 - 1); a smaller value hashes ids into [0, num_rows). A larger
      value is lowered to the exact count.

  Call arguments:
    codes: int[B, L] semantic IDs, each code in [0, K).

  Returns:
    tf.RaggedTensor int64 [B, (n)] of row ids in [0, num_rows) (every row has the same length).

  Example:

  >>> layer = SidPrefixNgram(num_levels=3, codebook_size=4)
  >>> layer.num_rows
  84
  >>> layer(tf.constant([[1, 2, 3]])).to_list()
  [[1, 10, 47]]
  """

  def __init__(
    self,
    num_levels: int,
    codebook_size: int,
    max_prefix_length: Optional[int] = None,
    num_rows: Optional[int] = None,
    **kwargs,
  ):
    super().__init__(**kwargs)
    sid_ngram.check_args(num_levels, codebook_size, num_rows)
    if max_prefix_length is None:
      max_prefix_length = num_levels
    if not 1 <= max_prefix_length <= num_levels:
      raise ValueError(
        f"`max_prefix_length` must lie in [1, num_levels={num_levels}]. "
        f"Received: max_prefix_length={max_prefix_length}"
      )
    self.num_levels = num_levels
    self.codebook_size = codebook_size
    self.max_prefix_length = max_prefix_length
    self.exact_num_rows = prefix_exact_num_rows(codebook_size, max_prefix_length)
    self.num_rows = sid_ngram.resolve_num_rows(self.exact_num_rows, num_rows, "prefix-ngram")
    self.num_tokens = max_prefix_length

  @property
  def hashed(self) -> bool:
    """Whether ids are hashed into a budget smaller than the exact table."""
    return self.num_rows < self.exact_num_rows

  def call(self, codes: tf.Tensor) -> tf.RaggedTensor:
    codes = sid_ngram.checked_codes(codes, self.num_levels, self.codebook_size)
    keys = prefix_keys(codes, self.codebook_size, self.max_prefix_length)
    rows = sid_ngram.keys_to_rows(keys, self.exact_num_rows, self.num_rows)
    return tf.RaggedTensor.from_tensor(rows)

  def get_config(self) -> dict:
    config = super().get_config()
    config.update(
      {
        "num_levels": self.num_levels,
        "codebook_size": self.codebook_size,
        "max_prefix_length": self.max_prefix_length,
        "num_rows": self.num_rows,
      }
    )
    return config
