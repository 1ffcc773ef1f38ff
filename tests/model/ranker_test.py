"""Tests of the ranker and the user tower: outputs, history pooling, loss weighting, SavedModel,
fit."""

import os

import numpy as np

from model import dense_item, hash_item, hybrid_item, ranker, sid_item, tasks, user_tower
from tests import base  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tests.base import tf
from tests.model import ranker_stand_ins as stand_ins


def _sid(dim):
  return sid_item.SidItem(stand_ins.fixed_encoder(), stand_ins.UnigramStandIn(), embedding_dim=dim)


def _item(name, dim=4):
  if name == "hash":
    return hash_item.HashItem(num_bins=16, embedding_dim=dim)
  if name == "dense":
    return dense_item.DenseItem(embedding_dim=dim)
  if name == "sid":
    return _sid(dim)
  if name == "hybrid":
    return hybrid_item.HybridItem(hash_item.HashItem(num_bins=8, embedding_dim=dim), _sid(dim), 0.3)
  return None


# (test name, item representation, use_history) of the fit and round-trip tests.
_CASES = (
  ("hash", "hash", True),
  ("dense", "dense", True),
  ("sid", "sid", True),
  ("hybrid", "hybrid", True),
  ("hash_no_history", "hash", False),
  ("user_only", None, False),
)


def _config(**kwargs):
  values = dict(
    second_label_name="rating",
    user_buckets=32,
    user_embedding_dim=4,
    history_length=3,
    hidden_units=(8,),
  )
  values.update(kwargs)
  return ranker.RankerConfig(**values)


class UserTowerTest(base.TestCase):
  def test_pool_history_by_hand(self):
    vectors = tf.constant(
      [[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [0.0, 0.0], [0.0, 0.0]]]
    )
    mask = tf.constant([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    # Row 0: mean of the two real items; row 1: no history -> zeros.
    self.assertAllClose(user_tower.pool_history(vectors, mask), [[2.0, 3.0], [0.0, 0.0]])

  def test_history_uses_shared_representation(self):
    item = hash_item.HashItem(num_bins=16, embedding_dim=2)
    tower = user_tower.UserTower(user_buckets=8, embedding_dim=3, item_representation=item)
    features = stand_ins.toy_batch(batch=2, history=3)
    out = tower(features)
    self.assertEqual(sorted(out), ["history", "user"])
    self.assertEqual(out["user"].shape, (2, 3))
    ids = features["history_item_id"].numpy()
    mask = features["history_mask"].numpy()
    vec = item({"item_id": tf.constant(ids.reshape(-1))}).numpy().reshape(2, 3, 2)
    expected = (vec * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    self.assertAllClose(out["history"], expected)
    off = user_tower.UserTower(user_buckets=8, embedding_dim=3, use_history=False)
    self.assertEqual(list(off(features)), ["user"])
    self.assertEqual(off(features)["user"].shape, (2, 3))

  @base.parameterized.named_parameters(("history_on", True), ("history_off", False))
  def test_config_round_trip(self, use_history):
    item = hash_item.HashItem(num_bins=16, embedding_dim=2) if use_history else None
    tower = user_tower.UserTower(
      user_buckets=8, embedding_dim=3, item_representation=item, use_history=use_history
    )
    features = stand_ins.toy_batch(batch=3, history=3)
    expected = tower(features)
    clone = user_tower.UserTower.from_config(tower.get_config())
    self.assertEqual(clone.get_config(), tower.get_config())
    clone(features)
    clone.set_weights(tower.get_weights())
    for key, value in clone(features).items():
      self.assertAllClose(value, expected[key])

  def test_once_per_user_is_exact(self):
    calls = []

    def fn(inputs):
      calls.append(int(inputs["x"].shape[0]))
      return inputs["x"] * 10.0

    users = tf.constant(["a", "b", "a", "a"])
    same = {"x": tf.constant([[1.0], [2.0], [1.0], [1.0]])}
    # Rows of user "a" agree: fn runs on 2 rows (one per user) and is gathered back.
    self.assertAllClose(user_tower.once_per_user(users, same, fn), [[10.0], [20.0], [10.0], [10.0]])
    self.assertEqual(calls[0], 2)
    differ = {"x": tf.constant([[1.0], [2.0], [3.0], [1.0]])}
    # User "a" has two different histories: the shortcut would be wrong, so every row is computed.
    self.assertAllClose(
      user_tower.once_per_user(users, differ, fn), [[10.0], [20.0], [30.0], [10.0]]
    )

  def test_once_per_user_one_user_compares_bit_for_bit(self):
    calls = []

    def fn(inputs):
      calls.append(int(inputs["x"].shape[0]))
      return tf.reshape(inputs["x"], [-1, 4]) * 10.0 + tf.cast(inputs["n"][:, :1], tf.float32)

    users = tf.constant(["a"] * 3)
    x = np.tile(np.array([[1.0, 2.0], [3.0, 0.0]], np.float32), (3, 1, 1))
    n = tf.constant([[1, 2, 3]] * 3, tf.int32)  # Odd size: compared as int32.
    out = user_tower.once_per_user(users, {"x": tf.constant(x), "n": n}, fn)
    self.assertAllClose(out, fn({"x": tf.constant(x), "n": n}))
    self.assertEqual(calls[0], 1)
    signed = x.copy()
    signed[2, 1, 1] = -0.0  # Equal as floats, not bit for bit: every row is computed.
    calls.clear()
    out = user_tower.once_per_user(users, {"x": tf.constant(signed), "n": n}, fn)
    self.assertEqual(calls, [3])
    self.assertAllEqual(np.signbit(out.numpy()), np.signbit(fn({"x": signed, "n": n}).numpy()))

  def test_once_per_user_applies_a_one_row_history_to_every_row(self):
    calls = []

    def fn(inputs):
      calls.append(int(inputs["x"].shape[0]))
      return inputs["x"] * 10.0

    users = tf.constant(["a", "b", "a"])  # Several users, one history sent once for all.
    out = user_tower.once_per_user(users, {"x": tf.constant([[1.5]])}, fn)
    self.assertAllEqual(out, [[15.0], [15.0], [15.0]])
    self.assertEqual(calls, [1])
    self.assertAllEqual(
      user_tower.once_per_user(users[:1], {"x": tf.constant([[2.0]])}, fn), [[20.0]]
    )

  def test_rows_identical(self):
    self.assertTrue(bool(user_tower.rows_identical(tf.constant([[1.0, 2.0]] * 3))))
    self.assertFalse(bool(user_tower.rows_identical(tf.constant([[1.0, 2.0]] * 2 + [[1.0, 3.0]]))))
    self.assertFalse(bool(user_tower.rows_identical(tf.constant([["a"], ["b"]]))))
    self.assertTrue(bool(user_tower.rows_identical(tf.zeros([0, 5]))))
    self.assertTrue(bool(user_tower.rows_identical(tf.zeros([1, 3, 2]))))

  def test_comparable_words(self):
    floats = tf.constant([[[1.0, -0.0], [np.nan, 2.0]], [[1.0, 0.0], [np.nan, 2.0]]])
    words = user_tower.comparable_words(floats)
    self.assertEqual((words.dtype, words.shape), (tf.int64, (2, 2)))
    self.assertAllEqual(tf.equal(words[0], words[1]), [False, True])  # -0.0 != 0.0; same NaN.
    ints = user_tower.comparable_words(tf.constant([[1, 2, 3, 4]], tf.int32))
    self.assertEqual((ints.dtype, ints.shape), (tf.int64, (1, 2)))
    odd = user_tower.comparable_words(tf.constant([[1.5, 2.5, 3.5]]))
    self.assertEqual((odd.dtype, odd.shape), (tf.int32, (1, 3)))
    strings = user_tower.comparable_words(tf.constant([["a", "b"]]))
    self.assertEqual((strings.dtype, strings.shape), (tf.string, (1, 2)))

  def test_inference_matches_training_path(self):
    item = hash_item.HashItem(num_bins=16, embedding_dim=2)
    tower = user_tower.UserTower(user_buckets=8, embedding_dim=3, item_representation=item)
    features = stand_ins.toy_batch(batch=4, history=3)
    repeated = {k: tf.repeat(v[:1], 4, axis=0) for k, v in features.items()}
    for batch in (features, repeated):
      self.assertAllClose(tower(batch, training=False), tower(batch, training=True))

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "needs an `item_representation`"):
      user_tower.UserTower(use_history=True)
    with self.assertRaisesRegex(ValueError, "`user_buckets` must be positive"):
      user_tower.UserTower(user_buckets=0, use_history=False)


class RankerTest(base.TestCase):
  def test_outputs(self):
    model = ranker.build_ranker(_item("sid"), _config())
    out = model(stand_ins.toy_batch(batch=5))
    self.assertEqual(sorted(out), ["ctr", "rating"])
    self.assertEqual(out["ctr"].shape, (5,))
    self.assertTrue(np.all((out["ctr"].numpy() > 0) & (out["ctr"].numpy() < 1)))
    self.assertEqual(
      model.input_keys,
      ("user_id", "content_embedding", "history_content_embedding", "history_mask"),
    )

  def test_history_interaction_widens_the_shared_input(self):
    features = stand_ins.toy_batch(batch=5)
    for interaction, width in ((True, 4 + 4 + 4 + 4 + 1), (False, 4 + 4 + 4)):
      model = ranker.build_ranker(_item("hash"), _config(history_interaction=interaction))
      model(features)
      self.assertEqual(model.cross[0]._dense.kernel.shape, (width, width))

  def test_loss_weighting(self):
    features = stand_ins.toy_batch(batch=6)
    model = ranker.build_ranker(_item("hash"), _config(click_weight=1.0, second_weight=0.0))
    logit, second = model.heads(features)
    bce = tf.keras.losses.BinaryCrossentropy(from_logits=True)(features["click"], logit)
    mse = tf.keras.losses.MeanSquaredError()(features["second_label"], second)
    self.assertAllClose(model.compute_loss(features), bce)
    model.config.click_weight, model.config.second_weight = 0.0, 1.0
    self.assertAllClose(model.compute_loss(features), mse)
    model.config.click_weight, model.config.second_weight = 2.0, 0.25
    self.assertAllClose(model.compute_loss(features), 2.0 * bce + 0.25 * mse)

  def test_config_validation_and_round_trip(self):
    config = _config(second_weight=0.3)
    self.assertEqual(ranker.RankerConfig.from_dict(config.to_dict()), config)
    with self.assertRaisesRegex(ValueError, "Loss weights must be non-negative"):
      _config(click_weight=0.0, second_weight=0.0)
    with self.assertRaisesRegex(ValueError, "needs an item representation"):
      ranker.build_ranker(None, _config(use_history=True))

  @base.parameterized.named_parameters(*_CASES)
  def test_fit_and_saved_model(self, scheme, use_history):
    model = ranker.build_ranker(_item(scheme), _config(use_history=use_history))
    model.compile(optimizer=tf.keras.optimizers.Adam(0.05))
    batch = stand_ins.toy_batch(batch=16)
    ds = tf.data.Dataset.from_tensors(batch).repeat(8)
    first = float(model.compute_loss(batch))
    history = model.fit(ds, epochs=2, verbose=0)
    self.assertIn("auc", history.history)
    self.assertLess(float(model.compute_loss(batch)), first)
    path = os.path.join(self.get_temp_dir(), "ranker")
    specs = model.input_specs(stand_ins.D)
    serve = tf.function(lambda features: model(features), input_signature=[specs])
    tf.saved_model.save(model, path, signatures={"serving_default": serve})
    inputs = {k: batch[k] for k in specs}
    expected = model(inputs)
    got = tf.saved_model.load(path).signatures["serving_default"](**inputs)
    self.assertAllClose(got["ctr"], expected["ctr"])
    self.assertAllClose(got["rating"], expected["rating"])

  @base.parameterized.named_parameters(*_CASES)
  def test_config_round_trip_with_weights(self, scheme, use_history):
    model = ranker.build_ranker(_item(scheme), _config(use_history=use_history))
    batch = stand_ins.toy_batch(batch=5)
    expected = model(batch)
    config = tf.keras.layers.serialize(model)
    clone = tf.keras.layers.deserialize(config)
    self.assertIsInstance(clone, ranker.Ranker)
    again = tf.keras.layers.serialize(clone)
    for key in ("item_representation", "user_tower", "config"):  # (Keras adds `fn` to losses.)
      self.assertEqual(again["config"][key], config["config"][key])
    if use_history:  # One representation, shared by the candidate side and the history.
      self.assertIs(clone.user_tower.item_representation, clone.item_representation)
    clone(batch)
    clone.set_weights(model.get_weights())
    got = clone(batch)
    self.assertAllClose(got["ctr"], expected["ctr"])
    self.assertAllClose(got["rating"], expected["rating"])

  def test_takes_its_parts_as_arguments(self):
    item = _item("hash")
    tower = user_tower.UserTower(user_buckets=8, embedding_dim=4, item_representation=item)
    click = tasks.click_task(name="my_click")
    model = ranker.Ranker(item, tower, _config(), click_task=click)
    self.assertIs(model.user_tower, tower)
    self.assertIs(model.click_task, click)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.05))
    history = model.fit(tf.data.Dataset.from_tensors(stand_ins.toy_batch(batch=8)), verbose=0)
    self.assertIn("auc", history.history)
    other = user_tower.UserTower(user_buckets=8, embedding_dim=4, item_representation=_item("hash"))
    with self.assertRaisesRegex(ValueError, "must share the ranker's item representation"):
      ranker.Ranker(item, other, _config())


if __name__ == "__main__":
  tf.test.main()
