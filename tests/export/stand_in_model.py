"""A small stand-in ranker for the export tests: SPM-SID item tokens + hashed ids -> two heads.

It has the serving-relevant parts of the real ranker: a frozen content-embedding -> codes map,
`features.sid_spm.SidSentencePiece` over the codes (a tiny SID SentencePiece model trained here;
core TF ops only), hashed string ids and Dense heads; it returns `{"ctr", "second_label"}` ([B]).
Given precomputed `codes` instead of `content_embedding` it skips the codes map, so `build()` also
serves `predict_codes`.

`TfTextStandInRanker` is the same model tokenizing with TF Text's `SentencepieceTokenizer` (as the
project did before its SIDs were segmented with core ops): the negative control showing that the
contract check catches a graph that needs TF Text's kernels.
"""

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from export import signatures
from features import sid_spm, sid_symbols, spm_training

EMBEDDING_DIM = 8
NUM_LEVELS = 2
NUM_CODES = 4
SECOND_LABEL = "second_label"


def train_spm(seed: int = 0) -> bytes:
  """A unigram SID SentencePiece model (L=2, K=4) where frequent code pairs become pieces."""
  rng = np.random.default_rng(seed)
  first = rng.integers(NUM_CODES, size=400)
  second = np.where(rng.random(400) < 0.7, first, rng.integers(NUM_CODES, size=400))
  codes = np.stack([first, second], axis=1)
  config = spm_training.SpmTrainingConfig(vocab_size=NUM_LEVELS * NUM_CODES + 1 + 4)
  return spm_training.train_sid_spm(codes, np.ones(len(codes)), NUM_CODES, config)


class StandInRanker(tf.keras.Model):
  """features -> {"ctr", "second_label"}; see the module docstring."""

  def __init__(self, spm_model: bytes, user_buckets: int = 32, **kwargs):
    super().__init__(**kwargs)
    rng = np.random.default_rng(1)
    self.projection = tf.constant(
      rng.normal(size=(EMBEDDING_DIM, NUM_LEVELS * NUM_CODES)).astype("float32")
    )
    self.tokenizer = self.make_tokenizer(spm_model)
    self.user_buckets = user_buckets
    self.piece_embedding = tf.keras.layers.Embedding(64, 4, name="piece_embedding")
    self.user_embedding = tf.keras.layers.Embedding(user_buckets, 4, name="user_embedding")
    self.ctr_head = tf.keras.layers.Dense(1, activation="sigmoid", name="ctr_head")
    self.second_head = tf.keras.layers.Dense(1, name="second_head")

  def make_tokenizer(self, spm_model: bytes):
    return sid_spm.SidSentencePiece(spm_model, NUM_LEVELS, NUM_CODES, name="tokenizer")

  def pieces(self, codes: tf.Tensor) -> tf.RaggedTensor:
    return self.tokenizer(codes)

  def sid_codes(self, embedding: tf.Tensor) -> tf.Tensor:
    logits = tf.reshape(tf.matmul(embedding, self.projection), [-1, NUM_LEVELS, NUM_CODES])
    return tf.argmax(logits, axis=-1, output_type=tf.int32)

  def call(self, features, training=False):
    codes = features.get("codes")
    if codes is None:
      codes = self.sid_codes(features["content_embedding"])
    item = tf.reduce_sum(self.piece_embedding(self.pieces(codes)), axis=1)
    user_ids = tf.strings.to_hash_bucket_fast(features["user_id"], self.user_buckets)
    item_ids = tf.strings.to_hash_bucket_fast(features["item_id"], self.user_buckets)
    hidden = tf.concat([item, self.user_embedding(user_ids), self.user_embedding(item_ids)], -1)
    return {
      "ctr": tf.squeeze(self.ctr_head(hidden), -1),
      SECOND_LABEL: tf.squeeze(self.second_head(hidden), -1),
    }


class TfTextStandInRanker(StandInRanker):
  """`StandInRanker` with TF Text's tokenizer over the SID strings (needs TF Text's kernels)."""

  def make_tokenizer(self, spm_model: bytes):
    return tf_text.SentencepieceTokenizer(model=spm_model, out_type=tf.int32)

  def pieces(self, codes: tf.Tensor) -> tf.RaggedTensor:
    return self.tokenizer.tokenize(sid_symbols.sid_strings_tf(codes, NUM_CODES))


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


def codes_contract(max_batch_size: int = 10_000) -> signatures.ServingContract:
  """The contract of `predict_codes`: codes int32[B, L] in [0, K) instead of the embedding."""
  return signatures.ServingContract(
    input_specs={
      "codes": tf.TensorSpec([None, NUM_LEVELS], tf.int32),
      "user_id": tf.TensorSpec([None], tf.string),
      "item_id": tf.TensorSpec([None], tf.string),
    },
    output_names=("ctr", SECOND_LABEL),
    embedding_key=None,
    max_batch_size=max_batch_size,
    value_bounds={"codes": NUM_CODES},
  )


def build(
  max_batch_size: int = 10_000, model_class=StandInRanker
) -> tuple[StandInRanker, signatures.ServingModule]:
  """The stand-in model (weights built) and a ServingModule wrapping it (all four signatures)."""
  model = model_class(train_spm())
  model(sample_inputs(2))
  predict = lambda features: model(features, training=False)  # noqa: E731
  module = signatures.ServingModule(
    predict_fn=predict,
    contract=contract(max_batch_size),
    sid_fn=model.sid_codes,
    trackables={"model": model},
    codes_fn=predict,
    codes_contract=codes_contract(max_batch_size),
  )
  return model, module


def sample_inputs(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  return {
    "content_embedding": rng.normal(size=(batch, EMBEDDING_DIM)).astype("float32"),
    "user_id": np.array([f"user_{i % 3}".encode() for i in range(batch)], dtype=object),
    "item_id": np.array([f"item_{i}".encode() for i in range(batch)], dtype=object),
  }


def export(export_dir: str, max_batch_size: int = 10_000, model_class=StandInRanker):
  """Builds the stand-in and saves it with all four signatures to `export_dir`."""
  model, module = build(max_batch_size, model_class)
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
