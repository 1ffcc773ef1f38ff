"""Small hand-made pieces for the ranker tests: a fixed SID encoder, a unigram tokenizer, toy
batches."""

import numpy as np
import pandas as pd
import tensorflow as tf

from features import schema
from model import semantic_id_encoder

D = 4
LEVELS = 2
K = 3


def fixed_encoder() -> semantic_id_encoder.SemanticIdEncoder:
  """Identity encoder over D=4 with codebooks on axes: level 0 picks by x[0] sign, level 1 by
  x[1]."""
  encoder = semantic_id_encoder.SemanticIdEncoder(
    num_levels=LEVELS, codebook_size=K, input_dim=D, latent_dim=D, name="sid_encoder"
  )
  encoder.build(tf.TensorShape([None, D]))
  encoder.encoder_kernel.assign(np.eye(D, dtype=np.float32))
  books = np.zeros((LEVELS, K, D), np.float32)
  books[0, 1, 0], books[0, 2, 0] = 1.0, -1.0
  books[1, 1, 1], books[1, 2, 1] = 1.0, -1.0
  encoder.codebooks.assign(books)
  return encoder


@tf.keras.utils.register_keras_serializable(package="semantic_ids_tests")
class UnigramStandIn(tf.keras.layers.Layer):
  """Token l*K + c_l for each level l (the unigram scheme), as a ragged int64 tensor."""

  def __init__(self, num_levels=LEVELS, codebook_size=K, **kwargs):
    super().__init__(**kwargs)
    self.num_levels = num_levels
    self.codebook_size = codebook_size
    self.num_rows = num_levels * codebook_size

  def call(self, codes):
    offsets = tf.range(self.num_levels, dtype=tf.int64) * self.codebook_size
    return tf.RaggedTensor.from_tensor(tf.cast(codes, tf.int64) + offsets)

  def get_config(self):
    config = super().get_config()
    config.update({"num_levels": self.num_levels, "codebook_size": self.codebook_size})
    return config


def toy_dataset(n_items: int = 6, n_users: int = 4, n_rows: int = 80, seed: int = 0):
  """A tiny schema.Dataset with D=4 embeddings and random clicks."""
  rng = np.random.default_rng(seed)
  items = pd.DataFrame(
    {
      "item_id": np.arange(10, 10 + n_items, dtype=np.int64),
      "first_seen": np.zeros(n_items, np.int64),
    }
  )
  emb = rng.normal(size=(n_items, D)).astype(np.float32)
  inter = pd.DataFrame(
    {
      "user_id": rng.integers(0, n_users, n_rows).astype(np.int64),
      "item_id": rng.integers(10, 10 + n_items, n_rows).astype(np.int64),
      "timestamp": np.sort(rng.integers(0, 1000, n_rows)).astype(np.int64),
      "click": rng.integers(0, 2, n_rows).astype(np.int8),
      "second_label": rng.normal(size=n_rows).astype(np.float32),
    }
  )
  return schema.Dataset("toy", items, emb, inter, "rating")


def toy_batch(batch: int = 5, history: int = 3, seed: int = 0):
  """A dict of raw features with history inputs and labels."""
  rng = np.random.default_rng(seed)
  return {
    "user_id": tf.constant([f"u{i % 3}" for i in range(batch)]),
    "item_id": tf.constant([f"{i}" for i in range(batch)]),
    "content_embedding": tf.constant(rng.normal(size=(batch, D)), tf.float32),
    "history_item_id": tf.constant([[f"{i + j}" for j in range(history)] for i in range(batch)]),
    "history_content_embedding": tf.constant(rng.normal(size=(batch, history, D)), tf.float32),
    "history_mask": tf.constant(np.tril(np.ones((batch, history)))[:, ::-1][:, ::-1], tf.float32),
    "click": tf.constant(rng.integers(0, 2, batch), tf.float32),
    "second_label": tf.constant(rng.normal(size=batch), tf.float32),
  }
