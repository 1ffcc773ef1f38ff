"""The multi-task TFRS ranker: user tower x item representation -> DCN-v2 cross + MLP -> one head
per task.

```
item vector  = item_representation(candidate features)          (hash / dense / SID / hybrid / none)
user vector  = user_tower(user_id [, history in the same item representation])
x0           = concat(user vector, item vector[, history * item, <history, item>])
shared       = MLP(Cross(x0, x0))                               (tfrs.layers.dcn.Cross, DCN-v2)
ctr          = sigmoid(click_head(shared))                      click task: BCE, AUC
<second>     = second_head(shared)                              second task: MSE, RMSE
loss         = click_weight * click_loss + second_weight * second_loss
```
The item representation, the user tower and the config are constructor arguments (compose, don't
subclass), so every scheme shares the same ranker. `call` returns `{"ctr": p(click)[B],
<second_label_name>: [B]}`.
"""

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

import tensorflow as tf
import tensorflow_recommenders as tfrs

from model import item_representation as item_rep_lib
from model import user_tower as user_tower_lib

CTR = "ctr"
CLICK_LABEL = "click"
SECOND_LABEL = "second_label"


@dataclasses.dataclass
class RankerConfig:
  """Hyperparameters of the ranker (the item representation has its own config).

  Attributes:
    second_label_name: str. Name of the second task's output ("rating", "engagement"). Defaults to
      "second_label".
    user_buckets: int. Hash buckets for user ids. Defaults to 100_000.
    user_embedding_dim: int. Width of the user-id embedding. Defaults to 32.
    use_history: bool. Include the pooled history feature. Defaults to True.
    history_length: int. H, the number of history items (serving input width). Defaults to 10.
    history_interaction: bool. With history, also feed the elementwise product and the dot product
      of the pooled history vector and the candidate's item vector (how well the candidate matches
      what the user engaged with). Defaults to True.
    cross_layers: int. Number of DCN-v2 cross layers. Defaults to 1.
    cross_projection_dim: Optional int. Low-rank projection of the cross layers; None for full rank.
    hidden_units: tuple of int. Shared MLP widths. Defaults to (64, 32).
    dropout: float. Dropout after each MLP layer. Defaults to 0.
    click_weight: float. Weight of the click loss. Defaults to 1.
    second_weight: float. Weight of the second task's loss. Defaults to 0.1.
  """

  second_label_name: str = "second_label"
  user_buckets: int = 100_000
  user_embedding_dim: int = 32
  use_history: bool = True
  history_length: int = 10
  history_interaction: bool = True
  cross_layers: int = 1
  cross_projection_dim: Optional[int] = None
  hidden_units: Tuple[int, ...] = (64, 32)
  dropout: float = 0.0
  click_weight: float = 1.0
  second_weight: float = 0.1

  def __post_init__(self):
    self.hidden_units = tuple(int(u) for u in self.hidden_units)
    if (
      self.click_weight < 0 or self.second_weight < 0 or self.click_weight + self.second_weight == 0
    ):
      raise ValueError(
        "Loss weights must be non-negative and not both zero. Received: "
        f"click_weight={self.click_weight}, second_weight={self.second_weight}"
      )
    if self.history_length <= 0:
      raise ValueError(f"`history_length` must be positive. Received: {self.history_length}")
    if self.second_label_name in (CTR, ""):
      raise ValueError(
        f"`second_label_name` must not be empty or 'ctr'. Received: {self.second_label_name!r}"
      )

  def to_dict(self) -> Dict[str, Any]:
    out = dataclasses.asdict(self)
    out["hidden_units"] = list(self.hidden_units)
    return out

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> "RankerConfig":
    return cls(**dict(values))


class Ranker(tfrs.models.Model):
  """Multi-task ranker over one pluggable item representation.

  Args:
    item_representation: Optional ItemRepresentation; None for the user-only floor.
    config: RankerConfig.
    **kwargs: passed to `tf.keras.Model`.

  Call arguments:
    features: dict of raw features: `user_id` string[B], the features the item representation reads,
      and the history inputs when `config.use_history`.

  Returns:
    {"ctr": float32[B], config.second_label_name: float32[B]}.
  """

  def __init__(
    self,
    item_representation: Optional[item_rep_lib.ItemRepresentation],
    config: RankerConfig,
    **kwargs,
  ):
    super().__init__(**kwargs)
    if config.use_history and item_representation is None:
      raise ValueError("The history feature needs an item representation; use use_history=False.")
    self.config = config
    self.item_representation = item_representation
    self.user_tower = user_tower_lib.UserTower(
      user_buckets=config.user_buckets,
      embedding_dim=config.user_embedding_dim,
      item_representation=item_representation,
      use_history=config.use_history,
      name="user_tower",
    )
    self.cross = [
      tfrs.layers.dcn.Cross(projection_dim=config.cross_projection_dim, name=f"cross_{i}")
      for i in range(config.cross_layers)
    ]
    self.mlp = tf.keras.Sequential(name="shared_mlp")
    for i, units in enumerate(config.hidden_units):
      self.mlp.add(tf.keras.layers.Dense(units, activation="relu", name=f"dense_{i}"))
      if config.dropout:
        self.mlp.add(tf.keras.layers.Dropout(config.dropout, name=f"dropout_{i}"))
    self.click_head = tf.keras.layers.Dense(1, name="click_head")
    self.second_head = tf.keras.layers.Dense(1, name="second_head")
    self.click_task = tfrs.tasks.Ranking(
      loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
      metrics=[tf.keras.metrics.AUC(from_logits=True, name="auc")],
      name="click_task",
    )
    self.second_task = tfrs.tasks.Ranking(
      loss=tf.keras.losses.MeanSquaredError(),
      metrics=[tf.keras.metrics.RootMeanSquaredError(name="rmse")],
      name="second_task",
    )

  @property
  def input_keys(self) -> Tuple[str, ...]:
    """Names of the raw features `call` reads (the serving inputs)."""
    keys = [user_tower_lib.USER_ID]
    if self.item_representation is not None:
      keys += list(self.item_representation.feature_keys)
    keys += list(self.user_tower.history_keys())
    return tuple(keys)

  def heads(self, features: Mapping[str, tf.Tensor], training=None) -> Tuple[tf.Tensor, tf.Tensor]:
    """Returns (click logit float32[B], second prediction float32[B])."""
    user = self.user_tower(features, training=training)
    parts = [user]
    if self.item_representation is not None:
      item = self.item_representation(features, training=training)
      parts.append(item)
      if self.config.use_history and self.config.history_interaction:
        match = user[:, self.config.user_embedding_dim :] * item
        parts += [match, tf.reduce_sum(match, axis=-1, keepdims=True)]
    x0 = tf.concat(parts, axis=-1)
    x = x0
    for layer in self.cross:
      x = layer(x0, x)
    shared = self.mlp(x, training=training)
    return tf.squeeze(self.click_head(shared), -1), tf.squeeze(self.second_head(shared), -1)

  def call(self, features: Mapping[str, tf.Tensor], training=None) -> Dict[str, tf.Tensor]:
    logit, second = self.heads(features, training=training)
    return {CTR: tf.sigmoid(logit), self.config.second_label_name: second}

  def compute_loss(self, inputs, training: bool = False) -> tf.Tensor:
    features = inputs[0] if isinstance(inputs, tuple) else inputs
    logit, second = self.heads(features, training=training)
    click_loss = self.click_task(
      labels=tf.cast(features[CLICK_LABEL], tf.float32), predictions=logit, training=training
    )
    second_loss = self.second_task(
      labels=tf.cast(features[SECOND_LABEL], tf.float32), predictions=second, training=training
    )
    return self.config.click_weight * click_loss + self.config.second_weight * second_loss


def serving_input_signature(ranker: Ranker, content_dim: int) -> Dict[str, tf.TensorSpec]:
  """TensorSpecs of the raw serving inputs `ranker` reads (batch dimension None)."""
  h = ranker.config.history_length
  specs = {
    user_tower_lib.USER_ID: tf.TensorSpec([None], tf.string, name=user_tower_lib.USER_ID),
    item_rep_lib.ITEM_ID: tf.TensorSpec([None], tf.string, name=item_rep_lib.ITEM_ID),
    item_rep_lib.CONTENT_EMBEDDING: tf.TensorSpec(
      [None, content_dim], tf.float32, name=item_rep_lib.CONTENT_EMBEDDING
    ),
    "history_item_id": tf.TensorSpec([None, h], tf.string, name="history_item_id"),
    "history_content_embedding": tf.TensorSpec(
      [None, h, content_dim], tf.float32, name="history_content_embedding"
    ),
    user_tower_lib.HISTORY_MASK: tf.TensorSpec([None, h], tf.float32, name="history_mask"),
  }
  return {k: specs[k] for k in ranker.input_keys}


def save(ranker: Ranker, path: str, content_dim: int) -> Dict[str, tf.TensorSpec]:
  """Saves `ranker` as a SavedModel whose `serving_default` maps the raw inputs to the outputs.

  Also exports `semantic_id` (content -> codes) when the item representation has a SID encoder.

  Returns:
    The serving input signature.
  """
  spec = serving_input_signature(ranker, content_dim)

  @tf.function(input_signature=[spec])
  def serve(features):
    return ranker(features, training=False)

  signatures = {"serving_default": serve}
  encoder = getattr(ranker.item_representation, "sid_encoder", None)
  if encoder is not None:

    @tf.function(
      input_signature=[
        tf.TensorSpec([None, content_dim], tf.float32, name=item_rep_lib.CONTENT_EMBEDDING)
      ]
    )
    def semantic_id(content):
      return {"codes": encoder(content)}

    signatures["semantic_id"] = semantic_id
  tf.saved_model.save(ranker, path, signatures=signatures)
  return spec
