"""Tests of the frozen SemanticIdEncoder layer."""

import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from model import residual_quantizer, rqvae, semantic_id_encoder
from tests import base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _data(n=64, dim=6, seed=0):
  return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def _trained_rqvae():
  config = rqvae.RQVAEConfig(input_dim=6, latent_dim=4, num_levels=3, codebook_size=8)
  model = rqvae.build_rqvae(config)
  model.fit(_data(), epochs=1, batch_size=32, verbose=0)
  return model


class SemanticIdEncoderTest(base.TestCase):
  def test_golden_with_identity_encoder(self):
    layer = semantic_id_encoder.SemanticIdEncoder(
      num_levels=2, codebook_size=4, input_dim=2, latent_dim=2
    )
    layer.build(tf.TensorShape([None, 2]))
    layer.encoder_kernel.assign(np.eye(2))
    layer.codebooks.assign(
      [
        [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [50.0, 50.0]],
        [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]],
      ]
    )
    codes = layer(np.array([[10.9, 0.2], [0.1, -0.9], [0.2, 9.1]], np.float32))
    self.assertAllEqual(codes, [[1, 1], [0, 0], [2, 0]])
    self.assertEqual(codes.dtype, tf.int32)

  def test_from_rqvae_matches_model_codes_and_fingerprint(self):
    model = _trained_rqvae()
    layer = semantic_id_encoder.SemanticIdEncoder.from_rqvae(model)
    x = _data(40, seed=1)
    self.assertAllEqual(layer(x), model.assign_codes(x))
    out = model(x, training=False)["codes"]
    self.assertAllEqual(layer(x), out)
    self.assertEqual(layer.fingerprint(), rqvae.fingerprint(model))
    self.assertEqual((layer.num_levels, layer.codebook_size, layer.input_dim), (3, 8, 6))

  def test_frozen_by_default(self):
    layer = semantic_id_encoder.SemanticIdEncoder.from_rqvae(_trained_rqvae())
    self.assertEqual(layer.trainable_weights, [])
    self.assertLen(layer.non_trainable_weights, 3)
    self.assertEqual(
      [w.name.split("/")[-1] for w in layer.weights],
      ["encoder_kernel:0", "encoder_bias:0", "codebooks:0"],
    )

  def test_deterministic_in_training_mode(self):
    layer = semantic_id_encoder.SemanticIdEncoder.from_rqvae(_trained_rqvae())
    x = _data(10, seed=2)
    self.assertAllEqual(layer(x, training=True), layer(x, training=False))

  @base.parameterized.named_parameters(
    ("levels", "num_levels"),
    ("size", "codebook_size"),
    ("input", "input_dim"),
    ("latent", "latent_dim"),
  )
  def test_bad_arguments(self, name):
    kwargs = dict(num_levels=2, codebook_size=4, input_dim=3, latent_dim=2)
    kwargs[name] = 0
    with self.assertRaisesRegex(ValueError, f"`{name}` must be positive. Received: {name}=0"):
      semantic_id_encoder.SemanticIdEncoder(**kwargs)

  def test_config_round_trip(self):
    layer = semantic_id_encoder.SemanticIdEncoder.from_rqvae(_trained_rqvae())
    clone = semantic_id_encoder.SemanticIdEncoder.from_config(layer.get_config())
    self.assertEqual(clone.get_config(), layer.get_config())
    clone.build(tf.TensorShape([None, 6]))
    clone.set_weights(layer.get_weights())
    x = _data(10, seed=3)
    self.assertAllEqual(clone(x), layer(x))

  def test_saved_model_round_trip_inside_functional_model(self):
    layer = semantic_id_encoder.SemanticIdEncoder.from_rqvae(_trained_rqvae())
    inputs = tf.keras.Input(shape=(6,), name="content_embedding")
    codes = layer(inputs)
    pooled = tf.keras.layers.Dense(2)(tf.keras.layers.Embedding(8, 4)(codes)[:, 0])
    model = tf.keras.Model(inputs, {"codes": codes, "score": pooled})
    x = _data(12, seed=4)
    expected = model(x)
    path = os.path.join(self.get_temp_dir(), "keras_model")
    model.save(path)
    reloaded = tf.keras.models.load_model(path)
    self.assertAllEqual(reloaded(x)["codes"], expected["codes"])
    self.assertAllClose(reloaded(x)["score"], expected["score"])

  def test_tf_saved_model_in_fresh_process(self):
    layer = semantic_id_encoder.SemanticIdEncoder.from_rqvae(_trained_rqvae())
    module = tf.Module()
    module.layer = layer
    module.serve = tf.function(
      lambda x: {"codes": layer(x)}, input_signature=[tf.TensorSpec([None, 6], tf.float32)]
    )
    path = os.path.join(self.get_temp_dir(), "saved_model")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    x = _data(5, seed=5)
    np.save(os.path.join(self.get_temp_dir(), "x.npy"), x)
    script = (
      "import sys, numpy as np, tensorflow as tf\n"
      "m = tf.saved_model.load(sys.argv[1])\n"
      "x = np.load(sys.argv[2])\n"
      "print(m.signatures['serving_default'](x=tf.constant(x))['codes'].numpy().tolist())\n"
    )
    result = subprocess.run(
      [sys.executable, "-c", script, path, os.path.join(self.get_temp_dir(), "x.npy")],
      capture_output=True,
      text=True,
      check=True,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    self.assertEqual(eval(result.stdout.strip().splitlines()[-1]), layer(x).numpy().tolist())

  def test_fingerprint_changes_with_weights(self):
    kernel, bias = np.ones((2, 2)), np.zeros(2)
    books = [np.ones((3, 2))]
    a = semantic_id_encoder.weights_fingerprint(kernel, bias, books)
    self.assertEqual(a, semantic_id_encoder.weights_fingerprint(kernel, bias, books))
    self.assertNotEqual(a, semantic_id_encoder.weights_fingerprint(kernel, bias + 1e-3, books))
    self.assertLen(a, 64)

  def test_codes_from_weights_uses_quantize(self):
    x = _data(8, dim=2)
    books = np.random.default_rng(1).normal(size=(2, 5, 2)).astype(np.float32)
    codes = semantic_id_encoder.codes_from_weights(
      x, np.eye(2, dtype=np.float32), np.zeros(2), books
    )
    expected, _, _ = residual_quantizer.quantize(x, list(books))
    self.assertAllEqual(codes, expected)


if __name__ == "__main__":
  tf.test.main()
