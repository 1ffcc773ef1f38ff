"""trainers.train_ranker on tf.distribute clusters of local processes (127.0.0.1, started and
stopped here, every wait bounded): MultiWorkerMirroredStrategy with 2 workers against 1 worker,
and ParameterServerStrategy with 2 parameter servers, 1 worker and a coordinator whose run is
killed after one epoch and resumed, then exported and checked against the serving contract."""

import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np

from export import contract_check, export_model
from features import datasets, splits, synthetic
from tests import base
from tests.base import tf
from trainers import ranker_training

SIZES = {"n_items": 300, "n_users": 60, "n_interactions": 1500, "embedding_dim": 8}
RANKER = [
  "--dataset=synthetic",
  f"--synthetic_items={SIZES['n_items']}",
  f"--synthetic_users={SIZES['n_users']}",
  f"--synthetic_interactions={SIZES['n_interactions']}",
  f"--synthetic_dim={SIZES['embedding_dim']}",
  "--split=new_items",
  "--item_representation=hash",
  "--table_rows=2000",
  "--embedding_dim=8",
  "--epochs=2",
  "--patience=5",
  "--batch_size=128",
]
TIMEOUT_S = 300
# Tolerance of the 1- vs 2-worker comparison. Both runs take the same steps on the same global
# batches (each worker gets half of every batch; the optimizer averages the replicas' gradients),
# so they differ only by float32 re-association: the per-replica means and their average versus
# one mean, and an all-reduce sum. That is ~1e-7 relative per step; over ~30 Adam steps it stays
# far below 1e-4 in the scores. AUC then moves only if a score pair within that distance swaps
# order: each swap moves AUC by 1/(positives * negatives), about 1e-5 here, so 1e-3 allows ~100
# swapped pairs, and the RMSEs get 1e-4. (Measured: equal to 1e-9.)
AUC_TOLERANCE = 1e-3
RMSE_TOLERANCE = 1e-4


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return [f"127.0.0.1:{p}" for p in ports]


def _env(cluster, kind, index):
  config = {"cluster": cluster, "task": {"type": kind, "index": index}}
  return dict(
    os.environ,
    TF_CONFIG=json.dumps(config),
    TF_USE_LEGACY_KERAS="1",
    TF_CPP_MIN_LOG_LEVEL="3",
    CUDA_VISIBLE_DEVICES="",
    TF_NUM_INTRAOP_THREADS="1",
  )


def _start(module, args, cluster, kind, index, log_dir):
  """Starts `python -m module args` as task (kind, index) of `cluster`, logging to a file."""
  log = open(os.path.join(log_dir, f"{kind}-{index}-{os.path.basename(module)}.log"), "w")
  process = subprocess.Popen(
    [sys.executable, "-m", module, *args],
    cwd=base.ROOT,
    env=_env(cluster, kind, index),
    stdout=log,
    stderr=subprocess.STDOUT,
    start_new_session=True,
  )
  process.log = log
  return process


def _finish(process, timeout=TIMEOUT_S):
  """Waits for `process` (killing it past `timeout`); returns (exit status, its log)."""
  try:
    process.wait(timeout=timeout)
  except subprocess.TimeoutExpired:
    _stop(process)
  process.log.close()
  with open(process.log.name) as f:
    return process.returncode, f.read()


def _stop(process):
  if process.poll() is None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _metrics(folder):
  with open(os.path.join(folder, "metrics.json")) as f:
    return json.load(f)


class MultiWorkerTest(base.TestCase):
  def test_two_workers_match_one_worker_with_the_same_global_batch(self):
    root = self.get_temp_dir()
    one, two = os.path.join(root, "one"), os.path.join(root, "two")
    flags = [*RANKER, "--strategy=multi_worker"]
    single = {"worker": _free_ports(1)}
    pair = {"worker": _free_ports(2)}
    processes = [
      _start("trainers.train_ranker", [*flags, f"--output_dir={one}"], single, "worker", 0, root),
      *[
        _start("trainers.train_ranker", [*flags, f"--output_dir={two}"], pair, "worker", i, root)
        for i in range(2)
      ],
    ]
    try:
      for process in processes:
        status, log = _finish(process)
        self.assertEqual(status, 0, log[-3000:])
    finally:
      for process in processes:
        _stop(process)
    a, b = _metrics(one), _metrics(two)
    for part in ("test", "validation"):
      for slice_name in ("all", "warm", "cold"):
        self.assertAllClose(
          a[part][slice_name]["auc"], b[part][slice_name]["auc"], atol=AUC_TOLERANCE
        )
        key = next(k for k in a[part][slice_name] if k.endswith("_rmse"))
        self.assertAllClose(a[part][slice_name][key], b[part][slice_name][key], atol=RMSE_TOLERANCE)
    self.assertAllClose(a["history"]["val_auc"], b["history"]["val_auc"], atol=AUC_TOLERANCE)
    self.assertEqual(a["epochs_run"], b["epochs_run"])
    with open(os.path.join(two, "distribution.json")) as f:
      self.assertEqual(json.load(f)["num_replicas_in_sync"], 2)
    with open(os.path.join(one, "distribution.json")) as f:
      self.assertEqual(json.load(f)["num_replicas_in_sync"], 1)


class ParameterServerTest(base.TestCase):
  """One cluster for the class: ps 0 runs the job's own command (as on a real cluster every task
  does), ps 1 and the worker the lighter `python -m trainers.distribute`. (One worker keeps the
  test short on 2 cores; `benchmarks.distribute_throughput` runs two.)"""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = os.path.join(tf.compat.v1.test.get_temp_dir(), "ps_cluster")
    os.makedirs(cls.root, exist_ok=True)
    cls.output = os.path.join(cls.root, "ranker")
    chief, ps, workers = _free_ports(1), _free_ports(2), _free_ports(1)
    cluster = {"chief": chief, "ps": ps, "worker": workers}
    flags = [
      *RANKER,
      "--strategy=parameter_server",
      "--ps_min_shard_bytes=16384",  # Splits the 2,000 x 8 hash table, not the small kernels.
      f"--output_dir={cls.output}",
    ]
    cls.servers = [
      _start("trainers.train_ranker", flags, cluster, "ps", 0, cls.root),
      _start("trainers.distribute", [], cluster, "ps", 1, cls.root),
      _start("trainers.distribute", [], cluster, "worker", 0, cls.root),
    ]
    try:
      killed_flags = [*flags, "--interrupt_after_epoch=1"]
      killed = _start("trainers.train_ranker", killed_flags, cluster, "chief", 0, cls.root)
      cls.killed_status, cls.killed_log = _finish(killed)
      cls.backup_after_kill = os.path.isdir(os.path.join(cls.output, "backup"))
      resumed = _start("trainers.train_ranker", flags, cluster, "chief", 0, cls.root)
      cls.status, cls.log = _finish(resumed)
    finally:
      for server in cls.servers:
        _stop(server)
        server.log.close()

  def setUp(self):
    super().setUp()
    self.assertEqual(self.status, 0, self.log[-3000:])

  def test_a_killed_coordinator_resumes_from_its_backup(self):
    self.assertEqual(self.killed_status, 3, self.killed_log[-3000:])
    self.assertIn("interrupted after epoch 1", self.killed_log)
    self.assertTrue(self.backup_after_kill)
    metrics = _metrics(self.output)
    self.assertEqual(metrics["epochs_run"], 2)
    self.assertLen(metrics["history"]["val_auc"], 2)  # Epoch 1 from before the kill.
    self.assertFalse(os.path.exists(os.path.join(self.output, "backup")))

  def test_hash_table_is_split_across_both_servers(self):
    with open(os.path.join(self.output, "distribution.json")) as f:
      placement = json.load(f)
    self.assertEqual(placement["cluster"], {"chief": 1, "ps": 2, "worker": 1})
    (table,) = [v for name, v in placement["variables"].items() if "id_embedding" in name]
    self.assertEqual(table["shape"], [2000, 8])
    self.assertEqual([s["shape"] for s in table["shards"]], [[1000, 8], [1000, 8]])
    devices = sorted(s["device"] for s in table["shards"])
    self.assertEqual(devices, [f"/job:ps/replica:0/task:{i}/device:CPU:0" for i in range(2)])
    users = [v for name, v in placement["variables"].items() if "user_embedding" in name]
    self.assertLen(users[0]["shards"], 2)
    kernels = [v for name, v in placement["variables"].items() if "kernel" in name]
    self.assertTrue(kernels and all(len(v["shards"]) == 1 for v in kernels))

  def test_the_restored_ranker_predicts_what_the_cluster_trained(self):
    config = synthetic.config_for_profile("production", **SIZES)
    dataset = datasets.load_dataset("synthetic", synthetic_config=config)
    split = splits.split_dataset(
      dataset, "new_items", cold_item_fraction=0.2, warm_holdout_fraction=0.1
    )
    model = ranker_training.load_ranker(self.output)  # One device: the shards are joined.
    data = ranker_training.make_dataset(dataset, split.eval, model.config, 2048)
    scores = ranker_training.predict(model, data)
    saved = np.load(os.path.join(self.output, "predictions.npz"))
    self.assertAllClose(scores["ctr"], saved["ctr"], atol=1e-6)

  def test_export_passes_the_serving_contract(self):
    serving = os.path.join(self.get_temp_dir(), "serving")
    export_dir = export_model.export(self.output, serving)
    results = contract_check.run_checks(export_dir, skip_cpp=True)
    self.assertTrue(all(r.passed for r in results), contract_check.format_summary(results))


if __name__ == "__main__":
  tf.test.main()
