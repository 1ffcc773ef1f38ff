"""Dense content input: the item's content embedding through a learned projection.

The paper's second baseline: it generalises to new items (similar content, similar vector) but
cannot memorise item-specific behaviour, so it trails hashing overall.
"""

from typing import Any, Dict, Mapping, Optional

import tensorflow as tf

from features import feature_spec
from model import item_representation


@tf.keras.utils.register_keras_serializable(package="semantic_ids")
class DenseItem(item_representation.ItemRepresentation):
  """Projects `content_embedding` float32[B, D] to float32[B, embedding_dim].

  Args:
    embedding_dim: int. Output width. Defaults to 32.
    hidden_dim: Optional int. Width of one ReLU hidden layer before the projection; None for a
      linear projection. Defaults to None.
    **kwargs: passed to `tf.keras.layers.Layer`.

  Call arguments:
    features: dict with `content_embedding` float32[B, D].

  Returns:
    float32[B, embedding_dim].
  """

  feature_keys = (feature_spec.CONTENT_EMBEDDING,)

  def __init__(self, embedding_dim: int = 32, hidden_dim: Optional[int] = None, **kwargs):
    super().__init__(embedding_dim=embedding_dim, **kwargs)
    if hidden_dim is not None and hidden_dim <= 0:
      raise ValueError(f"`hidden_dim` must be positive or None. Received: hidden_dim={hidden_dim}")
    self.hidden_dim = hidden_dim
    self.hidden = (
      tf.keras.layers.Dense(hidden_dim, activation="relu", name="hidden") if hidden_dim else None
    )
    self.projection = tf.keras.layers.Dense(embedding_dim, name="projection")

  def call(self, features: Mapping[str, tf.Tensor], training=None) -> tf.Tensor:
    x = tf.cast(self.select(features)[feature_spec.CONTENT_EMBEDDING], tf.float32)
    if self.hidden is not None:
      x = self.hidden(x)
    return self.projection(x)

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update({"hidden_dim": self.hidden_dim})
    return config
