"""Tests of the RQ-VAE model, its training step, metrics and save/load."""

import os

import numpy as np
import tensorflow as tf

from model import rqvae
from tests import base


def _data(n=256, dim=12, seed=0):
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(8, dim))
  return (centers[rng.integers(0, 8, n)] + 0.1 * rng.normal(size=(n, dim))).astype(np.float32)


def _config(**kwargs):
  defaults = dict(input_dim=12, latent_dim=8, num_levels=3, codebook_size=8)
  defaults.update(kwargs)
  return rqvae.RQVAEConfig(**defaults)


class RQVAEConfigTest(base.TestCase):
  @base.parameterized.named_parameters(
    ("input_dim", {"input_dim": 0}, "input_dim"),
    ("latent_dim", {"latent_dim": -1}, "latent_dim"),
    ("levels", {"num_levels": 0}, "num_levels"),
    ("size", {"codebook_size": 1}, "codebook_size"),
    ("init", {"codebook_init": "pca"}, "codebook_init"),
    ("lr", {"learning_rate": 0.0}, "learning_rate"),
  )
  def test_bad_config(self, kwargs, name):
    with self.assertRaisesRegex(ValueError, f"`{name}`.*Received: {name}="):
      _config(**kwargs)

  def test_paper_defaults(self):
    config = rqvae.RQVAEConfig(input_dim=384)
    self.assertEqual(
      (config.latent_dim, config.num_levels, config.codebook_size, config.beta),
      (256, 8, 2048, 0.25),
    )
    self.assertTrue(config.dead_code_reset)


class RQVAETest(base.TestCase):
  def test_outputs_and_loss_formula(self):
    model = rqvae.build_rqvae(_config())
    x = _data(16)
    out = model(x, training=False)
    self.assertEqual(out["codes"].shape, (16, 3))
    self.assertEqual(out["reconstruction"].shape, (16, 12))
    losses = model.compute_losses(tf.constant(x), out)
    recon = np.mean(np.square(x - out["reconstruction"].numpy()))
    self.assertAllClose(losses["reconstruction_loss"], recon, rtol=1e-5)
    total = recon + out["commitment_loss"].numpy().sum() + out["codebook_loss"].numpy().sum()
    self.assertAllClose(losses["loss"], total, rtol=1e-5)

  def test_gradients_reach_encoder_through_straight_through(self):
    model = rqvae.build_rqvae(_config(codebook_init="random"))
    x = tf.constant(_data(32))
    with tf.GradientTape() as tape:
      out = model(x, training=False)
      # Reconstruction only: its only path to the encoder is the straight-through estimator.
      recon = model.compute_losses(x, out)["reconstruction_loss"]
    kernel_grad = tape.gradient(recon, model.encoder.kernel)
    self.assertIsNotNone(kernel_grad)
    self.assertGreater(float(tf.reduce_sum(tf.abs(kernel_grad))), 0.0)

  def test_short_fit_learns_and_reports_metrics(self):
    x = _data()
    model = rqvae.build_rqvae(_config())
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(64)
    history = model.fit(
      dataset, epochs=4, verbose=0, callbacks=[rqvae.SidStatsCallback(x, batch_size=100)]
    )
    logs = history.history
    for key in (
      "loss",
      "reconstruction_loss",
      "commitment_loss",
      "codebook_loss",
      "utilization_0",
      "perplexity_2",
      "unique_sid_fraction",
      "max_items_per_sid",
      "item_utilization_1",
    ):
      self.assertIn(key, logs)
    self.assertLess(logs["loss"][-1], logs["loss"][0])
    self.assertTrue(bool(model.quantizer.initialized.numpy()))
    self.assertBetween(logs["utilization_0"][-1], 0.0, 1.0)
    self.assertBetween(logs["unique_sid_fraction"][-1], 1.0 / len(x), 1.0)

  def test_train_step_resets_dead_codes(self):
    model = rqvae.build_rqvae(_config(codebook_size=64, codebook_init="random"))
    x = _data(32)
    model.train_on_batch(x)
    # With 64 random codes and 32 items, at least 32 codes are unused: 32 of them (one per item)
    # must now be the items' latents, each a different item.
    latents = model.encoder(x).numpy()
    codebook = model.quantizer.codebooks[0].numpy()
    dist = ((codebook[:, None, :] - latents[None, :, :]) ** 2).sum(-1)
    reset = dist.min(axis=1) < 1e-2
    self.assertEqual(int(reset.sum()), 32)
    self.assertLen(set(dist[reset].argmin(axis=1).tolist()), 32)

  def test_config_round_trip(self):
    model = rqvae.RQVAE(_config(beta=0.5))
    clone = rqvae.RQVAE.from_config(model.get_config())
    self.assertEqual(clone.config, model.config)

  def test_save_load_round_trip_identical_codes(self):
    x = _data()
    model = rqvae.build_rqvae(_config())
    model.fit(x, epochs=1, batch_size=64, verbose=0)
    directory = os.path.join(self.get_temp_dir(), "rqvae")
    digest = rqvae.save_rqvae(model, directory)
    rqvae.save_rqvae(model, directory)  # Overwriting is safe.
    loaded = rqvae.load_rqvae(directory)
    self.assertEqual(rqvae.fingerprint(loaded), digest)
    self.assertAllEqual(loaded.assign_codes(x), model.assign_codes(x))
    self.assertEqual(loaded.config, model.config)
    self.assertTrue(bool(loaded.quantizer.initialized.numpy()))

  def test_load_errors(self):
    with self.assertRaisesRegex(rqvae.RQVAEFormatError, "config.json is missing"):
      rqvae.load_rqvae(self.get_temp_dir())
    model = rqvae.build_rqvae(_config())
    directory = os.path.join(self.get_temp_dir(), "rqvae")
    rqvae.save_rqvae(model, directory)
    other = rqvae.build_rqvae(_config(seed=7, codebook_init="random"))
    other.save_weights(os.path.join(directory, rqvae.WEIGHTS_PREFIX))
    with self.assertRaisesRegex(rqvae.RQVAEFormatError, "do not match the recorded fingerprint"):
      rqvae.load_rqvae(directory)

  def test_assign_codes_empty(self):
    model = rqvae.build_rqvae(_config())
    self.assertEqual(model.assign_codes(np.zeros((0, 12), np.float32)).shape, (0, 3))


if __name__ == "__main__":
  tf.test.main()
