"""The one artifact cache behind the ranker jobs: RQ-VAE -> semantic IDs -> SentencePiece models.

`SidArtifacts` trains (or loads) the frozen RQ-VAE once, assigns every item's SID once and trains
one SentencePiece model per vocabulary on the fit split's impressions, caching each under a folder:

  DIR/rqvae/                   the RQ-VAE (`model.rqvae.save_rqvae`)
  DIR/rqvae.identity.json      what made it: the SID config and the data's fingerprint
  DIR/spm/spm_<V>.model        SentencePiece model with V pieces
  DIR/spm/spm_<V>.identity.json  what made it: the RQ-VAE fingerprint, V, the impressions' digest

An artifact is reused only when its identity file matches what the job would make now; otherwise
it is made again (and replaced atomically). `trainers.pipeline`, `trainers.experiment` and
`trainers.train_ranker` all get their encoder and SPM models from here.
"""

import dataclasses
import hashlib
import json
import os
from typing import Any, Dict, Optional, Tuple

import numpy as np
import pandas as pd
import sentencepiece as spm
import tensorflow as tf

from features import io_utils, schema, splits, spm_training
from model import rqvae as rqvae_lib
from model import schemes, semantic_id_encoder


@dataclasses.dataclass
class SidConfig:
  """The RQ-VAE the ranker jobs train when none is given; small-corpus defaults (DESIGN.md).

  Attributes:
    num_levels: int. L, codes per semantic ID. Defaults to 3.
    codebook_size: int. K, codes per level. Defaults to 64.
    latent_dim: int. d, the latent width. Defaults to 64.
    epochs: int. RQ-VAE training epochs. Defaults to 20.
    batch_size: int. Items per RQ-VAE step. Defaults to 256.
    seed: int. Initialisation and shuffling seed. Defaults to 0.
    reset_interpolation: float. Dead-code reset step (0.3, a split of a busy code, rather than the
      paper's 1.0: more codes used and more unique SIDs; README). Defaults to 0.3.
  """

  num_levels: int = 3
  codebook_size: int = 64
  latent_dim: int = 64
  epochs: int = 20
  batch_size: int = 256
  seed: int = 0
  reset_interpolation: float = 0.3


def data_fingerprint(dataset: schema.Dataset, with_interactions: bool = False) -> str:
  """sha256 of the item ids and content embeddings (what an RQ-VAE is trained on) and, with
  `with_interactions`, of every interaction column too (what a ranker is trained on)."""
  digest = hashlib.sha256()
  digest.update(_column_bytes(dataset.items["item_id"]))
  digest.update(np.ascontiguousarray(dataset.embeddings, np.float32).tobytes())
  if with_interactions:
    for name in sorted(dataset.interactions.columns):
      digest.update(name.encode())
      digest.update(_column_bytes(dataset.interactions[name]))
  return digest.hexdigest()


def _column_bytes(column: pd.Series) -> bytes:
  """The values' bytes; strings as fixed-width UTF-32 (object arrays hold pointers, not values)."""
  values = column.to_numpy()
  if values.dtype.kind in "OUS":
    values = np.asarray([str(v) for v in values], dtype=str)
  return np.ascontiguousarray(values).tobytes()


def bytes_digest(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def array_digest(values: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()


def train_rqvae(dataset: schema.Dataset, config: SidConfig, verbose: int = 0) -> rqvae_lib.RQVAE:
  """Trains a small RQ-VAE on every item's content embedding (content only, no labels)."""
  tf.keras.utils.set_random_seed(config.seed)
  model = rqvae_lib.build_rqvae(
    rqvae_lib.RQVAEConfig(
      input_dim=dataset.embedding_dim,
      latent_dim=config.latent_dim,
      num_levels=config.num_levels,
      codebook_size=config.codebook_size,
      reset_interpolation=config.reset_interpolation,
      seed=config.seed,
    )
  )
  data = tf.data.Dataset.from_tensor_slices(dataset.embeddings.astype(np.float32))
  data = data.shuffle(len(dataset.embeddings), seed=config.seed).batch(config.batch_size)
  model.fit(data, epochs=config.epochs, verbose=verbose)
  return model


def impressions_per_item(dataset: schema.Dataset, interactions: pd.DataFrame) -> np.ndarray:
  """Impression counts aligned with `dataset.items` rows."""
  rows = dataset.item_index(interactions["item_id"].to_numpy())
  return np.bincount(rows[rows >= 0], minlength=dataset.n_items).astype(np.int64)


def spm_vocab_size(budget: int, num_levels: int, codebook_size: int) -> int:
  """The vocabulary an SPM model gets for a row budget (at least every symbol plus <unk>)."""
  return int(schemes.get(schemes.SPM).rows(budget, num_levels, codebook_size))


def train_spm(codes: np.ndarray, weights: np.ndarray, codebook_size: int, vocab_size: int) -> bytes:
  """A SentencePiece model over SIDs weighted by impressions, vocabulary budget `vocab_size`."""
  vocab = spm_vocab_size(vocab_size, codes.shape[1], codebook_size)
  config = spm_training.SpmTrainingConfig(vocab_size=vocab)
  return spm_training.train_sid_spm(codes, weights, codebook_size, config)


def check_spm_proto(proto: bytes, path: str) -> None:
  """Raises ValueError naming `path` unless `proto` parses as a SentencePiece model."""
  try:
    spm.SentencePieceProcessor(model_proto=proto)
  except (RuntimeError, TypeError, ValueError) as e:
    raise ValueError(f"{path} is not a readable SentencePiece model (truncated or corrupt): {e}")


def _read_identity(path: str) -> Optional[Dict[str, Any]]:
  try:
    with tf.io.gfile.GFile(path) as f:
      return json.load(f)
  except (tf.errors.NotFoundError, json.JSONDecodeError, UnicodeDecodeError):
    return None


def _jsonable(obj: Dict[str, Any]) -> Dict[str, Any]:
  return json.loads(json.dumps(obj, sort_keys=True))


class SidArtifacts:
  """The RQ-VAE, the item SIDs and the SPM models of one dataset and split, cached in a folder.

  Args:
    dataset: schema.Dataset. Every item's content embedding.
    split: splits.Split. SPM models are trained on the impressions of its fit part (the training
      period minus the validation slice), never on evaluation rows.
    directory: str. The cache folder (see the module docstring).
    config: SidConfig. The RQ-VAE to train when `rqvae_dir` is None.
    rqvae_dir: Optional str. A trained RQ-VAE (`trainers.train_rqvae`'s model/) to use as is.
    verbose: int. Keras verbosity of RQ-VAE training.
  """

  def __init__(
    self,
    dataset: schema.Dataset,
    split: splits.Split,
    directory: str,
    config: Optional[SidConfig] = None,
    rqvae_dir: Optional[str] = None,
    verbose: int = 2,
  ):
    self.dataset, self.split, self.directory = dataset, split, directory
    self.config = config or SidConfig()
    self.rqvae_dir = rqvae_dir
    self.verbose = verbose
    self._rqvae: Optional[rqvae_lib.RQVAE] = None
    self._codes: Optional[np.ndarray] = None
    self._spm: Dict[int, bytes] = {}
    self._impressions: Optional[np.ndarray] = None

  def _rqvae_identity(self) -> Dict[str, Any]:
    return _jsonable(
      {"sid_config": dataclasses.asdict(self.config), "data": data_fingerprint(self.dataset)}
    )

  @property
  def rqvae(self) -> rqvae_lib.RQVAE:
    """The frozen RQ-VAE: `rqvae_dir`'s, the cached one when its identity matches, or a new one."""
    if self._rqvae is None:
      if self.rqvae_dir:
        self._rqvae = rqvae_lib.load_rqvae(self.rqvae_dir)
        if self._rqvae.config.input_dim != self.dataset.embedding_dim:
          raise ValueError(
            f"--rqvae_dir={self.rqvae_dir} expects D={self._rqvae.config.input_dim}; the data "
            f"has D={self.dataset.embedding_dim}."
          )
      else:
        self._rqvae = self._cached_rqvae()
    return self._rqvae

  def _cached_rqvae(self) -> rqvae_lib.RQVAE:
    path = os.path.join(self.directory, "rqvae")
    identity_path = path + ".identity.json"
    identity = self._rqvae_identity()
    if _read_identity(identity_path) == identity:
      try:
        model = rqvae_lib.load_rqvae(path)
        print(f"reusing {path}")
        return model
      except (rqvae_lib.RQVAEFormatError, OSError, ValueError, tf.errors.OpError) as e:
        print(f"{path} is unreadable ({e}); training it again")
    elif tf.io.gfile.exists(path):
      print(f"{path} was made from other data or settings; training it again")
    print("training the RQ-VAE ...")
    model = train_rqvae(self.dataset, self.config, verbose=self.verbose)
    rqvae_lib.save_rqvae(model, path)
    io_utils.write_json(identity_path, identity)
    return model

  @property
  def num_levels(self) -> int:
    return int(self.rqvae.config.num_levels)

  @property
  def codebook_size(self) -> int:
    return int(self.rqvae.config.codebook_size)

  @property
  def fingerprint(self) -> str:
    return rqvae_lib.fingerprint(self.rqvae)

  @property
  def codes(self) -> np.ndarray:
    """Every item's SID, int32[n_items, L] (assigned once)."""
    if self._codes is None:
      self._codes = self.rqvae.assign_codes(self.dataset.embeddings)
    return self._codes

  def encoder(self) -> semantic_id_encoder.SemanticIdEncoder:
    """A fresh frozen encoder holding the RQ-VAE's weights (one per ranker)."""
    return semantic_id_encoder.SemanticIdEncoder.from_rqvae(self.rqvae, name="sid_encoder")

  def impressions(self) -> np.ndarray:
    """Impressions per item on the fit split (the training period minus validation)."""
    if self._impressions is None:
      fit = validation_split(self.split).train
      self._impressions = impressions_per_item(self.dataset, fit)
    return self._impressions

  def spm(self, budget: int) -> bytes:
    """The SPM model for a row budget (vocabulary `spm_vocab_size(budget)`), cached by identity."""
    vocab = spm_vocab_size(budget, self.num_levels, self.codebook_size)
    if vocab not in self._spm:
      path = os.path.join(self.directory, "spm", f"spm_{vocab}.model")
      identity = _jsonable(
        {
          "rqvae": self.fingerprint,
          "vocab_size": vocab,
          "impressions": array_digest(self.impressions()),
        }
      )
      proto = None
      if _read_identity(path + ".identity.json") == identity and tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path, "rb") as f:
          proto = f.read()
        try:
          check_spm_proto(proto, path)
        except ValueError as e:
          print(f"{e}; training it again")
          proto = None
      if proto is None:
        proto = train_spm(self.codes, self.impressions(), self.codebook_size, vocab)
        io_utils.write_bytes(path, proto)
        io_utils.write_json(path + ".identity.json", identity)
        print(f"wrote {path}")
      self._spm[vocab] = proto
    return self._spm[vocab]

  def for_config(
    self, config: schemes.ItemRepresentationConfig
  ) -> Tuple[Optional[semantic_id_encoder.SemanticIdEncoder], Optional[bytes]]:
    """(sid_encoder, spm_model_proto) that `schemes.create(config, ...)` needs (None when not)."""
    spec = config.spec
    encoder = self.encoder() if spec.uses_sid else None
    budget = spec.spm_budget(config)
    proto = self.spm(budget) if budget is not None else None
    return encoder, proto


def validation_split(split: splits.Split) -> splits.Split:
  """Carves a validation split out of `split.train` with the same protocol and parameters."""
  params = {k: v for k, v in split.params.items() if v is not None}
  if split.method is splits.SplitMethod.GLOBAL_TIME:
    params.pop("split_time", None)
    return splits.global_time_split(split.train, **params)
  return splits.new_items_split(split.train, first_seen=split.first_seen, **params)
