"""User side of the ranker: hashed user ID plus the pooled history of recently engaged items.

The history items go through the SAME item representation as the candidate (shared weights), so with
semantic IDs a user who liked items of one content cluster carries that cluster's subword vectors,
and a new candidate from the cluster meets them. The paper found SIDs beat hashing only with such
history features; `use_history` switches the feature off so both can be measured.

History inputs (built by `features.history`, also the serving inputs):
  `history_item_id` string[B, H], `history_content_embedding` float32[B, H, D], `history_mask`
  float32[B, H] (1 for a real item, 0 for padding; most recent first).
"""

from typing import Any, Callable, Dict, Mapping, Optional

import tensorflow as tf

from model import item_representation

USER_ID = "user_id"
HISTORY_PREFIX = "history_"
HISTORY_MASK = "history_mask"


def pool_history(vectors: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
  """Masked mean over the history axis: float[B, H, d], mask[B, H] -> float[B, d] (zeros if
  empty)."""
  mask = tf.cast(mask, vectors.dtype)
  total = tf.reduce_sum(vectors * mask[..., None], axis=1)
  count = tf.reduce_sum(mask, axis=1, keepdims=True)
  return tf.math.divide_no_nan(total, count)


def history_vectors(
  representation: item_representation.ItemRepresentation,
  features: Mapping[str, tf.Tensor],
  training=None,
) -> tf.Tensor:
  """Applies `representation` to every history item: float32[B, H, dim]."""
  flat = {}
  shape = None
  for key in representation.feature_keys:
    value = features[HISTORY_PREFIX + key]
    shape = tf.shape(value)[:2]
    flat[key] = tf.reshape(value, tf.concat([[-1], tf.shape(value)[2:]], axis=0))
  vectors = representation(flat, training=training)
  return tf.reshape(vectors, tf.concat([shape, [representation.embedding_dim]], axis=0))


def once_per_user(
  user_ids: tf.Tensor,
  features: Mapping[str, tf.Tensor],
  fn: Callable[[Dict[str, tf.Tensor]], tf.Tensor],
) -> tf.Tensor:
  """`fn(features)` computed on one row per distinct user, then gathered back to every row.

  A ranking request scores many candidates for one user, so every row repeats the same history;
  encoding it once per user instead of once per row removes most of the SID encoder's and the
  tokenizer's work. The shortcut is exact: when some user's rows do not all carry the same features
  (as in a training batch), `fn` runs on every row instead.

  Args:
    user_ids: string[B]. Rows with one id share one computation.
    features: dict of tensors with leading dimension B (the history inputs).
    fn: maps such a dict (with any leading dimension) to float[rows, d].

  Returns:
    float[B, d], equal to `fn(features)`.
  """
  unique, index = tf.unique(user_ids)
  rows = tf.shape(user_ids)[0]
  first = tf.math.unsorted_segment_min(tf.range(rows), index, tf.shape(unique)[0])
  once = {k: tf.gather(v, first) for k, v in features.items()}
  same = tf.reduce_all(
    tf.stack([tf.reduce_all(tf.equal(tf.gather(once[k], index), v)) for k, v in features.items()])
  )
  return tf.cond(same, lambda: tf.gather(fn(once), index), lambda: fn(dict(features)))


@tf.keras.utils.register_keras_serializable(package="semantic_ids")
class UserTower(tf.keras.layers.Layer):
  """Hashed user ID embedding, optionally concatenated with the pooled history.

  Args:
    user_buckets: int. Hash buckets for the user id. Defaults to 100_000.
    embedding_dim: int. Width of the user-id embedding. Defaults to 32.
    item_representation: Optional ItemRepresentation, shared with the candidate side. Required when
      `use_history`.
    use_history: bool. Include the history feature. Defaults to True.
    **kwargs: passed to `tf.keras.layers.Layer`.

  Call arguments:
    features: dict with `user_id` string[B] and, with history, the history inputs above.

  Returns:
    float32[B, output_dim]: `embedding_dim`, plus the item representation's width with history.
  """

  def __init__(
    self,
    user_buckets: int = 100_000,
    embedding_dim: int = 32,
    item_representation: Optional[item_representation.ItemRepresentation] = None,
    use_history: bool = True,
    **kwargs,
  ):
    super().__init__(**kwargs)
    if user_buckets <= 0:
      raise ValueError(f"`user_buckets` must be positive. Received: user_buckets={user_buckets}")
    if embedding_dim <= 0:
      raise ValueError(f"`embedding_dim` must be positive. Received: embedding_dim={embedding_dim}")
    if use_history and item_representation is None:
      raise ValueError("`use_history=True` needs an `item_representation`. Received None.")
    self.user_buckets = user_buckets
    self.embedding_dim = embedding_dim
    self.item_representation = item_representation
    self.use_history = use_history
    self.hashing = tf.keras.layers.Hashing(num_bins=user_buckets, name="user_hashing")
    self.embedding = tf.keras.layers.Embedding(
      user_buckets,
      embedding_dim,
      embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.05),
      name="user_embedding",
    )

  @property
  def output_dim(self) -> int:
    extra = self.item_representation.embedding_dim if self.use_history else 0
    return self.embedding_dim + extra

  def history_keys(self):
    """The serving inputs the history feature reads (empty without history)."""
    if not self.use_history:
      return ()
    return tuple(HISTORY_PREFIX + k for k in self.item_representation.feature_keys) + (
      HISTORY_MASK,
    )

  def call(self, features: Mapping[str, tf.Tensor], training=None) -> tf.Tensor:
    user = self.embedding(
      self.hashing(
        tf.strings.as_string(features[USER_ID])
        if features[USER_ID].dtype != tf.string
        else features[USER_ID]
      )
    )
    if not self.use_history:
      return user
    history = {k: features[k] for k in self.history_keys()}

    def pooled(inputs):
      vectors = history_vectors(self.item_representation, inputs, training=training)
      return pool_history(vectors, inputs[HISTORY_MASK])

    if training:
      return tf.concat([user, pooled(history)], axis=-1)
    user_ids = features[USER_ID]
    if user_ids.dtype != tf.string:
      user_ids = tf.strings.as_string(user_ids)
    return tf.concat([user, once_per_user(user_ids, history, pooled)], axis=-1)

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(
      {
        "user_buckets": self.user_buckets,
        "embedding_dim": self.embedding_dim,
        "use_history": self.use_history,
      }
    )
    return config
