"""Semantic-ID item representation: content -> SID codes -> subword tokens -> sum-pooled embeddings.

All of it runs in the graph, so a served model takes the raw content embedding:
  1. `SemanticIdEncoder` (frozen RQ-VAE encoder + quantizer): float32[B, D] -> codes int32[B, L];
  2. a subword layer (n-gram, prefix-ngram or SentencePiece): codes -> token ids, ragged
     int64[B, (tokens)];
  3. one embedding table of `tokenizer.num_rows` rows; the item vector is the SUM of its tokens'
     rows.
Unigram, bigram, prefix-ngram and SPM are configurations of this one class: `model.schemes` picks
the tokenizer of each scheme.
"""

from typing import Any, Dict, Mapping, Optional

import tensorflow as tf

from features import feature_spec
from model import item_representation


def sum_pool(table: tf.Tensor, tokens: tf.RaggedTensor) -> tf.Tensor:
  """Sums the rows of `table` named by each row of ragged `tokens`: float[B, dim]."""
  rows = tf.gather(table, tokens.flat_values)
  return tf.math.unsorted_segment_sum(
    rows, tokens.value_rowids(), num_segments=tokens.nrows(out_type=tf.int64)
  )


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


@tf.keras.utils.register_keras_serializable(package="semantic_ids")
class SidItem(item_representation.ItemRepresentation):
  """SemanticIdEncoder -> subword layer -> sum-pooled embedding table.

  Args:
    sid_encoder: Keras layer, `call(content float32[B, D]) -> codes int32[B, L]`; frozen (not
      trained here).
    tokenizer: Keras layer, `call(codes) -> RaggedTensor int64[B, (tokens)]` in [0, num_rows),
      attribute `num_rows`.
    embedding_dim: int. Output width. Defaults to 32.
    token_dropout: float. Training-time probability of dropping each token but the first. Defaults
      to 0.
    embeddings_initializer: Keras initializer (identifier, config or object) of the subword table.
      Defaults to RandomNormal(stddev=0.05). "zeros" makes a subword no training example contained
      (a new item's long piece) contribute nothing instead of noise, as when token dropout drops it.
    **kwargs: passed to `tf.keras.layers.Layer`.

  Call arguments:
    features: dict with `content_embedding` float32[B, D].
    training: bool. Enables token dropout.

  Returns:
    float32[B, embedding_dim].
  """

  feature_keys = (feature_spec.CONTENT_EMBEDDING,)

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

  def tokens(self, content: tf.Tensor) -> tf.RaggedTensor:
    """The subword token ids of `content`, ragged int64[B, (tokens)]."""
    return self.tokenizer(self.codes(content))

  def call(self, features: Mapping[str, tf.Tensor], training=None) -> tf.Tensor:
    tokens = self.tokens(self.select(features)[feature_spec.CONTENT_EMBEDDING])
    tokens = tf.cast(tokens, tf.int64)
    if training and self.token_dropout > 0.0:
      tokens = drop_tokens(tokens, self.token_dropout)
    return sum_pool(self.table, tokens)

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
