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
