"""The item-representation interface: raw item features in, one vector per item out.

An item representation maps the raw item features of a batch (a dict holding `item_id` string[B]
and/or `content_embedding` float32[B, D], named in `features.feature_spec`) to one vector per item,
float32[B, embedding_dim]. The ranker and the user tower's history feature only ever see this
interface. The built-in schemes (hash, dense, the SID schemes, hybrid) and the factory that maps a
config to a layer live in `model.schemes`: a new scheme is one new subclass plus one registry entry
there (or a `schemes.register` call in user code).
"""

from typing import Any, Dict, Mapping, Tuple

import tensorflow as tf

# `ItemRepresentationConfig.table_initializer` names -> Keras initializer identifiers.
TABLE_INITIALIZERS = {"normal": None, "zeros": "zeros"}


def table_initializer(identifier=None) -> tf.keras.initializers.Initializer:
  """The initializer of an embedding table: `identifier` (any Keras identifier, config or object)
  or, when None, RandomNormal(stddev=0.05)."""
  if identifier is None:
    return tf.keras.initializers.RandomNormal(stddev=0.05)
  return tf.keras.initializers.get(identifier)


class ItemRepresentation(tf.keras.layers.Layer):
  """Base class: raw item features in, float32[B, embedding_dim] out.

  Subclasses set `feature_keys` (the raw features they read) and implement `call(features,
  training)`. Inputs of any leading shape are not supported; callers flatten (the user tower
  flattens [B, H] histories).

  Args:
    embedding_dim: int. Width of the output vector.
    **kwargs: passed to `tf.keras.layers.Layer`.
  """

  feature_keys: Tuple[str, ...] = ()

  def __init__(self, embedding_dim: int = 32, **kwargs):
    super().__init__(**kwargs)
    if embedding_dim <= 0:
      raise ValueError(f"`embedding_dim` must be positive. Received: embedding_dim={embedding_dim}")
    self.embedding_dim = embedding_dim

  def select(self, features: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Returns the subset of `features` this representation reads; raises if one is missing."""
    missing = [k for k in self.feature_keys if k not in features]
    if missing:
      raise KeyError(
        f"{type(self).__name__} needs features {list(self.feature_keys)}; missing {missing}. "
        f"Received keys: {sorted(features)}"
      )
    return {k: features[k] for k in self.feature_keys}

  @property
  def num_rows(self) -> int:
    """Embedding-table rows this representation holds (0 when it has no table)."""
    return 0

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update({"embedding_dim": self.embedding_dim})
    return config
