"""User side of the ranker: hashed user ID plus the pooled history of recently engaged items.

The history items go through the SAME item representation as the candidate (shared weights), so with
semantic IDs a user who liked items of one content cluster carries that cluster's subword vectors,
and a new candidate from the cluster meets them. The paper found SIDs beat hashing only with such
history features; `use_history` switches the feature off so both can be measured.

History inputs (built by `features.history`, also the serving inputs):
  `history_item_id` string[B, H], `history_content_embedding` float32[B, H, D], `history_mask`
  float32[B, H] (1 for a real item, 0 for padding; most recent first).
"""

from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import tensorflow as tf

from features import feature_spec
from model import item_representation

USER_ID = feature_spec.USER_ID
HISTORY_MASK = feature_spec.HISTORY_MASK
USER_VECTOR = "user"
HISTORY_VECTOR = "history"


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
    value = features[feature_spec.history_key(key)]
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
  tokenizer's work. The shortcut is exact: when some user's rows do not all carry the same features,
  bit for bit (as in a training batch), `fn` runs on every row instead. Features of ONE row (the
  serving signature passes a request's history once when every row repeats it,
  `export.signatures.ServingContract.shared_keys`) are every row's.

  Args:
    user_ids: string[B]. Rows with one id share one computation.
    features: dict of tensors with leading dimension B, or all with leading dimension 1 (the
      history inputs).
    fn: maps such a dict (with any leading dimension) to float[rows, d].

  Returns:
    float[B, d], equal to `fn(features)` (to `fn` of the one row on every row).
  """
  rows = tf.shape(user_ids)[0]
  given = tf.shape(next(iter(features.values())))[0]

  def one_row():  # The features' single row is every row's.
    return tf.constant(True), tf.zeros([1], tf.int32), tf.zeros([rows], tf.int32)

  def per_user():
    unique, index = tf.unique(user_ids)
    first = tf.math.unsorted_segment_min(tf.range(rows), index, tf.shape(unique)[0])
    # One user (a ranking request): compare each row with the one before it (no operand is
    # broadcast or gathered); several users: every row with the first row of its own user.
    same = tf.cond(
      tf.equal(tf.size(unique), 1),
      lambda: tf.reduce_all(tf.stack([rows_identical(v) for v in features.values()])),
      lambda: tf.reduce_all(
        tf.stack(
          [
            tf.reduce_all(tf.equal(tf.gather(tf.gather(w, first), index), w))
            for w in map(comparable_words, features.values())
          ]
        )
      ),
    )
    return same, tf.cast(first, tf.int32), tf.cast(index, tf.int32)

  same, first, index = tf.cond(tf.equal(given, 1), one_row, per_user)
  once = {k: tf.gather(v, first) for k, v in features.items()}
  return tf.cond(same, lambda: tf.gather(fn(once), index), lambda: fn(dict(features)))


def rows_identical(values: tf.Tensor) -> tf.Tensor:
  """bool scalar: every row of `values` [B, ...] is bit-identical to the first (True for B <= 1).

  Each row is compared with the one before it, so the comparison is one elementwise `Equal` of
  two aligned slices (no broadcast operand), over `comparable_words`.
  """
  words = comparable_words(values)
  return tf.reduce_all(tf.equal(words[1:], words[:-1]))


def comparable_words(values: tf.Tensor) -> tf.Tensor:
  """`values` [B, ...] as [B, n] words whose equality means bit-identical rows.

  float32 and int32 rows of an even size become int64 words of two values each (half the compares
  of elementwise equality); bit-identical rows give `fn` bit-identical results, and a -0.0 / 0.0
  or NaN difference only sends the batch to the per-row path. Other dtypes compare as they are.
  """
  shape = tf.shape(values)
  flat = tf.reshape(values, tf.stack([shape[0], tf.reduce_prod(shape[1:])]))  # Also for B = 0.
  if values.dtype not in (tf.float32, tf.int32):
    return flat
  size = values.shape[1:].num_elements()
  bits = tf.bitcast(flat, tf.int32) if values.dtype == tf.float32 else flat
  if size is None or size % 2:
    return bits
  return tf.bitcast(tf.reshape(bits, [-1, size // 2, 2]), tf.int64)


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
    A dict: "user" float32[B, embedding_dim] (the user-id embedding) and, with history, "history"
    float32[B, item_representation.embedding_dim] (the masked mean of the history items' vectors
    in the shared item representation).

  Example:
  >>> tower = UserTower(user_buckets=8, embedding_dim=4, use_history=False)
  >>> tower({"user_id": tf.constant(["a", "b"])})["user"].shape
  TensorShape([2, 4])
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
    """Width of the two outputs together."""
    extra = self.item_representation.embedding_dim if self.use_history else 0
    return self.embedding_dim + extra

  @property
  def input_keys(self) -> Tuple[str, ...]:
    """The inputs `call` reads: `user_id` and, with history, the history inputs."""
    return (USER_ID, *self.history_keys())

  def history_keys(self) -> Tuple[str, ...]:
    """The serving inputs the history feature reads (empty without history)."""
    if not self.use_history:
      return ()
    keys = [feature_spec.history_key(k) for k in self.item_representation.feature_keys]
    return (*keys, HISTORY_MASK)

  def call(self, features: Mapping[str, tf.Tensor], training=None) -> Dict[str, tf.Tensor]:
    user_ids = features[USER_ID]
    if user_ids.dtype != tf.string:
      user_ids = tf.strings.as_string(user_ids)
    outputs = {USER_VECTOR: self.embedding(self.hashing(user_ids))}
    if not self.use_history:
      return outputs
    history = {k: features[k] for k in self.history_keys()}

    def pooled(inputs):
      vectors = history_vectors(self.item_representation, inputs, training=training)
      return pool_history(vectors, inputs[HISTORY_MASK])

    if training:
      outputs[HISTORY_VECTOR] = pooled(history)
    else:
      outputs[HISTORY_VECTOR] = once_per_user(user_ids, history, pooled)
    return outputs

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    representation = self.item_representation
    config.update(
      {
        "user_buckets": self.user_buckets,
        "embedding_dim": self.embedding_dim,
        "item_representation": (
          tf.keras.layers.serialize(representation) if representation is not None else None
        ),
        "use_history": self.use_history,
      }
    )
    return config

  @classmethod
  def from_config(cls, config: Dict[str, Any]) -> "UserTower":
    """Rebuilds the tower; `item_representation` may be a serialized layer or a layer instance
    (the ranker passes its own, so both sides share one set of weights)."""
    config = dict(config)
    representation = config.get("item_representation")
    if isinstance(representation, dict):
      config["item_representation"] = tf.keras.layers.deserialize(representation)
    return cls(**config)
