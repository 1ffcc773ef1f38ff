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
The item representation, the user tower and the two tasks are constructor arguments (compose,
don't subclass; TFRS `experimental/models/ranking.py`), so every scheme shares the same ranker;
`build_ranker` assembles the default parts from a `RankerConfig`. `call` returns `{"ctr":
p(click)[B], <second_label_name>: [B]}`. The ranker is registered and has `get_config` /
`from_config`, so it reloads from its config plus a checkpoint of its weights.

Serving signatures are built in `export/` only (`export.signatures`); `input_specs` here names the
raw inputs the ranker reads, from `features.feature_spec`.
"""

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

import tensorflow as tf
import tensorflow_recommenders as tfrs

from features import feature_spec
from model import item_representation as item_rep_lib
from model import tasks as tasks_lib
from model import user_tower as user_tower_lib

CTR = feature_spec.CTR
CLICK_LABEL = feature_spec.CLICK
SECOND_LABEL = feature_spec.SECOND_LABEL


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


@tf.keras.utils.register_keras_serializable(package="semantic_ids")
class Ranker(tfrs.models.Model):
  """Multi-task ranker over one pluggable item representation and user tower.

  Args:
    item_representation: Optional ItemRepresentation; None for the user-only floor.
    user_tower: UserTower (or any layer returning {"user": [B, d]} and, with history, {"history":
      [B, item_dim]}); when it uses history it must share `item_representation`.
    config: RankerConfig (or its dict). The second task's name, cross/MLP sizes and loss weights.
    click_task: Optional tfrs task for the click logit. Defaults to BCE with AUC
      (`tasks.click_task()`).
    second_task: Optional tfrs task for the second output. Defaults to MSE with RMSE.
    **kwargs: passed to `tf.keras.Model`.

  Call arguments:
    features: dict of raw features: `user_id` string[B], the features the item representation reads,
      and the history inputs when the tower uses history.

  Returns:
    {"ctr": float32[B], config.second_label_name: float32[B]}.
  """

  def __init__(
    self,
    item_representation: Optional[item_rep_lib.ItemRepresentation],
    user_tower: tf.keras.layers.Layer,
    config: Optional[RankerConfig] = None,
    click_task: Optional[tf.keras.layers.Layer] = None,
    second_task: Optional[tf.keras.layers.Layer] = None,
    **kwargs,
  ):
    super().__init__(**kwargs)
    if isinstance(config, Mapping):
      config = RankerConfig.from_dict(config)
    config = config or RankerConfig()
    uses_history = bool(getattr(user_tower, "use_history", False))
    if uses_history and user_tower.item_representation is not item_representation:
      raise ValueError(
        "A user tower with history must share the ranker's item representation. Received: "
        f"tower representation {getattr(user_tower.item_representation, 'name', None)!r}, "
        f"ranker representation {getattr(item_representation, 'name', None)!r}"
      )
    self.config = config
    self.item_representation = item_representation
    self.user_tower = user_tower
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
    self.click_task = click_task or tasks_lib.click_task()
    self.second_task = second_task or tasks_lib.regression_task()

  @property
  def uses_history(self) -> bool:
    return bool(getattr(self.user_tower, "use_history", False))

  @property
  def input_keys(self) -> Tuple[str, ...]:
    """Names of the raw features `call` reads (the serving inputs)."""
    keys = [user_tower_lib.USER_ID]
    if self.item_representation is not None:
      keys += list(self.item_representation.feature_keys)
    keys += list(self.user_tower.history_keys())
    return tuple(keys)

  def input_specs(self, content_dim: int) -> Dict[str, tf.TensorSpec]:
    """Batch-major TensorSpecs of the raw inputs (`features.feature_spec`), H from the config."""
    return feature_spec.serving_specs(self.input_keys, content_dim, self.config.history_length)

  @property
  def prediction_names(self) -> Tuple[str, str]:
    return (CTR, self.config.second_label_name)

  def heads(self, features: Mapping[str, tf.Tensor], training=None) -> Tuple[tf.Tensor, tf.Tensor]:
    """Returns (click logit float32[B], second prediction float32[B])."""
    user = self.user_tower(features, training=training)
    parts = [user[user_tower_lib.USER_VECTOR]]
    history = user.get(user_tower_lib.HISTORY_VECTOR)
    if history is not None:
      parts.append(history)
    if self.item_representation is not None:
      item = self.item_representation(features, training=training)
      parts.append(item)
      if history is not None and self.config.history_interaction:
        match = history * item
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

  def get_build_config(self):
    """None: Keras cannot build the ranker from input shapes alone (string inputs); the ranker
    builds on its first call with real features."""
    return None

  def get_config(self) -> Dict[str, Any]:
    representation = self.item_representation
    tower = tf.keras.layers.serialize(self.user_tower)
    if self.uses_history:  # The tower shares the ranker's representation: store it once.
      tower["config"]["item_representation"] = None
    return {
      "name": self.name,
      "item_representation": (
        tf.keras.layers.serialize(representation) if representation is not None else None
      ),
      "user_tower": tower,
      "config": self.config.to_dict(),
      "click_task": tf.keras.layers.serialize(self.click_task),
      "second_task": tf.keras.layers.serialize(self.second_task),
    }

  @classmethod
  def from_config(cls, config: Dict[str, Any], custom_objects=None) -> "Ranker":
    config = dict(config)
    representation = config.pop("item_representation")
    if representation is not None:
      representation = tf.keras.layers.deserialize(representation, custom_objects=custom_objects)
    tower = dict(config.pop("user_tower"))
    tower["config"] = dict(tower["config"])
    if tower["config"].get("use_history"):
      tower["config"]["item_representation"] = representation
    tower = tf.keras.layers.deserialize(tower, custom_objects=custom_objects)
    for key in ("click_task", "second_task"):
      config[key] = tf.keras.layers.deserialize(config[key], custom_objects=custom_objects)
    return cls(representation, tower, **config)


def build_ranker(
  item_representation: Optional[item_rep_lib.ItemRepresentation],
  config: RankerConfig,
  name: str = "ranker",
) -> Ranker:
  """The ranker with the default user tower and tasks that `config` describes.

  Raises:
    ValueError: if `config.use_history` but there is no item representation.
  """
  if config.use_history and item_representation is None:
    raise ValueError("The history feature needs an item representation; use use_history=False.")
  tower = user_tower_lib.UserTower(
    user_buckets=config.user_buckets,
    embedding_dim=config.user_embedding_dim,
    item_representation=item_representation,
    use_history=config.use_history,
    name="user_tower",
  )
  return Ranker(item_representation, tower, config, name=name)
