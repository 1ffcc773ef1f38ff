"""The frozen RQ-VAE encoder + residual quantizer as one layer: content embedding -> semantic ID.

This is what a ranker embeds in its serving graph: it holds only the weights that decide the SID
(the encoder's Dense kernel and bias, and the L codebooks), is deterministic, and has no
training-time behaviour. `SemanticIdEncoder.from_rqvae(rqvae_model)` copies them out of a trained
`model.rqvae.RQVAE`.

`weights_fingerprint` hashes exactly those weights; `model.rqvae.fingerprint` and
`SemanticIdEncoder.fingerprint()` agree, and SID tables carry it to detect a table made by another
RQ-VAE.
"""

import hashlib
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
import tqdm

from model import residual_quantizer


def weights_fingerprint(
  kernel: np.ndarray,
  bias: np.ndarray,
  codebooks: Sequence[np.ndarray],
  activation: Optional[str] = None,
) -> str:
  """sha256 (hex) of the SID-deciding weights: encoder kernel, bias, codebooks, activation."""
  digest = hashlib.sha256()
  digest.update(f"activation={activation or 'linear'};levels={len(codebooks)};".encode())
  for array in (kernel, bias, *codebooks):
    array = np.ascontiguousarray(np.asarray(array, dtype="<f4"))
    digest.update(repr(array.shape).encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def codes_from_weights(
  inputs: tf.Tensor,
  kernel: tf.Tensor,
  bias: tf.Tensor,
  codebooks: tf.Tensor,
  activation: str = "linear",
) -> tf.Tensor:
  """SIDs int32[B, L] of `inputs` [B, D]: encoder kernel [D, d], bias [d], codebooks [L, K, d]."""
  latent = tf.keras.activations.get(activation)(tf.matmul(inputs, kernel) + bias)
  codes, _, _ = residual_quantizer.quantize(latent, tf.unstack(codebooks, axis=0))
  return codes


encode_codes = tf.function(codes_from_weights)


def assign_codes(
  embeddings: np.ndarray,
  kernel: np.ndarray,
  bias: np.ndarray,
  codebooks: np.ndarray,
  activation: Optional[str] = None,
  batch_size: int = 2048,
  progress: bool = False,
) -> np.ndarray:
  """The one SID assignment loop: codes int32[N, L] of `embeddings` [N, D], batch by batch.

  Every batch is padded to `batch_size` rows, so one traced function serves every batch (and the
  codes do not depend on where a batch boundary falls). `RQVAE.assign_codes`,
  `SemanticIdEncoder.assign_codes` and the batch job `trainers.assign_sids` all call this.

  Args:
    embeddings: float[N, D].
    kernel, bias, codebooks: the encoder's weights ([D, d], [d], [L, K, d]).
    activation: Optional str. The encoder's activation (None: linear).
    batch_size: int. Rows per encoding batch. Defaults to 2048.
    progress: bool. Show a progress bar. Defaults to False.
  """
  if batch_size <= 0:
    raise ValueError(f"`batch_size` must be positive. Received: batch_size={batch_size}")
  codebooks = np.asarray(codebooks, np.float32)
  weights = (tf.constant(kernel, tf.float32), tf.constant(bias, tf.float32), tf.constant(codebooks))
  out = np.zeros((len(embeddings), codebooks.shape[0]), np.int32)
  bar = tqdm.tqdm(total=len(embeddings), unit="item", desc="assigning SIDs", disable=not progress)
  with bar:
    for start in range(0, len(embeddings), batch_size):
      chunk = np.asarray(embeddings[start : start + batch_size], np.float32)
      padded = np.zeros((batch_size, chunk.shape[1]), np.float32)
      padded[: len(chunk)] = chunk
      codes = encode_codes(tf.constant(padded), *weights, activation or "linear")
      out[start : start + len(chunk)] = codes.numpy()[: len(chunk)]
      bar.update(len(chunk))
  return out


@tf.keras.utils.register_keras_serializable(package="semantic_ids")
class SemanticIdEncoder(tf.keras.layers.Layer):
  """Maps content embeddings float32[B, D] to semantic IDs int32[B, L] with frozen RQ-VAE weights.

  Args:
    num_levels: int. L, the SID length.
    codebook_size: int. K, codes per level.
    input_dim: int. D, the content embedding width.
    latent_dim: int. d, the RQ-VAE latent width.
    encoder_activation: Optional str. Activation of the encoder's Dense layer. Defaults to None
      (linear).
    **kwargs: base Layer arguments; `trainable` defaults to False (frozen).

  Call arguments:
    inputs: float32[B, D]. Content embeddings.

  Returns:
    int32[B, L]: the codes, coarse to fine.

  Example:
    ```python
    encoder = SemanticIdEncoder.from_rqvae(rqvae.load_rqvae("runs/rqvae/model"))
    codes = encoder(embeddings)  # int32[B, L]
    ```
  """

  def __init__(
    self,
    num_levels: int,
    codebook_size: int,
    input_dim: int,
    latent_dim: int,
    encoder_activation: Optional[str] = None,
    **kwargs,
  ):
    kwargs.setdefault("trainable", False)
    super().__init__(**kwargs)
    for name, value in (
      ("num_levels", num_levels),
      ("codebook_size", codebook_size),
      ("input_dim", input_dim),
      ("latent_dim", latent_dim),
    ):
      if value <= 0:
        raise ValueError(f"`{name}` must be positive. Received: {name}={value}")
    self.num_levels = num_levels
    self.codebook_size = codebook_size
    self.input_dim = input_dim
    self.latent_dim = latent_dim
    self.encoder_activation = encoder_activation
    tf.keras.activations.get(encoder_activation)  # Fails early on an unknown name.

  def build(self, input_shape=None):
    self.encoder_kernel = self.add_weight(
      name="encoder_kernel", shape=(self.input_dim, self.latent_dim), initializer="zeros"
    )
    self.encoder_bias = self.add_weight(
      name="encoder_bias", shape=(self.latent_dim,), initializer="zeros"
    )
    self.codebooks = self.add_weight(
      name="codebooks",
      shape=(self.num_levels, self.codebook_size, self.latent_dim),
      initializer="zeros",
    )
    super().build(input_shape)

  def call(self, inputs: tf.Tensor) -> tf.Tensor:
    return codes_from_weights(
      tf.cast(inputs, tf.float32),
      self.encoder_kernel,
      self.encoder_bias,
      tf.convert_to_tensor(self.codebooks),
      self.encoder_activation or "linear",
    )

  def compute_output_shape(self, input_shape):
    return tf.TensorShape([input_shape[0], self.num_levels])

  def assign_codes(
    self, embeddings: np.ndarray, batch_size: int = 2048, progress: bool = False
  ) -> np.ndarray:
    """Codes int32[N, L] of `embeddings` [N, D] (the shared loop `assign_codes`).

    Raises:
      ValueError: if the embeddings' width is not `input_dim`.
    """
    if embeddings.ndim != 2 or embeddings.shape[1] != self.input_dim:
      raise ValueError(
        f"The embeddings have shape {embeddings.shape}, but the RQ-VAE expects width "
        f"D={self.input_dim}. Use the dataset the RQ-VAE was trained on."
      )
    return assign_codes(
      embeddings,
      self.encoder_kernel.numpy(),
      self.encoder_bias.numpy(),
      self.codebooks.numpy(),
      self.encoder_activation,
      batch_size,
      progress,
    )

  def fingerprint(self) -> str:
    """sha256 of the weights that decide the SID (equals `model.rqvae.fingerprint` of the source
    RQ-VAE).
    """
    return weights_fingerprint(
      self.encoder_kernel.numpy(),
      self.encoder_bias.numpy(),
      list(self.codebooks.numpy()),
      self.encoder_activation,
    )

  @classmethod
  def from_rqvae(cls, rqvae_model, **kwargs) -> "SemanticIdEncoder":
    """Builds a frozen encoder holding copies of a trained RQVAE's encoder and codebooks.

    Args:
      rqvae_model: model.rqvae.RQVAE. A built (trained or loaded) RQ-VAE.
      **kwargs: Layer arguments (name, trainable, ...).
    """
    config = rqvae_model.config
    layer = cls(
      num_levels=config.num_levels,
      codebook_size=config.codebook_size,
      input_dim=config.input_dim,
      latent_dim=config.latent_dim,
      encoder_activation=config.encoder_activation,
      **kwargs,
    )
    layer.build(tf.TensorShape([None, config.input_dim]))
    kernel, bias, codebooks = rqvae_model.sid_weights()
    layer.encoder_kernel.assign(kernel)
    layer.encoder_bias.assign(bias)
    layer.codebooks.assign(np.stack(codebooks))
    return layer

  def get_config(self):
    config = super().get_config()
    config.update(
      {
        "num_levels": self.num_levels,
        "codebook_size": self.codebook_size,
        "input_dim": self.input_dim,
        "latent_dim": self.latent_dim,
        "encoder_activation": self.encoder_activation,
      }
    )
    return config
