"""SentencePiece over semantic IDs (SPM-SID, Singh et al., RecSys 2024), inside the Keras graph.

Each (level, code) pair is one private-use character (`sid_symbols`) and an item's SID is the string
of its L symbols; a SentencePiece model trained on those strings (`spm_training`) splits a SID into
learned pieces: frequent code runs are one piece, rare ones fall back to shorter pieces, down to
single symbols.

In the graph no string is built and no TF Text op runs: `sid_segmentation` looks the spans of the
codes up in a trie of the model's pieces (a core `tf.lookup.StaticHashTable` with exact integer
keys) and runs the model's own decoder (unigram Viterbi or BPE merges) over the L levels, giving
exactly the piece ids of `sentencepiece.SentencePieceProcessor.encode`. The exported graph thus
needs only core TF ops: it serves on TF Serving's stock image (which embeds an old TF Text) and on
runtimes with no TF Text at all. The model proto never appears in the layer config: it is saved
inside the SavedModel, in a tracked one-entry lookup table (`ModelProtoResource`), beside the trie.

`check_model_proto` is the contract a model must meet (the trainer in `spm_training` produces such
models): every single (level, code) symbol is its own piece, so no SID ever maps to the unknown
token; no normalisation or dummy prefix changes the input; and every piece is a run of consecutive
levels in order.
"""

from typing import Dict

import numpy as np
import sentencepiece as spm
import tensorflow as tf

from features import sid_ngram, sid_segmentation, sid_symbols


def check_model_proto(model_proto: bytes, num_levels: int, codebook_size: int) -> Dict[str, int]:
  """Checks that a SentencePiece model tokenizes every SID without unknown tokens.

  Args:
    model_proto: bytes. A serialized SentencePiece `ModelProto`.
    num_levels: int. L.
    codebook_size: int. K.

  Returns:
    A dict with `vocab_size` and `max_piece_length` (in symbols).

  Raises:
    ValueError: if a symbol is missing or not kept as one piece, a piece holds a non-SID character
      or mixes levels out of order, or the model adds BOS/EOS tokens.
  """
  sid_symbols.check_capacity(num_levels, codebook_size)
  processor = spm.SentencePieceProcessor(model_proto=model_proto)
  vocab_size = processor.get_piece_size()
  if processor.bos_id() >= 0 or processor.eos_id() >= 0:
    raise ValueError(
      "SID SentencePiece models must have no BOS/EOS pieces (train with bos_id=eos_id=-1)."
    )
  symbols = list(sid_symbols.all_symbols(num_levels, codebook_size))
  encoded = processor.encode(symbols)
  unk = processor.unk_id()
  bad = [i for i, ids in enumerate(encoded) if len(ids) != 1 or ids[0] == unk]
  if bad:
    level, code = divmod(bad[0], codebook_size)
    raise ValueError(
      f"{len(bad)} of {len(symbols)} (level, code) symbols are not single pieces of the model, "
      f"first (level={level}, code={code}) -> ids {encoded[bad[0]]}. Every symbol must be in the "
      "vocabulary (required_chars) and the model must not normalise its input."
    )
  max_length = 1
  for piece_id in range(vocab_size):
    if processor.is_unknown(piece_id) or processor.is_control(piece_id):
      continue
    piece = processor.id_to_piece(piece_id)
    levels = [level for level, _ in sid_symbols.decode_piece(piece, codebook_size)]
    if levels != list(range(levels[0], levels[0] + len(levels))) or levels[-1] >= num_levels:
      raise ValueError(f"Piece {piece_id} mixes levels out of order: levels {levels}")
    max_length = max(max_length, len(levels))
  return {"vocab_size": vocab_size, "max_piece_length": max_length}


def piece_lengths(model_proto: bytes) -> np.ndarray:
  """Length in symbols of every piece id (0 for unknown and control pieces)."""
  processor = spm.SentencePieceProcessor(model_proto=model_proto)
  return np.array(
    [
      0 if processor.is_unknown(i) or processor.is_control(i) else len(processor.id_to_piece(i))
      for i in range(processor.get_piece_size())
    ],
    dtype=np.int64,
  )


class ModelProtoResource(tf.Module):
  """Keeps a model proto inside the SavedModel: a tracked one-entry lookup table, not a weight.

  Calling it (also after `tf.saved_model.load`) returns the proto as a scalar string tensor.

  Args:
    model_proto: bytes. The serialized SentencePiece model.
  """

  def __init__(self, model_proto: bytes):
    super().__init__(name="model_proto")
    self.table = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(
        tf.constant([0], tf.int64), tf.constant([model_proto], tf.string)
      ),
      default_value=b"",
    )

  @tf.function(input_signature=[])
  def __call__(self) -> tf.Tensor:
    return self.table.lookup(tf.constant(0, tf.int64))


@tf.keras.utils.register_keras_serializable(package="semantic_ids")
class SidSentencePiece(tf.keras.layers.Layer):
  """Maps semantic IDs to SentencePiece piece ids for one embedding table of `num_rows` rows.

  The ids are exactly those of `sentencepiece.SentencePieceProcessor.encode` on the SID strings
  (unigram and BPE models), computed with core TF ops only (see `sid_segmentation`).

  Args:
    model_proto: bytes. Serialized SentencePiece model over SID symbols (see `spm_training`). Saved
      in the SavedModel (the piece trie and `model_proto_resource`, both tracked lookup tables), not
      in the config.
    num_levels: int. L, codes per semantic ID.
    codebook_size: int. K, codes per level.

  Call arguments:
    codes: int[B, L] semantic IDs, each code in [0, K).

  Returns:
    tf.RaggedTensor int64 [B, (pieces)] of piece ids in [0, num_rows); 1 to L pieces per item.

  Raises:
    ValueError: if the model fails `check_model_proto` or `sid_segmentation.build_piece_trie`
      (word or char models, user-defined pieces, BPE with unused pieces).
  """

  def __init__(self, model_proto: bytes, num_levels: int, codebook_size: int, **kwargs):
    super().__init__(**kwargs)
    if not isinstance(model_proto, bytes) or not model_proto:
      raise ValueError(
        "`model_proto` must be the non-empty bytes of a SentencePiece model. "
        f"Received: {type(model_proto).__name__}"
      )
    stats = check_model_proto(model_proto, num_levels, codebook_size)
    self.num_levels = num_levels
    self.codebook_size = codebook_size
    self.num_rows = stats["vocab_size"]
    self.max_piece_length = stats["max_piece_length"]
    self.max_tokens = num_levels  # Pieces are non-empty runs of levels: at most L per SID.
    self._model_proto = model_proto
    trie = sid_segmentation.build_piece_trie(model_proto, num_levels, codebook_size)
    self.model_type = trie.model_type
    self.segmenter = sid_segmentation.SidPieceSegmenter(trie, name="segmenter")
    self.model_proto_resource = ModelProtoResource(model_proto)

  @classmethod
  def from_file(
    cls, path: str, num_levels: int, codebook_size: int, **kwargs
  ) -> "SidSentencePiece":
    """Builds the layer from a `.model` file written by `trainers.train_spm`."""
    with tf.io.gfile.GFile(path, "rb") as f:
      return cls(f.read(), num_levels=num_levels, codebook_size=codebook_size, **kwargs)

  @property
  def model_proto(self) -> bytes:
    """The serialized SentencePiece model."""
    return self._model_proto

  def call(self, codes: tf.Tensor) -> tf.RaggedTensor:
    codes = sid_ngram.checked_codes(codes, self.num_levels, self.codebook_size)
    return self.segmenter(codes)

  def get_config(self) -> dict:
    config = super().get_config()
    config.update({"num_levels": self.num_levels, "codebook_size": self.codebook_size})
    return config

  @classmethod
  def from_config(cls, config: dict) -> "SidSentencePiece":
    if "model_proto" not in config:
      raise ValueError(
        "SidSentencePiece keeps its model out of the config: rebuild it with "
        "SidSentencePiece.from_file(path, ...) or load the SavedModel with tf.saved_model.load."
      )
    return cls(**config)
