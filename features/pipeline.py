"""tf.data pipelines: interactions -> batched feature dicts for `model.fit` and evaluation.

Each element is one dict (labels inside, as in the TFRS examples; the model pops them):
  `user_id` string[B], `item_id` string[B], `content_embedding` float32[B, D], `timestamp` int64[B],
  `click` float32[B], `second_label` float32[B].
The content embeddings are gathered per batch from the item table inside the pipeline, so a split of
10M rows costs only its id columns in memory, not 10M copies of the embedding.

Per-item features computed once for the whole catalogue (`item_features`, e.g. the SID `codes` and
`sid_tokens` a frozen RQ-VAE gives every item: `model.sid_item.catalogue_inputs`) are gathered per
batch the same way; `content=False` then leaves out the content embedding the model no longer reads.
"""

from typing import Dict, Mapping, Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from features import feature_spec as fs
from features import schema

FEATURE_KEYS = (fs.USER_ID, fs.ITEM_ID, fs.CONTENT_EMBEDDING, fs.TIMESTAMP, *fs.LABELS)
LABEL_KEYS = fs.LABELS


def _columns(dataset: schema.Dataset, interactions: pd.DataFrame) -> Dict[str, np.ndarray]:
  rows = dataset.item_index(interactions["item_id"].to_numpy())
  if (rows < 0).any():
    missing = np.unique(interactions["item_id"].to_numpy()[rows < 0])[:5]
    raise schema.SchemaError(
      f"interactions reference items without an embedding: {missing.tolist()}"
    )
  user = interactions["user_id"].to_numpy()
  return {
    "user_id": user.astype(np.int64) if np.issubdtype(user.dtype, np.integer) else user.astype(str),
    "item_id": interactions["item_id"].to_numpy(np.int64),
    "item_row": rows.astype(np.int64),
    "timestamp": interactions["timestamp"].to_numpy(np.int64),
    "click": interactions["click"].to_numpy(np.float32),
    "second_label": interactions["second_label"].to_numpy(np.float32),
  }


def _as_string(x: tf.Tensor) -> tf.Tensor:
  return x if x.dtype == tf.string else tf.strings.as_string(x)


def make_tf_dataset(
  dataset: schema.Dataset,
  interactions: pd.DataFrame,
  batch_size: int,
  shuffle: bool = False,
  seed: int = 0,
  drop_remainder: bool = False,
  item_features: Optional[Mapping[str, np.ndarray]] = None,
  content: bool = True,
) -> tf.data.Dataset:
  """Builds a batched tf.data pipeline over `interactions` (`dataset.interactions` or a split).

  Args:
    dataset: schema.Dataset. Supplies the item embedding table.
    interactions: pd.DataFrame. Rows in the canonical interaction schema.
    batch_size: int. Examples per batch.
    shuffle: bool. Shuffle rows each epoch (deterministically by `seed`). Defaults to False.
    seed: int. Shuffle seed. Defaults to 0.
    drop_remainder: bool. Drop the last partial batch. Defaults to False.
    item_features: Optional mapping name -> array [n_items, ...] aligned with `dataset.items`
      rows; each batch gets `name` [B, ...] of its candidates (`item_table_features`).
    content: bool. Include `content_embedding`. Defaults to True.

  Returns:
    A `tf.data.Dataset` of feature dicts (see the module docstring).

  Raises:
    ValueError: on a non-positive batch size or item features of the wrong length.
    schema.SchemaError: on items without embeddings.
  """
  if batch_size <= 0:
    raise ValueError(f"`batch_size` must be positive. Received: batch_size={batch_size}")
  columns = {k: tf.constant(v) for k, v in _columns(dataset, interactions).items()}
  table = tf.constant(dataset.embeddings, dtype=tf.float32)
  extra = item_table_features(dataset, item_features)
  n = len(interactions)
  n_batches = n // batch_size if drop_remainder else -(-n // batch_size)

  def batch_rows(order):
    def rows(i):
      return order[i * batch_size : tf.minimum((i + 1) * batch_size, n)]

    return tf.data.Dataset.range(n_batches).map(rows)

  if shuffle:  # one fresh permutation per pass over the data, reproducible from `seed`
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    ds = seeds.flat_map(
      lambda s: batch_rows(tf.argsort(tf.random.stateless_uniform([n], tf.stack([s, 0]))))
    )
  else:
    ds = batch_rows(tf.range(n))

  def to_features(rows):
    batch = {k: tf.gather(v, rows) for k, v in columns.items()}
    features = {
      fs.USER_ID: _as_string(batch["user_id"]),
      fs.ITEM_ID: _as_string(batch["item_id"]),
      fs.TIMESTAMP: batch["timestamp"],
      fs.CLICK: batch["click"],
      fs.SECOND_LABEL: batch["second_label"],
    }
    if content:
      features[fs.CONTENT_EMBEDDING] = tf.gather(table, batch["item_row"])
    features.update({k: tf.gather(v, batch["item_row"]) for k, v in extra.items()})
    return features

  return ds.map(to_features, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def item_table_features(
  dataset: schema.Dataset, item_features: Optional[Mapping[str, np.ndarray]]
) -> Dict[str, tf.Tensor]:
  """`item_features` as constant tensors, after checking each has one row per catalogue item.

  Raises:
    ValueError: naming a feature whose length is not `dataset.n_items`.
  """
  out = {}
  for name, values in (item_features or {}).items():
    values = np.asarray(values)
    if values.ndim < 1 or len(values) != dataset.n_items:
      raise ValueError(
        f"`item_features[{name!r}]` must have one row per item ({dataset.n_items}). "
        f"Received: shape={values.shape}"
      )
    out[name] = tf.constant(values)
  return out
