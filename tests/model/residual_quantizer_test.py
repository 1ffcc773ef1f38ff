"""Tests of the residual quantizer's math and layer."""

import numpy as np
import tensorflow as tf

from model import residual_quantizer
from tests import base

# Hand-checkable: level 0 snaps to (0,0)/(10,0)/(0,10); level 1 to (0,0)/(1,0)/(0,1)/(-1,0).
LEVEL0 = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], np.float32)
LEVEL1 = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], np.float32)
X = np.array([[10.9, 0.2], [0.1, -0.9], [0.2, 9.1]], np.float32)
EXPECTED_CODES = [[1, 1], [0, 0], [2, 0]]
# Level 0 leaves [[0.9, 0.2], [0.1, -0.9], [0.2, -0.9]]; level 1 takes (1,0) from row 0 only.
EXPECTED_LEVEL1_INPUT = [[0.9, 0.2], [0.1, -0.9], [0.2, -0.9]]
EXPECTED_FINAL_RESIDUAL = [[-0.1, 0.2], [0.1, -0.9], [0.2, -0.9]]


def _fixed_layer(**kwargs):
  kwargs.setdefault("codebook_init", "random")
  layer = residual_quantizer.ResidualQuantizer(num_levels=2, codebook_size=4, **kwargs)
  layer.build(tf.TensorShape([None, 2]))
  layer.codebooks[0].assign(np.concatenate([LEVEL0, [[50.0, 50.0]]]))  # code 3 is never used.
  layer.codebooks[1].assign(LEVEL1)
  return layer


class PureFunctionsTest(base.TestCase):
  def test_squared_distances_match_brute_force(self):
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    c = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    expected = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    self.assertAllClose(residual_quantizer.squared_distances(x, c), expected, atol=1e-5)

  def test_nearest_code_golden(self):
    self.assertAllEqual(residual_quantizer.nearest_code(X, LEVEL0), [1, 0, 2])

  def test_residual_step_golden(self):
    codes, chosen, residual = residual_quantizer.residual_step(X, LEVEL0)
    self.assertAllEqual(codes, [1, 0, 2])
    self.assertAllClose(chosen, LEVEL0[[1, 0, 2]])
    self.assertAllClose(residual, EXPECTED_LEVEL1_INPUT, atol=1e-5)

  def test_quantize_golden(self):
    codes, quantized, residuals = residual_quantizer.quantize(X, [LEVEL0, LEVEL1])
    self.assertAllEqual(codes, EXPECTED_CODES)
    self.assertAllClose(quantized, X - np.array(EXPECTED_FINAL_RESIDUAL), atol=1e-5)
    self.assertAllClose(residuals[:, 0], X)
    self.assertAllClose(residuals[:, 1], EXPECTED_LEVEL1_INPUT, atol=1e-5)

  def test_kmeans_finds_separated_clusters(self):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (50, 2))]).astype(
      np.float32
    )
    centroids = np.sort(residual_quantizer.kmeans(x, 2, iterations=5).numpy()[:, 0])
    self.assertAllClose(centroids, [0.0, 5.0], atol=0.1)

  def test_kmeans_with_fewer_points_than_codes(self):
    x = np.eye(3, dtype=np.float32)
    centroids = residual_quantizer.kmeans(x, 8, iterations=2)
    self.assertEqual(centroids.shape, (8, 3))

  def test_unused_code_mask(self):
    self.assertAllEqual(
      residual_quantizer.unused_code_mask(tf.constant([0, 2, 2]), 4), [False, True, False, True]
    )


class ResidualQuantizerTest(base.TestCase):
  def test_golden_outputs(self):
    layer = _fixed_layer(beta=0.5)
    out = layer(X)
    self.assertAllEqual(out["codes"], EXPECTED_CODES)
    self.assertEqual(out["codes"].dtype, tf.int32)
    self.assertAllClose(out["quantized"], X - np.array(EXPECTED_FINAL_RESIDUAL), atol=1e-5)
    norms = np.stack(
      [np.linalg.norm(X, axis=1), np.linalg.norm(EXPECTED_LEVEL1_INPUT, axis=1)], axis=1
    )
    self.assertAllClose(out["residual_norms"], norms, atol=1e-5)
    # Per level: mean over batch and dims of (r - e)^2; commitment is beta times it.
    err0 = np.mean(np.square(EXPECTED_LEVEL1_INPUT))
    err1 = np.mean(np.square(EXPECTED_FINAL_RESIDUAL))
    self.assertAllClose(out["codebook_loss"], [err0, err1], atol=1e-5)
    self.assertAllClose(out["commitment_loss"], [0.5 * err0, 0.5 * err1], atol=1e-5)

  def test_weight_names_and_shapes(self):
    layer = residual_quantizer.ResidualQuantizer(num_levels=3, codebook_size=5)
    layer.build(tf.TensorShape([None, 7]))
    names = [w.name for w in layer.trainable_weights]
    self.assertEqual(names, ["codebook_0:0", "codebook_1:0", "codebook_2:0"])
    self.assertEqual([tuple(w.shape) for w in layer.trainable_weights], [(5, 7)] * 3)
    self.assertEqual(layer.latent_dim, 7)

  def test_straight_through_gradient_is_identity(self):
    layer = _fixed_layer()
    x = tf.constant(X)
    with tf.GradientTape() as tape:
      tape.watch(x)
      quantized = layer(x)["quantized"]
    self.assertAllClose(tape.gradient(quantized, x), np.ones_like(X))

  def test_codebook_loss_reaches_only_chosen_codes(self):
    layer = _fixed_layer()
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(layer(X)["codebook_loss"])
    grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, layer.codebooks)]
    self.assertAllClose(grads[0][3], [0.0, 0.0])  # The unused code gets no gradient.
    self.assertGreater(float(tf.reduce_sum(tf.abs(grads[0][:3]))), 0.0)

  def test_dead_code_reset_replaces_only_unused_codes(self):
    layer = _fixed_layer(dead_code_reset=True)
    out = layer(X)
    before = [c.numpy().copy() for c in layer.codebooks]
    replaced = layer.reset_dead_codes(out["residuals"], out["codes"])
    self.assertAllEqual(replaced, [1, 2])  # Level 0: code 3; level 1: codes 2 and 3.
    after0, after1 = (c.numpy() for c in layer.codebooks)
    self.assertAllClose(after0[:3], before[0][:3])
    self.assertIn(tuple(np.round(after0[3], 4)), {tuple(np.round(r, 4)) for r in X})
    self.assertAllClose(after1[:2], before[1][:2])
    level1_inputs = {tuple(np.round(r, 4)) for r in np.array(EXPECTED_LEVEL1_INPUT, np.float32)}
    for code in (2, 3):
      self.assertIn(tuple(np.round(after1[code], 4)), level1_inputs)

  def test_dead_code_reset_gives_each_reset_code_a_different_item(self):
    for seed in range(20):  # Level 1's unused codes 2 and 3 never get the same item.
      layer = _fixed_layer(dead_code_reset=True, seed=seed)
      out = layer(X)
      layer.reset_dead_codes(out["residuals"], out["codes"])
      after1 = layer.codebooks[1].numpy()
      self.assertNotAllClose(after1[2], after1[3], msg=f"seed {seed}")

  def test_dead_code_reset_with_fewer_items_than_unused_codes(self):
    layer = _fixed_layer(dead_code_reset=True)
    x = X[:1]  # One item: it uses code 1 at level 0 and code 1 at level 1.
    out = layer(x)
    before = [c.numpy().copy() for c in layer.codebooks]
    replaced = layer.reset_dead_codes(out["residuals"], out["codes"])
    self.assertAllEqual(replaced, [1, 1])  # Only as many codes as items, the lowest unused first.
    after0, after1 = (c.numpy() for c in layer.codebooks)
    self.assertAllClose(after0[0], X[0])  # Level 0's code 0 := the item's residual (= x).
    self.assertAllClose(after0[1:], before[0][1:])
    self.assertAllClose(after1[0], EXPECTED_LEVEL1_INPUT[0])
    self.assertAllClose(after1[1:], before[1][1:])

  def test_dead_code_reset_interpolation_splits_the_item_code(self):
    layer = _fixed_layer(dead_code_reset=True, reset_interpolation=0.5)
    out = layer(X)
    layer.reset_dead_codes(out["residuals"], out["codes"])
    # Level 0's unused code 3 goes halfway from a random item's code to that item's residual.
    halfway = {tuple(np.round(LEVEL0[c] + 0.5 * (r - LEVEL0[c]), 4)) for r, c in zip(X, [1, 0, 2])}
    self.assertIn(tuple(np.round(layer.codebooks[0].numpy()[3], 4)), halfway)

  def test_dead_code_reset_switch_off_is_noop(self):
    layer = _fixed_layer(dead_code_reset=False)
    out = layer(X)
    before = [c.numpy().copy() for c in layer.codebooks]
    self.assertAllEqual(layer.reset_dead_codes(out["residuals"], out["codes"]), [0, 0])
    for b, c in zip(before, layer.codebooks):
      self.assertAllClose(b, c)

  def test_kmeans_init_runs_once_on_first_training_call(self):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    layer = residual_quantizer.ResidualQuantizer(num_levels=2, codebook_size=8)
    layer(x, training=False)
    self.assertFalse(bool(layer.initialized.numpy()))
    layer(x, training=True)
    self.assertTrue(bool(layer.initialized.numpy()))
    expected = residual_quantizer.kmeans(x, 8, 10, seed=0)
    self.assertAllClose(layer.codebooks[0], expected, atol=1e-5)
    first = layer.codebooks[0].numpy().copy()
    layer(x + 1.0, training=True)
    self.assertAllClose(layer.codebooks[0], first)

  @base.parameterized.named_parameters(
    ("levels", {"num_levels": 0}, "num_levels"),
    ("size", {"codebook_size": 1}, "codebook_size"),
    ("beta", {"beta": -1.0}, "beta"),
    ("init", {"codebook_init": "pca"}, "codebook_init"),
    ("interpolation", {"reset_interpolation": 0.0}, "reset_interpolation"),
  )
  def test_bad_arguments(self, kwargs, name):
    with self.assertRaisesRegex(ValueError, f"`{name}`.*Received: {name}="):
      residual_quantizer.ResidualQuantizer(**kwargs)

  def test_config_round_trip(self):
    layer = residual_quantizer.ResidualQuantizer(
      num_levels=3, codebook_size=16, beta=0.5, codebook_init="random", dead_code_reset=False
    )
    clone = residual_quantizer.ResidualQuantizer.from_config(layer.get_config())
    self.assertEqual(clone.get_config(), layer.get_config())


if __name__ == "__main__":
  tf.test.main()
