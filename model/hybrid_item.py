"""Hybrid item representation: random-hash ID plus a semantic-ID scheme, summed.

The ID part memorises head items, the SID part carries what similar items taught the model. With
`id_dropout` the ID vector of an example is zeroed at random during training, so the model also
learns to rank from the SID part alone: a new item's ID row is untrained noise, and at serving it
should count for little (ID dropout, as in DropoutNet, Volkovs et al. 2017).

The SID part may read precomputed codes or subword ids instead of the content embedding
(`model.sid_item.reading`); the hybrid's `feature_keys` follow it.
"""

from typing import Any, Dict, Mapping

import tensorflow as tf

from model import item_representation


@tf.keras.utils.register_keras_serializable(package="semantic_ids")
class HybridItem(item_representation.ItemRepresentation):
  """Sum of an ID representation and a SID representation of the same width.

  Args:
    id_part: ItemRepresentation (usually `HashItem`).
    sid_part: ItemRepresentation (usually `SidItem`).
    id_dropout: float. Training-time probability of zeroing an example's ID vector. Defaults to 0.
    **kwargs: passed to `tf.keras.layers.Layer`.

  Call arguments:
    features: dict with the features both parts read.
    training: bool. Enables ID dropout.

  Returns:
    float32[B, embedding_dim].
  """

  def __init__(
    self,
    id_part: item_representation.ItemRepresentation,
    sid_part: item_representation.ItemRepresentation,
    id_dropout: float = 0.0,
    **kwargs,
  ):
    if id_part.embedding_dim != sid_part.embedding_dim:
      raise ValueError(
        "`id_part` and `sid_part` must have the same embedding_dim. Received: "
        f"{id_part.embedding_dim} and {sid_part.embedding_dim}"
      )
    if not 0.0 <= id_dropout < 1.0:
      raise ValueError(f"`id_dropout` must be in [0, 1). Received: id_dropout={id_dropout}")
    kwargs.pop("embedding_dim", None)
    super().__init__(embedding_dim=id_part.embedding_dim, **kwargs)
    self.id_part = id_part
    self.sid_part = sid_part
    self.id_dropout = id_dropout

  @property
  def feature_keys(self):
    """The inputs of both parts (they follow the SID part's `sid_input`, see `model.sid_item`)."""
    return tuple(dict.fromkeys(self.id_part.feature_keys + self.sid_part.feature_keys))

  @property
  def sid_encoder(self):
    return self.sid_part.sid_encoder

  @property
  def num_rows(self) -> int:
    return int(self.id_part.num_rows) + int(self.sid_part.num_rows)

  def call(self, features: Mapping[str, tf.Tensor], training=None) -> tf.Tensor:
    id_vector = self.id_part(features, training=training)
    if training and self.id_dropout > 0.0:
      keep = tf.random.uniform(tf.shape(id_vector)[:1]) >= self.id_dropout
      id_vector = id_vector * tf.cast(keep, id_vector.dtype)[:, None]
    return id_vector + self.sid_part(features, training=training)

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(
      {
        "id_part": tf.keras.layers.serialize(self.id_part),
        "sid_part": tf.keras.layers.serialize(self.sid_part),
        "id_dropout": self.id_dropout,
      }
    )
    return config

  @classmethod
  def from_config(cls, config: Dict[str, Any]) -> "HybridItem":
    config = dict(config)
    config["id_part"] = tf.keras.layers.deserialize(config["id_part"])
    config["sid_part"] = tf.keras.layers.deserialize(config["sid_part"])
    return cls(**config)
