"""The ranker's tasks: TFRS `Ranking` tasks that can be serialized with the ranker.

`tfrs.tasks.Ranking` has no `get_config`, so a ranker holding one could not be rebuilt from its
config. `RankingTask` is the same task with its loss and metrics in the config. `click_task` and
`regression_task` are the ranker's defaults: binary cross-entropy on the click logit with AUC, and
mean squared error on the second output with RMSE.

Example:
>>> task = click_task()
>>> float(task(labels=tf.constant([1.0, 0.0]), predictions=tf.constant([0.0, 0.0])))
0.6931...
"""

from typing import Any, Dict, List, Optional

import tensorflow as tf
import tensorflow_recommenders as tfrs


@tf.keras.utils.register_keras_serializable(package="semantic_ids")
class RankingTask(tfrs.tasks.Ranking):
  """`tfrs.tasks.Ranking` with `get_config` (loss and metrics serialized).

  Args:
    loss: Optional Keras loss. Defaults to BinaryCrossentropy.
    metrics: Optional list of Keras metrics over (labels, predictions).
    **kwargs: passed to `tfrs.tasks.Ranking` (e.g. `name`).
  """

  def __init__(
    self,
    loss: Optional[tf.keras.losses.Loss] = None,
    metrics: Optional[List[tf.keras.metrics.Metric]] = None,
    **kwargs,
  ):
    super().__init__(loss=loss, metrics=metrics, **kwargs)

  def get_config(self) -> Dict[str, Any]:
    return {
      "name": self.name,
      "loss": tf.keras.losses.serialize(self._loss),
      "metrics": [tf.keras.metrics.serialize(m) for m in self._ranking_metrics],
    }

  @classmethod
  def from_config(cls, config: Dict[str, Any]) -> "RankingTask":
    config = dict(config)
    config["loss"] = tf.keras.losses.deserialize(config["loss"])
    config["metrics"] = [tf.keras.metrics.deserialize(m) for m in config.get("metrics") or []]
    return cls(**config)


def click_task(name: str = "click_task") -> RankingTask:
  """BCE on logits, with AUC (named `auc`, so `model.fit` logs `auc` and `val_auc`)."""
  return RankingTask(
    loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
    metrics=[tf.keras.metrics.AUC(from_logits=True, name="auc")],
    name=name,
  )


def regression_task(name: str = "second_task") -> RankingTask:
  """MSE with RMSE (named `rmse`)."""
  return RankingTask(
    loss=tf.keras.losses.MeanSquaredError(),
    metrics=[tf.keras.metrics.RootMeanSquaredError(name="rmse")],
    name=name,
  )
