"""Residual quantization: L levels of K codes over a latent vector, coarse to fine.

Level l picks the code nearest (squared L2) to the residual left by levels 0..l-1 and subtracts it,
so the sum of the chosen codes approximates the latent. Nearest-code search is one matrix product
per level, `|r|^2 - 2 r C^T + |C|^2`, never a loop over codes.

The pure functions here (`squared_distances`, `nearest_code`, `residual_step`, `quantize`, `kmeans`)
hold the math; `ResidualQuantizer` owns the codebooks, the losses of the RQ-VAE recipe (Singh et al.
2024, after TIGER) and the dead-code reset.
"""

import enum
from typing import Dict, List, Sequence, Tuple

import tensorflow as tf


class CodebookInit(enum.Enum):
  """How codebooks start. KMEANS runs k-means on the first training batch, level by level
  (TIGER).
  """

  RANDOM = "random"
  KMEANS = "kmeans"


def squared_distances(x: tf.Tensor, codebook: tf.Tensor) -> tf.Tensor:
  """Squared L2 distances between rows of `x` [B, d] and codes [K, d], as [B, K]."""
  x_norm = tf.reduce_sum(tf.square(x), axis=-1, keepdims=True)
  c_norm = tf.reduce_sum(tf.square(codebook), axis=-1)
  return x_norm - 2.0 * tf.matmul(x, codebook, transpose_b=True) + c_norm[tf.newaxis, :]


def nearest_code(x: tf.Tensor, codebook: tf.Tensor) -> tf.Tensor:
  """Index int32[B] of the code nearest each row of `x` (ties go to the lowest index)."""
  # |x|^2 is the same for every code of a row, so it does not change the argmin.
  scores = tf.reduce_sum(tf.square(codebook), axis=-1)[tf.newaxis, :] - 2.0 * tf.matmul(
    x, codebook, transpose_b=True
  )
  return tf.argmin(scores, axis=-1, output_type=tf.int32)


def residual_step(
  residual: tf.Tensor, codebook: tf.Tensor
) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """One quantization level.

  Args:
    residual: float[B, d]. What the previous levels left.
    codebook: float[K, d]. This level's codes.

  Returns:
    `(codes int32[B], chosen codes float[B, d], next residual float[B, d])`.
  """
  codes = nearest_code(residual, codebook)
  chosen = tf.gather(codebook, codes)
  return codes, chosen, residual - chosen


def quantize(
  x: tf.Tensor, codebooks: Sequence[tf.Tensor]
) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """Greedy residual quantization of `x` [B, d] with one codebook per level.

  Returns:
    `(codes int32[B, L], quantized float[B, d] (sum of chosen codes), residuals float[B, L, d])`,
    where `residuals[:, l]` is the input of level l (so `residuals[:, 0] == x`).
  """
  residual = x
  codes, residuals = [], []
  quantized = tf.zeros_like(x)
  for codebook in codebooks:
    residuals.append(residual)
    level_codes, chosen, residual = residual_step(residual, codebook)
    codes.append(level_codes)
    quantized += chosen
  return tf.stack(codes, axis=1), quantized, tf.stack(residuals, axis=1)


def kmeans(x: tf.Tensor, k: int, iterations: int = 10, seed: int = 0) -> tf.Tensor:
  """Lloyd's k-means of the rows of `x` [N, d]; returns float[k, d] centroids.

  Centroids start at k random rows (drawn with replacement when N < k); an empty cluster keeps its
  centroid.
  """
  n = tf.shape(x)[0]
  seeds = tf.random.stateless_uniform([2], seed=[seed, 0], maxval=2**31 - 1, dtype=tf.int32)
  draws = tf.random.stateless_uniform([k], seed=seeds, maxval=n, dtype=tf.int32)
  permuted = tf.random.experimental.stateless_shuffle(tf.range(n), seed=seeds)
  index = tf.cond(n >= k, lambda: permuted[:k], lambda: draws)
  centroids = tf.gather(x, index)
  for _ in range(iterations):
    assignment = nearest_code(x, centroids)
    sums = tf.math.unsorted_segment_sum(x, assignment, k)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(x[:, :1]), assignment, k)
    centroids = tf.where(counts > 0, sums / tf.maximum(counts, 1.0), centroids)
  return centroids


def unused_code_mask(codes: tf.Tensor, codebook_size: int) -> tf.Tensor:
  """bool[K]: True for the codes that no row of `codes` int32[B] chose."""
  counts = tf.math.bincount(codes, minlength=codebook_size, maxlength=codebook_size)
  return tf.equal(counts, 0)


@tf.keras.utils.register_keras_serializable(package="semantic_ids")
class ResidualQuantizer(tf.keras.layers.Layer):
  """L codebooks of K codes: latent [B, d] -> codes int32[B, L], with straight-through gradients.

  Args:
    num_levels: int. L, the number of codebooks (SID length). Defaults to 8.
    codebook_size: int. K, the codes per level. Defaults to 2048.
    beta: float. Weight of the commitment loss |r - sg(e)|^2. Defaults to 0.25.
    codebook_init: str or CodebookInit. "kmeans" (on the first training batch) or "random". Defaults
      to "kmeans".
    kmeans_iterations: int. Lloyd iterations for the k-means initialisation. Defaults to 10.
    dead_code_reset: bool. When `reset_dead_codes` is called (every training step of `RQVAE`),
      replace codes unused in the batch by residuals of random items of the batch. Defaults to True.
    reset_interpolation: float in (0, 1]. A reset code goes to `e + t * (r - e)`, where r is the
      random item's residual and e its current code: 1 is the paper (the residual itself); smaller
      values split a busy code, which in high dimensions is what lets the new code win items (a
      lone data point is farther from its neighbours than their centroid is). Defaults to 1.0.
    seed: int. Seed of the k-means initialisation and the reset draws. Defaults to 0.
    **kwargs: base Layer arguments.

  Call arguments:
    inputs: float32[B, d]. The latent vectors.
    training: bool. When True and the codebooks are not initialised yet, run the k-means
      initialisation first.

  Returns:
    A dict with `codes` int32[B, L]; `quantized` float32[B, d] (straight-through: forward value =
    sum of chosen codes, gradient = identity to `inputs`); `residual_norms` float32[B, L] (L2 norm
    of each level's input); `residuals` float32[B, L, d] (each level's input); `commitment_loss` and
    `codebook_loss` float32[L] (batch means of beta * |r - sg(e)|^2 and |sg(r) - e|^2, averaged over
    the d dimensions).
  """

  def __init__(
    self,
    num_levels: int = 8,
    codebook_size: int = 2048,
    beta: float = 0.25,
    codebook_init: str = "kmeans",
    kmeans_iterations: int = 10,
    dead_code_reset: bool = True,
    reset_interpolation: float = 1.0,
    seed: int = 0,
    **kwargs,
  ):
    super().__init__(**kwargs)
    if num_levels <= 0:
      raise ValueError(f"`num_levels` must be positive. Received: num_levels={num_levels}")
    if codebook_size <= 1:
      raise ValueError(
        f"`codebook_size` must be at least 2. Received: codebook_size={codebook_size}"
      )
    if beta < 0:
      raise ValueError(f"`beta` must be non-negative. Received: beta={beta}")
    if not 0.0 < reset_interpolation <= 1.0:
      raise ValueError(
        "`reset_interpolation` must be in (0, 1]. "
        f"Received: reset_interpolation={reset_interpolation}"
      )
    if kmeans_iterations < 0:
      raise ValueError(
        f"`kmeans_iterations` must be non-negative. Received: kmeans_iterations={kmeans_iterations}"
      )
    try:
      CodebookInit(
        codebook_init.value if isinstance(codebook_init, CodebookInit) else codebook_init
      )
    except ValueError:
      raise ValueError(
        f"`codebook_init` must be one of {[m.value for m in CodebookInit]}. "
        f"Received: codebook_init={codebook_init!r}"
      ) from None
    self.num_levels = num_levels
    self.codebook_size = codebook_size
    self.beta = beta
    self.codebook_init = CodebookInit(
      codebook_init.value if isinstance(codebook_init, CodebookInit) else codebook_init
    ).value
    self.kmeans_iterations = kmeans_iterations
    self.dead_code_reset = dead_code_reset
    self.reset_interpolation = reset_interpolation
    self.seed = seed

  def build(self, input_shape):
    latent_dim = int(input_shape[-1])
    scale = 1.0 / self.codebook_size
    self.codebooks: List[tf.Variable] = [
      self.add_weight(
        name=f"codebook_{level}",
        shape=(self.codebook_size, latent_dim),
        initializer=tf.keras.initializers.RandomUniform(-scale, scale, seed=self.seed + level),
        trainable=True,
      )
      for level in range(self.num_levels)
    ]
    self.initialized = self.add_weight(
      name="initialized", shape=(), dtype=tf.bool, initializer="zeros", trainable=False
    )
    self._reset_step = self.add_weight(
      name="reset_step", shape=(), dtype=tf.int64, initializer="zeros", trainable=False
    )
    super().build(input_shape)

  @property
  def latent_dim(self) -> int:
    return int(self.codebooks[0].shape[-1])

  def initialize_codebooks(self, x: tf.Tensor) -> tf.Tensor:
    """Sets each codebook by k-means on the residuals of `x` [N, d], level by level."""
    residual = tf.convert_to_tensor(x)
    for level, codebook in enumerate(self.codebooks):
      codebook.assign(
        kmeans(residual, self.codebook_size, self.kmeans_iterations, self.seed + level)
      )
      _, _, residual = residual_step(residual, codebook)
    self.initialized.assign(True)
    return tf.constant(True)

  def _maybe_initialize(self, x: tf.Tensor) -> None:
    if self.codebook_init != CodebookInit.KMEANS.value:
      return
    tf.cond(self.initialized, lambda: tf.constant(False), lambda: self.initialize_codebooks(x))

  def call(self, inputs: tf.Tensor, training=None) -> Dict[str, tf.Tensor]:
    if training:
      self._maybe_initialize(tf.stop_gradient(inputs))
    codes, quantized, residuals = quantize(tf.stop_gradient(inputs), list(self.codebooks))
    # Residual chain for the losses: r_0 = x, r_{l+1} = r_l - sg(e_l), so gradients of |r_l -
    # sg(e_l)|^2 reach x.
    chosen = [tf.gather(cb, codes[:, level]) for level, cb in enumerate(self.codebooks)]
    commitment, codebook_losses = [], []
    residual = inputs
    for level in range(self.num_levels):
      e = chosen[level]
      commitment.append(self.beta * tf.reduce_mean(tf.square(residual - tf.stop_gradient(e))))
      codebook_losses.append(tf.reduce_mean(tf.square(tf.stop_gradient(residual) - e)))
      residual = residual - tf.stop_gradient(e)
    return {
      "codes": codes,
      "quantized": inputs + tf.stop_gradient(quantized - inputs),
      "residual_norms": tf.norm(residuals, axis=-1),
      "residuals": residuals,
      "commitment_loss": tf.stack(commitment),
      "codebook_loss": tf.stack(codebook_losses),
    }

  def reset_dead_codes(self, residuals: tf.Tensor, codes: tf.Tensor) -> tf.Tensor:
    """Replaces codes no item of the batch chose, by (a step toward) a random batch item's residual.

    A no-op when `dead_code_reset` is False. The new code is `e + reset_interpolation * (r - e)`
    for a random batch item with residual r and current code e at that level. Each reset code
    gets a different item, so no two reset codes coincide (a tie that leaves one of them dead).
    When the batch has fewer items than the level has unused codes (the short last batch of an
    epoch), only as many codes as there are items are reset, the lowest-numbered first; the others
    wait for a later batch.

    Args:
      residuals: float[B, L, d]. Each level's input, as returned by `call`.
      codes: int32[B, L]. The codes chosen for the batch.

    Returns:
      int32[L]: how many codes were replaced per level.
    """
    if not self.dead_code_reset:
      return tf.zeros([self.num_levels], tf.int32)
    self._reset_step.assign_add(1)
    batch = tf.shape(codes)[0]
    replaced = []
    for level, codebook in enumerate(self.codebooks):
      unused = tf.where(unused_code_mask(codes[:, level], self.codebook_size))[:, 0]
      count = tf.minimum(tf.shape(unused)[0], batch)
      target = tf.cast(unused[:count], tf.int32)
      seed = tf.stack([tf.cast(self._reset_step, tf.int32), self.seed + level])
      pick = tf.random.experimental.stateless_shuffle(tf.range(batch), seed=seed)[:count]
      item_residual = tf.cast(tf.gather(residuals[:, level], pick), codebook.dtype)
      item_code = tf.gather(codebook, tf.gather(codes[:, level], pick))
      fresh = item_code + self.reset_interpolation * (item_residual - item_code)
      codebook.scatter_nd_update(target[:, tf.newaxis], fresh)
      replaced.append(count)
    return tf.stack(replaced)

  def get_config(self):
    config = super().get_config()
    config.update(
      {
        "num_levels": self.num_levels,
        "codebook_size": self.codebook_size,
        "beta": self.beta,
        "codebook_init": self.codebook_init,
        "kmeans_iterations": self.kmeans_iterations,
        "dead_code_reset": self.dead_code_reset,
        "reset_interpolation": self.reset_interpolation,
        "seed": self.seed,
      }
    )
    return config
