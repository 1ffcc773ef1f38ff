"""trainers.distribute in process: TF_CONFIG parsing, the strategy factory's checks, the optimizer,
the inputs and the placement report."""

import json
import os
from unittest import mock

import numpy as np
from tensorflow.python.distribute import sharded_variable  # Test-only: what ps hands a layer.

from model import sid_item
from tests import base
from tests.base import tf
from trainers import distribute, run_dir

CLUSTER = {
  "chief": ["127.0.0.1:1"],
  "worker": ["127.0.0.1:2", "127.0.0.1:3"],
  "ps": ["127.0.0.1:4", "127.0.0.1:5"],
}


def _env(cluster=None, kind=None, index=0, raw=None):
  if raw is None:
    config = {"cluster": cluster or CLUSTER}
    if kind:
      config["task"] = {"type": kind, "index": index}
    raw = json.dumps(config)
  return mock.patch.dict(os.environ, {distribute.TF_CONFIG: raw})


class TfConfigTest(base.TestCase):
  def test_tasks_and_chief(self):
    with mock.patch.dict(os.environ, {}, clear=False):
      os.environ.pop(distribute.TF_CONFIG, None)
      self.assertEqual(distribute.task(), (None, 0))
      self.assertTrue(distribute.is_chief())
    with _env(kind="ps", index=1):
      self.assertEqual(distribute.task(), ("ps", 1))
      self.assertEqual(distribute.cluster_sizes(), {"chief": 1, "worker": 2, "ps": 2})
      self.assertFalse(distribute.is_chief())
    with _env(kind="chief"):
      self.assertTrue(distribute.is_chief())
    with _env(kind="worker"):
      self.assertFalse(distribute.is_chief())  # There is a chief.
    with _env({"worker": ["a:1", "b:2"]}, "worker", 0):
      self.assertTrue(distribute.is_chief())  # Worker 0 of a chief-less cluster.
    with _env({"worker": ["a:1", "b:2"]}, "worker", 1):
      self.assertFalse(distribute.is_chief())

  @base.parameterized.named_parameters(
    ("not_json", "{cluster"),
    ("no_cluster", {"task": {"type": "worker", "index": 0}}),
    ("task_not_in_cluster", {"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}),
    (
      "index_out_of_range",
      {"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}},
    ),
  )
  def test_malformed_tf_config_names_the_variable_and_value(self, raw):
    raw = raw if isinstance(raw, str) else json.dumps(raw)
    with _env(raw=raw), self.assertRaisesRegex(ValueError, r"TF_CONFIG must be JSON.*Received: TF"):
      distribute.tf_config()

  def test_strategy_config_is_checked(self):
    with self.assertRaisesRegex(ValueError, "`strategy` must be one of .*Received: strategy='tpu'"):
      distribute.StrategyConfig(strategy="tpu")
    with self.assertRaisesRegex(ValueError, "ps_min_shard_bytes=0"):
      distribute.StrategyConfig(ps_min_shard_bytes=0)
    with self.assertRaisesRegex(ValueError, "ps_max_shards=-1"):
      distribute.StrategyConfig(ps_max_shards=-1)

  def test_parameter_server_needs_a_cluster_and_runs_on_the_chief(self):
    config = distribute.StrategyConfig(strategy="parameter_server")
    with _env({"worker": ["a:1"]}, "worker", 0):
      with self.assertRaisesRegex(ValueError, r"needs TF_CONFIG with `chief`, `worker` and `ps`"):
        distribute.make_strategy(config)
    with _env(kind="worker"), self.assertRaisesRegex(ValueError, r"task \('worker', 0\)"):
      distribute.make_strategy(config)

  def test_only_parameter_server_tasks_serve(self):
    with _env(kind="ps"), mock.patch.object(tf.distribute, "Server") as server:
      distribute.serve_if_server_task(distribute.StrategyConfig())  # default: returns at once
      distribute.serve_if_server_task(distribute.StrategyConfig(strategy="multi_worker"))
      server.assert_not_called()
      distribute.serve_if_server_task(distribute.StrategyConfig(strategy="parameter_server"))
      server.assert_called_once()
      self.assertEqual(server.call_args.kwargs["job_name"], "ps")
      server.return_value.join.assert_called_once()


class PiecesTest(base.TestCase):
  def test_default_strategy_keeps_plain_adam_and_inputs(self):
    strategy = tf.distribute.get_strategy()
    self.assertTrue(distribute.is_default(strategy))
    self.assertIs(type(distribute.adam(0.1, strategy)), tf.keras.optimizers.Adam)
    train, val = tf.data.Dataset.range(3), tf.data.Dataset.range(2)
    inputs = distribute.fit_inputs(strategy, train, val, lambda: train, 3, 1)
    self.assertIs(inputs.train, train)
    self.assertIs(inputs.validation, val)
    self.assertIsNone(inputs.steps_per_epoch)
    self.assertIsInstance(distribute.non_finite_guard(strategy), run_dir.RaiseOnNonFinite)

  def test_mirrored_one_replica_steps_like_adam(self):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    self.assertFalse(distribute.is_default(strategy))
    results = []
    for optimizer_fn in (
      lambda: tf.keras.optimizers.Adam(0.1),
      lambda: distribute.adam(0.1, strategy),
    ):
      with strategy.scope():
        variable = tf.Variable([1.0, 2.0])
        optimizer = optimizer_fn()

      @tf.function
      def step(variable=variable, optimizer=optimizer):
        def replica_step():
          with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(variable))
          optimizer.apply_gradients([(tape.gradient(loss, variable), variable)])

        strategy.run(replica_step)

      step()
      results.append(variable.numpy())
    self.assertIsInstance(distribute.adam(0.1, strategy), distribute.MeanReplicaAdam)
    self.assertAllClose(results[0], results[1])

  def test_mean_replica_adam_scales_dense_and_sparse_gradients(self):
    dense = distribute._scaled(tf.constant([2.0, 4.0]), 0.5)
    sparse = distribute._scaled(tf.IndexedSlices(tf.constant([[2.0]]), tf.constant([1])), 0.5)
    self.assertAllEqual(dense, [1.0, 2.0])
    self.assertAllEqual(sparse.values, [[1.0]])
    self.assertAllEqual(sparse.indices, [1])
    self.assertIsNone(distribute._scaled(None, 0.5))

  def test_prepare_model_allows_per_replica_mean_losses(self):
    class Task(tf.keras.layers.Layer):
      def __init__(self):
        super().__init__()
        self._loss = tf.keras.losses.BinaryCrossentropy()

    model = tf.keras.Sequential([Task()])
    self.assertIs(distribute.prepare_model(model), model)
    self.assertTrue(model.layers[0]._loss._allow_sum_over_batch_size)
    self.assertEqual(model.distribute_reduction_method, "first")

  def test_epoch_guard_raises_on_a_non_finite_loss(self):
    guard = distribute.EpochNonFiniteGuard()
    guard.on_epoch_end(0, {"loss": 0.5})
    with self.assertRaisesRegex(run_dir.NonFiniteLossError, "became nan in epoch 2"):
      guard.on_epoch_end(1, {"loss": float("nan")})
    self.assertFalse(guard._implements_train_batch_hooks())  # Allowed with parameter servers.

  def test_placement_groups_the_parts_of_a_partitioned_variable(self):
    module = tf.Module()
    module.parts = [
      tf.Variable(np.zeros((3, 2), np.float32), name="table/part_1"),
      tf.Variable(np.zeros((4, 2), np.float32), name="table/part_0"),
      tf.Variable(0.0, name="scalar"),
    ]
    placement = distribute.variable_placement(module)
    self.assertEqual(placement["table"]["shape"], [7, 2])
    self.assertEqual([s["shape"] for s in placement["table"]["shards"]], [[4, 2], [3, 2]])
    self.assertEqual(placement["scalar:0"]["shape"], [])
    self.assertLen(placement["scalar:0"]["shards"], 1)

  def test_sid_subword_pooling_reads_a_partitioned_table(self):
    # Parameter servers hand the SID layers a ShardedVariable (rows 0-1 on one task, row 2 on the
    # other); pooling must read it as one table, as tf.nn.embedding_lookup does.
    table = sharded_variable.ShardedVariable(
      [tf.Variable([[1.0, 2.0], [3.0, 4.0]]), tf.Variable([[5.0, 6.0]])]
    )
    tokens = tf.constant([[0, 2, -1], [1, -1, -1]], tf.int64)
    self.assertAllClose(sid_item.sum_pool_padded(table, tokens), [[6.0, 8.0], [3.0, 4.0]])

  def test_task_output_dir(self):
    output = os.path.join(self.get_temp_dir(), "run")
    os.makedirs(os.path.join(output, "backup"))
    with open(os.path.join(output, "backup", "state"), "w") as f:
      f.write("epoch 1")
    with _env({"worker": ["a:1", "b:2"]}, "worker", 0):
      with distribute.task_output_dir(output) as folder:
        self.assertEqual(folder, output)
    with _env({"worker": ["a:1", "b:2"]}, "worker", 1):
      with distribute.task_output_dir(output) as folder:
        self.assertNotEqual(folder, output)
        with open(os.path.join(folder, "backup", "state")) as f:
          self.assertEqual(f.read(), "epoch 1")  # The chief's state, to resume the same way.
      self.assertFalse(os.path.exists(folder))


if __name__ == "__main__":
  tf.test.main()
