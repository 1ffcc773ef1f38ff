"""A small stand-in ranker for the export tests: SPM-SID item tokens + hashed ids -> two heads.

It has the serving-relevant parts of the real ranker: a frozen content-embedding -> codes map, a
`tensorflow_text.SentencepieceTokenizer` over the code string (a tiny SentencePiece model trained
here with the `sentencepiece` library), hashed string ids and Dense heads; it returns
`{"ctr": [B], "second_label": [B]}`.
"""

import io

import numpy as np
import sentencepiece as spm
import tensorflow as tf
import tensorflow_text as tf_text

from export import signatures

EMBEDDING_DIM = 8
NUM_LEVELS = 2
NUM_CODES = 4
# One symbol per (level, code) pair, so a piece never mixes levels out of order.
SYMBOLS = ("abcd", "efgh")
SECOND_LABEL = "second_label"


def train_spm(seed: int = 0) -> bytes:
  """A unigram SentencePiece model over two-level code strings ("ae", "bf", ...); deterministic."""
  rng = np.random.default_rng(seed)
  lines = []
  for _ in range(400):
    c1 = int(rng.integers(NUM_CODES))
    c2 = c1 if rng.random() < 0.7 else int(rng.integers(NUM_CODES))  # frequent runs -> pieces
    lines.append(SYMBOLS[0][c1] + SYMBOLS[1][c2])
  writer = io.BytesIO()
  spm.SentencePieceTrainer.train(
    sentence_iterator=iter(lines),
    model_writer=writer,
    vocab_size=16,
    model_type="unigram",
    hard_vocab_limit=False,
    character_coverage=1.0,
    add_dummy_prefix=False,
    minloglevel=2,
    num_threads=1,
  )
  return writer.getvalue()


class StandInRanker(tf.keras.Model):
  """features -> {"ctr", "second_label"}; see the module docstring."""

  def __init__(self, spm_model: bytes, user_buckets: int = 32, **kwargs):
    super().__init__(**kwargs)
    rng = np.random.default_rng(1)
    self.projection = tf.constant(
      rng.normal(size=(EMBEDDING_DIM, NUM_LEVELS * NUM_CODES)).astype("float32")
    )
    self.tokenizer = tf_text.SentencepieceTokenizer(model=spm_model, out_type=tf.int32)
    self.user_buckets = user_buckets
    self.piece_embedding = tf.keras.layers.Embedding(64, 4, name="piece_embedding")
    self.user_embedding = tf.keras.layers.Embedding(user_buckets, 4, name="user_embedding")
    self.content = tf.keras.layers.Dense(4, name="content")
    self.ctr_head = tf.keras.layers.Dense(1, activation="sigmoid", name="ctr_head")
    self.second_head = tf.keras.layers.Dense(1, name="second_head")

  def sid_codes(self, embedding: tf.Tensor) -> tf.Tensor:
    logits = tf.reshape(tf.matmul(embedding, self.projection), [-1, NUM_LEVELS, NUM_CODES])
    return tf.argmax(logits, axis=-1, output_type=tf.int32)

  def sid_string(self, codes: tf.Tensor) -> tf.Tensor:
    parts = [tf.gather(tf.constant(list(SYMBOLS[i])), codes[:, i]) for i in range(NUM_LEVELS)]
    return tf.strings.join(parts)

  def call(self, features, training=False):
    pieces = self.tokenizer.tokenize(self.sid_string(self.sid_codes(features["content_embedding"])))
    item = tf.reduce_sum(self.piece_embedding(pieces), axis=1)
    user_ids = tf.strings.to_hash_bucket_fast(features["user_id"], self.user_buckets)
    item_ids = tf.strings.to_hash_bucket_fast(features["item_id"], self.user_buckets)
    hidden = tf.concat(
      [
        item,
        self.user_embedding(user_ids),
        self.user_embedding(item_ids),
        self.content(features["content_embedding"]),
      ],
      axis=-1,
    )
    return {
      "ctr": tf.squeeze(self.ctr_head(hidden), -1),
      SECOND_LABEL: tf.squeeze(self.second_head(hidden), -1),
    }


def contract(max_batch_size: int = 10_000) -> signatures.ServingContract:
  return signatures.ServingContract(
    input_specs={
      "content_embedding": tf.TensorSpec([None, EMBEDDING_DIM], tf.float32),
      "user_id": tf.TensorSpec([None], tf.string),
      "item_id": tf.TensorSpec([None], tf.string),
    },
    output_names=("ctr", SECOND_LABEL),
    max_batch_size=max_batch_size,
  )


def build(max_batch_size: int = 10_000) -> tuple[StandInRanker, signatures.ServingModule]:
  """The stand-in model (weights built) and a ServingModule wrapping it."""
  model = StandInRanker(train_spm())
  model(sample_inputs(2))
  module = signatures.ServingModule(
    predict_fn=lambda features: model(features, training=False),
    contract=contract(max_batch_size),
    sid_fn=model.sid_codes,
    trackables={"model": model},
  )
  return model, module


def sample_inputs(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  return {
    "content_embedding": rng.normal(size=(batch, EMBEDDING_DIM)).astype("float32"),
    "user_id": np.array([f"user_{i % 3}".encode() for i in range(batch)], dtype=object),
    "item_id": np.array([f"item_{i}".encode() for i in range(batch)], dtype=object),
  }


def export(export_dir: str, max_batch_size: int = 10_000) -> StandInRanker:
  """Builds the stand-in and saves it with all three signatures to `export_dir`."""
  model, module = build(max_batch_size)
  module.save(export_dir)
  return model


def save_ranker(path: str, with_optimizer: bool = False) -> StandInRanker:
  """Saves the stand-in the way `model.ranker.save` saves the real ranker: a `serving_default`
  taking a dict of named tensors and a `semantic_id` signature (the export_model input contract).
  `with_optimizer` compiles it with Adam and builds the slots, as a trained ranker carries them."""
  model = StandInRanker(train_spm())
  model(sample_inputs(2))
  if with_optimizer:
    model.compile(optimizer=tf.keras.optimizers.Adam())
    model.optimizer.build(model.trainable_variables)
  specs = {
    name: tf.TensorSpec(spec.shape, spec.dtype, name=name)
    for name, spec in contract().input_specs.items()
  }
  serve = tf.function(lambda features: model(features, training=False), input_signature=[specs])
  semantic_id = tf.function(
    lambda content: {"codes": model.sid_codes(content)},
    input_signature=[tf.TensorSpec([None, EMBEDDING_DIM], tf.float32, name="content_embedding")],
  )
  tf.saved_model.save(
    model, path, signatures={"serving_default": serve, "semantic_id": semantic_id}
  )
  return model
