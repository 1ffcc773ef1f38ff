"""Random-hash item ID: the production baseline the paper compares semantic IDs against.

The string item id is hashed (FarmHash fingerprint, `tf.keras.layers.Hashing`) into `num_bins`
buckets, one embedding row each. With fewer buckets than items, unrelated items collide at random; a
new item lands on a row learned for other items (or one never trained), which is why hashing cannot
generalise to cold items.
"""

from typing import Any, Dict, Mapping

import tensorflow as tf

from features import feature_spec
from model import item_representation


@tf.keras.utils.register_keras_serializable(package="semantic_ids")
class HashItem(item_representation.ItemRepresentation):
  """Hashing + Embedding on the string `item_id`.

  Args:
    num_bins: int. Hash buckets = rows of the embedding table (the table budget).
    embedding_dim: int. Output width. Defaults to 32.
    salt: Optional int. Hashing salt, to get an independent hash function. Defaults to None.
    embeddings_initializer: Keras initializer (identifier, config or object) of the table. Defaults
      to RandomNormal(stddev=0.05). "zeros" makes a bucket no training example reached (a new
      item's, when the table has room) contribute nothing instead of noise.
    **kwargs: passed to `tf.keras.layers.Layer`.

  Call arguments:
    features: dict with `item_id` string[B].

  Returns:
    float32[B, embedding_dim].

  Example:
  >>> layer = HashItem(num_bins=8, embedding_dim=4)
  >>> layer({"item_id": tf.constant(["1", "2"])}).shape
  TensorShape([2, 4])
  """

  feature_keys = (feature_spec.ITEM_ID,)

  def __init__(
    self,
    num_bins: int = 10_000,
    embedding_dim: int = 32,
    salt=None,
    embeddings_initializer=None,
    **kwargs,
  ):
    super().__init__(embedding_dim=embedding_dim, **kwargs)
    if num_bins <= 0:
      raise ValueError(f"`num_bins` must be positive. Received: num_bins={num_bins}")
    self.num_bins = num_bins
    self.salt = salt
    self.hashing = tf.keras.layers.Hashing(num_bins=num_bins, salt=salt, name="hashing")
    self.embedding = tf.keras.layers.Embedding(
      num_bins,
      embedding_dim,
      embeddings_initializer=item_representation.table_initializer(embeddings_initializer),
      name="id_embedding",
    )

  @property
  def num_rows(self) -> int:
    return self.num_bins

  def call(self, features: Mapping[str, tf.Tensor], training=None) -> tf.Tensor:
    ids = self.select(features)[feature_spec.ITEM_ID]
    return self.embedding(self.hashing(ids))

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(
      {
        "num_bins": self.num_bins,
        "salt": self.salt,
        "embeddings_initializer": tf.keras.initializers.serialize(
          self.embedding.embeddings_initializer
        ),
      }
    )
    return config
