"""RQ-VAE: Dense encoder -> residual quantizer -> Dense decoder, trained with plain `model.fit`.

The recipe of Singh et al. (2024), after TIGER: latent 256, L = 8, K = 2048, beta = 0.25, loss =
reconstruction + sum over levels (beta * |r - sg(e)|^2 + |sg(r) - e|^2), straight-through gradients,
and after every step the codes unused in the batch are reset to residuals of random batch items (a
switch).

`save_rqvae` / `load_rqvae` store the config (JSON) and weights (TF checkpoint) in one directory,
atomically; `fingerprint` is the sha256 of the weights that decide the SIDs, which SID tables
record.
"""

import dataclasses
import json
import os
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from features import io_utils
from model import residual_quantizer, rqvae_metrics, semantic_id_encoder

CONFIG_FILE = "config.json"
WEIGHTS_PREFIX = "weights"
FORMAT_VERSION = 1


class RQVAEFormatError(ValueError):
  """Raised when a saved RQ-VAE is missing, incomplete or does not match its fingerprint."""


@dataclasses.dataclass
class RQVAEConfig:
  """Hyperparameters of the RQ-VAE (defaults: the paper's).

  Attributes:
    input_dim: int. D, the content embedding width.
    latent_dim: int. d, the latent width. Defaults to 256.
    num_levels: int. L, SID length. Defaults to 8.
    codebook_size: int. K, codes per level. Defaults to 2048.
    beta: float. Commitment weight. Defaults to 0.25.
    codebook_init: str. "kmeans" (first batch, TIGER) or "random". Defaults to "kmeans".
    kmeans_iterations: int. Lloyd iterations of the k-means initialisation. Defaults to 10.
    dead_code_reset: bool. Reset codes unused in each batch. Defaults to True.
    reset_interpolation: float in (0, 1]. Where a reset code goes, between a random batch item's
      current code (0) and its residual (1, the paper). Defaults to 1.0.
    encoder_activation: Optional str. Activation of the encoder Dense layer. Defaults to None
      (linear).
    learning_rate: float. Adam learning rate used by `compile_rqvae`. Defaults to 1e-3.
    seed: int. Seed of the initialisations. Defaults to 0.
  """

  input_dim: int
  latent_dim: int = 256
  num_levels: int = 8
  codebook_size: int = 2048
  beta: float = 0.25
  codebook_init: str = "kmeans"
  kmeans_iterations: int = 10
  dead_code_reset: bool = True
  reset_interpolation: float = 1.0
  encoder_activation: Optional[str] = None
  learning_rate: float = 1e-3
  seed: int = 0

  def __post_init__(self):
    for name in ("input_dim", "latent_dim", "num_levels", "codebook_size"):
      value = getattr(self, name)
      if not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    if self.codebook_size < 2:
      raise ValueError(
        f"`codebook_size` must be at least 2. Received: codebook_size={self.codebook_size}"
      )
    if self.learning_rate <= 0:
      raise ValueError(
        f"`learning_rate` must be positive. Received: learning_rate={self.learning_rate}"
      )
    if not 0.0 < self.reset_interpolation <= 1.0:
      raise ValueError(
        "`reset_interpolation` must be in (0, 1]. "
        f"Received: reset_interpolation={self.reset_interpolation}"
      )
    allowed = [m.value for m in residual_quantizer.CodebookInit]
    if self.codebook_init not in allowed:
      raise ValueError(
        f"`codebook_init` must be one of {allowed}. Received: codebook_init={self.codebook_init!r}"
      )


@tf.keras.utils.register_keras_serializable(package="semantic_ids")
class RQVAE(tf.keras.Model):
  """Residual-quantized variational autoencoder over content embeddings.

  Args:
    config: RQVAEConfig (or its dict). The hyperparameters.
    **kwargs: base Model arguments.

  Call arguments:
    inputs: float32[B, D]. Content embeddings.
    training: bool. Runs the k-means initialisation on the first training call.

  Returns:
    The quantizer's dict (`codes`, `quantized`, `residual_norms`, `residuals`, `commitment_loss`,
    `codebook_loss`) plus `latent` [B, d] and `reconstruction` [B, D].
  """

  def __init__(self, config, **kwargs):
    super().__init__(**kwargs)
    if isinstance(config, dict):
      config = RQVAEConfig(**config)
    self.config = config
    self.encoder = tf.keras.layers.Dense(
      config.latent_dim, activation=config.encoder_activation, name="encoder"
    )
    self.quantizer = residual_quantizer.ResidualQuantizer(
      num_levels=config.num_levels,
      codebook_size=config.codebook_size,
      beta=config.beta,
      codebook_init=config.codebook_init,
      kmeans_iterations=config.kmeans_iterations,
      dead_code_reset=config.dead_code_reset,
      reset_interpolation=config.reset_interpolation,
      seed=config.seed,
      name="quantizer",
    )
    self.decoder = tf.keras.layers.Dense(config.input_dim, name="decoder")
    self._trackers = {
      name: tf.keras.metrics.Mean(name=name)
      for name in ("loss", "reconstruction_loss", "commitment_loss", "codebook_loss", "codes_reset")
    }
    self.code_usage = rqvae_metrics.CodeUsage(config.num_levels, config.codebook_size)

  def call(self, inputs, training=None) -> Dict[str, tf.Tensor]:
    latent = self.encoder(inputs)
    outputs = dict(self.quantizer(latent, training=training))
    outputs["latent"] = latent
    outputs["reconstruction"] = self.decoder(outputs["quantized"])
    return outputs

  def compute_losses(
    self, inputs: tf.Tensor, outputs: Dict[str, tf.Tensor]
  ) -> Dict[str, tf.Tensor]:
    """Reconstruction MSE, summed commitment and codebook losses, and their total `loss`."""
    recon = tf.reduce_mean(tf.square(inputs - outputs["reconstruction"]))
    commitment = tf.reduce_sum(outputs["commitment_loss"])
    codebook = tf.reduce_sum(outputs["codebook_loss"])
    return {
      "loss": recon + commitment + codebook,
      "reconstruction_loss": recon,
      "commitment_loss": commitment,
      "codebook_loss": codebook,
    }

  @property
  def metrics(self):
    return list(self._trackers.values()) + [self.code_usage]

  def _update_metrics(self, losses, codes, replaced) -> Dict[str, tf.Tensor]:
    for name, value in losses.items():
      self._trackers[name].update_state(value)
    self._trackers["codes_reset"].update_state(tf.reduce_mean(tf.cast(replaced, tf.float32)))
    self.code_usage.update_state(codes)
    return self.get_metrics_result()

  @staticmethod
  def _features(data):
    return data[0] if isinstance(data, (tuple, list)) else data

  def train_step(self, data):
    inputs = tf.convert_to_tensor(self._features(data), tf.float32)
    with tf.GradientTape() as tape:
      outputs = self(inputs, training=True)
      losses = self.compute_losses(inputs, outputs)
    variables = self.trainable_variables
    self.optimizer.apply_gradients(zip(tape.gradient(losses["loss"], variables), variables))
    replaced = self.quantizer.reset_dead_codes(outputs["residuals"], outputs["codes"])
    return self._update_metrics(losses, outputs["codes"], replaced)

  def test_step(self, data):
    inputs = tf.convert_to_tensor(self._features(data), tf.float32)
    outputs = self(inputs, training=False)
    losses = self.compute_losses(inputs, outputs)
    return self._update_metrics(losses, outputs["codes"], tf.zeros([1], tf.int32))

  def sid_weights(self) -> Tuple[np.ndarray, np.ndarray, list]:
    """(encoder kernel [D, d], encoder bias [d], [codebook [K, d]] * L) as NumPy arrays."""
    kernel, bias = (w.numpy() for w in self.encoder.weights)
    return kernel, bias, [c.numpy() for c in self.quantizer.codebooks]

  def assign_codes(self, embeddings: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    """Semantic IDs int32[N, L] of content embeddings [N, D], with the current weights."""
    kernel, bias, codebooks = self.sid_weights()
    return semantic_id_encoder.assign_codes(
      embeddings, kernel, bias, np.stack(codebooks), self.config.encoder_activation, batch_size
    )

  def reconstruction_mse(self, embeddings: np.ndarray, batch_size: int = 8192) -> float:
    """Mean squared reconstruction error over every element of `embeddings` [N, D] (inference)."""
    total = 0.0
    for i in range(0, len(embeddings), batch_size):
      chunk = tf.constant(embeddings[i : i + batch_size], tf.float32)
      total += float(self._squared_error(chunk))
    return total / max(int(np.size(embeddings)), 1)

  @tf.function(reduce_retracing=True)
  def _squared_error(self, inputs: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.square(inputs - self(inputs, training=False)["reconstruction"]))

  def get_config(self):
    return {"config": dataclasses.asdict(self.config), "name": self.name}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)


def build_rqvae(config: RQVAEConfig) -> RQVAE:
  """An RQVAE with its weights created, compiled with Adam(config.learning_rate)."""
  model = RQVAE(config, name="rqvae")
  model(tf.zeros([1, config.input_dim]), training=False)
  model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
  return model


def fingerprint(model: RQVAE) -> str:
  """sha256 of the weights that decide the SIDs (encoder and codebooks)."""
  kernel, bias, codebooks = model.sid_weights()
  return semantic_id_encoder.weights_fingerprint(
    kernel, bias, codebooks, model.config.encoder_activation
  )


class SidStatsCallback(tf.keras.callbacks.Callback):
  """At each epoch end, assigns SIDs to all `embeddings` and adds their quality to the logs.

  Adds `unique_sid_fraction`, `max_items_per_sid` and `item_utilization_l` (fraction of level l's
  codes used by the items) to `logs`, so they reach the History and later callbacks.
  """

  def __init__(self, embeddings: np.ndarray, batch_size: int = 8192):
    super().__init__()
    self.embeddings = embeddings
    self.batch_size = batch_size

  def on_epoch_end(self, epoch, logs=None):
    if logs is None:
      return
    codes = self.model.assign_codes(self.embeddings, self.batch_size)
    stats = rqvae_metrics.sid_stats(codes, self.model.config.codebook_size)
    logs["unique_sid_fraction"] = stats["unique_sid_fraction"]
    logs["max_items_per_sid"] = stats["max_items_per_sid"]
    for level, value in enumerate(stats["utilization"]):
      logs[f"item_utilization_{level}"] = value


def save_rqvae(model: RQVAE, directory: str) -> str:
  """Writes config, weights and fingerprint to `directory` atomically (`io_utils.atomic_dir`).

  Returns:
    The fingerprint.
  """
  digest = fingerprint(model)
  meta = {
    "format_version": FORMAT_VERSION,
    "config": dataclasses.asdict(model.config),
    "fingerprint": digest,
  }
  with io_utils.atomic_dir(directory) as staging:
    model.save_weights(os.path.join(staging, WEIGHTS_PREFIX))
    io_utils.write_json(os.path.join(staging, CONFIG_FILE), meta)
  return digest


def load_rqvae(directory: str) -> RQVAE:
  """Loads an RQVAE written by `save_rqvae` (or `trainers.train_rqvae`), checking its fingerprint.

  Raises:
    RQVAEFormatError: when the directory or its config is missing or unreadable, or the weights do
      not match the recorded fingerprint.
  """
  config_path = os.path.join(directory, CONFIG_FILE)
  if not os.path.isfile(config_path):
    raise RQVAEFormatError(
      f"No RQ-VAE at {directory!r}: {CONFIG_FILE} is missing. Pass the `model` directory "
      "written by trainers.train_rqvae (DIR/model)."
    )
  try:
    with open(config_path) as f:
      meta = json.load(f)
    config = RQVAEConfig(**meta["config"])
  except (ValueError, KeyError, TypeError) as e:
    raise RQVAEFormatError(f"Unreadable RQ-VAE config {config_path!r}: {e}") from e
  model = build_rqvae(config)
  try:
    model.load_weights(os.path.join(directory, WEIGHTS_PREFIX)).expect_partial()
  except (tf.errors.OpError, ValueError, IndexError) as e:  # IndexError: a truncated file.
    raise RQVAEFormatError(
      f"Cannot read the RQ-VAE weights in {directory!r} ({type(e).__name__}: {e}); the files are "
      "truncated or corrupt: train it again."
    ) from e
  actual = fingerprint(model)
  if meta.get("fingerprint") != actual:
    raise RQVAEFormatError(
      f"RQ-VAE weights in {directory!r} do not match the recorded fingerprint "
      f"{meta.get('fingerprint')!r} (computed {actual!r}): the directory is corrupt or mixed."
    )
  return model
