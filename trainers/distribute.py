r"""tf.distribute for the training jobs: one `--strategy` flag, the cluster from `TF_CONFIG`.

  default           no tf.distribute (one device): what the jobs always did.
  mirrored          MirroredStrategy: synchronous replicas on this machine's GPUs (or its CPU).
  multi_worker      MultiWorkerMirroredStrategy: synchronous data parallelism over the `worker`
                    tasks of TF_CONFIG (no TF_CONFIG: this machine alone). Every task runs the same
                    command; worker 0 (or a `chief` task) writes the outputs, the others work in a
                    private copy of the run folder (`task_output_dir`).
  parameter_server  ParameterServerStrategy: the `chief` task of TF_CONFIG runs the job (it is the
                    coordinator); `worker` and `ps` tasks run the same command and serve
                    (`serve_if_server_task` blocks in `tf.distribute.Server.join`). Variables of at
                    least 2 x `ps_min_shard_bytes` (the hash-ID, user-ID and SID-subword tables)
                    are split across the `ps` tasks by a `MinSizePartitioner`; the rest live on
                    one. (`model.sid_item` reads subword rows with `tf.nn.embedding_lookup`,
                    which looks a split table up shard by shard.)

A parameter-server cluster's `worker` and `ps` tasks may also run the lighter
`python -m trainers.distribute` (it only serves; any job's own command serves too).

TF_CONFIG is TensorFlow's: `{"cluster": {"chief": [...], "worker": ["host:port", ...], "ps": [...]},
"task": {"type": "worker", "index": 0}}`.

What the jobs need beyond `strategy.scope()` (the pieces `ranker_training.fit_and_evaluate` and
`trainers.train_rqvae` use):
  * `adam`: Keras sums the replicas' gradients, expecting each replica's loss to be divided by the
    number of replicas (its compile-time losses are); the TFRS tasks' losses are per-replica means,
    so under a strategy the optimizer averages the replicas' gradients instead (`MeanReplicaAdam`):
    the step is then the gradient of the global batch's mean loss, as with one device.
  * `prepare_model`: lets those losses keep their mean reduction under a strategy (Keras refuses
    AUTO / SUM_OVER_BATCH_SIZE outside `compile` unless told), and logs metrics once, not summed
    over the replicas.
  * `fit_inputs`: ParameterServerStrategy needs an endless dataset and `steps_per_epoch`; each
    worker reads its own shard of the batches (`DatasetCreator`). MultiWorkerMirroredStrategy
    splits every global batch across the workers (auto-shard by data). `--batch_size` is the global
    batch under every strategy.
  * `non_finite_guard`: ParameterServerStrategy allows no batch-level callbacks; the NaN guard then
    checks each epoch's loss.
  * `PlacementLog`: writes `distribution.json` (where every variable and shard lives).
"""

import contextlib
import dataclasses
import enum
import json
import math
import os
import re
import shutil
import tempfile
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import tensorflow as tf
from absl import app

from features import io_utils
from trainers import cli, run_dir

TF_CONFIG = "TF_CONFIG"
PLACEMENT_FILE = "distribution.json"
SERVER_TASKS = ("worker", "ps")
_PART = re.compile(r"(.+)/part_(\d+)(:\d+)?")


class Strategy(enum.Enum):
  DEFAULT = "default"
  MIRRORED = "mirrored"
  MULTI_WORKER = "multi_worker"
  PARAMETER_SERVER = "parameter_server"


@dataclasses.dataclass
class StrategyConfig:
  """Which strategy a job trains under.

  Attributes:
    strategy: str. One of `Strategy`'s values. Defaults to "default".
    ps_min_shard_bytes: int. parameter_server: the smallest shard of a partitioned variable; a
      variable below twice this stays whole. Defaults to 256 KiB (TensorFlow's default).
    ps_max_shards: Optional int. parameter_server: most shards per variable. Defaults to None (the
      number of `ps` tasks).
  """

  strategy: str = Strategy.DEFAULT.value
  ps_min_shard_bytes: int = 256 << 10
  ps_max_shards: Optional[int] = None

  def __post_init__(self):
    allowed = [s.value for s in Strategy]
    if self.strategy not in allowed:
      raise ValueError(f"`strategy` must be one of {allowed}. Received: strategy={self.strategy!r}")
    if self.ps_min_shard_bytes <= 0:
      raise ValueError(
        f"`ps_min_shard_bytes` must be positive. Received: ps_min_shard_bytes="
        f"{self.ps_min_shard_bytes}"
      )
    if self.ps_max_shards is not None and self.ps_max_shards <= 0:
      raise ValueError(
        f"`ps_max_shards` must be positive. Received: ps_max_shards={self.ps_max_shards}"
      )

  @property
  def kind(self) -> Strategy:
    return Strategy(self.strategy)


def tf_config() -> Dict[str, Any]:
  """The parsed TF_CONFIG ({} when unset).

  Raises:
    ValueError: naming TF_CONFIG and its value, when it is not JSON with a `cluster` dict and a
      `task` {type, index} in that cluster.
  """
  raw = os.environ.get(TF_CONFIG, "")
  if not raw.strip():
    return {}
  try:
    config = json.loads(raw)
    cluster, spec = config["cluster"], config.get("task", {})
    if spec and not 0 <= int(spec["index"]) < len(cluster[spec["type"]]):
      raise KeyError("task")
  except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
    raise ValueError(
      f'{TF_CONFIG} must be JSON {{"cluster": {{job: [host:port, ...]}}, "task": {{"type": '
      f'job, "index": i}}}} with the task in the cluster. Received: {TF_CONFIG}={raw!r} ({e})'
    ) from e
  return config


def task() -> Tuple[Optional[str], int]:
  """(task type, index) of this process in TF_CONFIG; (None, 0) without one."""
  spec = tf_config().get("task") or {}
  return spec.get("type"), int(spec.get("index", 0))


def cluster_sizes() -> Dict[str, int]:
  """{job: number of tasks} of TF_CONFIG's cluster."""
  return {job: len(tasks) for job, tasks in tf_config().get("cluster", {}).items()}


def is_chief() -> bool:
  """True for the task that writes a job's outputs: the `chief`, else worker 0 (and a process
  without TF_CONFIG)."""
  kind, index = task()
  if kind is None or kind == "chief":
    return True
  return kind == "worker" and index == 0 and "chief" not in cluster_sizes()


def serve_if_server_task(config: StrategyConfig) -> None:
  """With parameter_server, on a `worker` or `ps` task: runs this task's server until the process
  is killed (never returns). Otherwise returns at once."""
  kind, index = task()
  if config.kind is not Strategy.PARAMETER_SERVER or kind not in SERVER_TASKS:
    return
  os.environ.setdefault("GRPC_FAIL_FAST", "use_caller")  # Report lost peers quickly (TF docs).
  resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
  server = tf.distribute.Server(
    resolver.cluster_spec(), job_name=kind, task_index=index, protocol="grpc", start=True
  )
  print(f"serving {kind} task {index} of {cluster_sizes()} at {server.target}", flush=True)
  server.join()


def variable_partitioner(config: StrategyConfig, num_ps: int):
  """The `MinSizePartitioner` that splits large variables across `num_ps` parameter servers."""
  return tf.distribute.experimental.partitioners.MinSizePartitioner(
    min_shard_bytes=config.ps_min_shard_bytes, max_shards=config.ps_max_shards or num_ps
  )


def make_strategy(config: StrategyConfig) -> tf.distribute.Strategy:
  """The strategy `config` names, its cluster from TF_CONFIG. Create it first thing in a job
  (MultiWorkerMirroredStrategy must exist before TensorFlow runs anything).

  Raises:
    ValueError: TF_CONFIG is malformed, or parameter_server without a `chief` and `ps` task, or run
      on a task other than the chief (`serve_if_server_task` serves those).
  """
  kind = config.kind
  if kind is Strategy.DEFAULT:
    return tf.distribute.get_strategy()
  if kind is Strategy.MIRRORED:
    return tf.distribute.MirroredStrategy()
  if kind is Strategy.MULTI_WORKER:
    tf_config()  # Fails early, naming TF_CONFIG, when it is malformed.
    return tf.distribute.MultiWorkerMirroredStrategy()
  sizes = cluster_sizes()
  if not sizes.get("ps") or not sizes.get("chief") or task()[0] != "chief":
    raise ValueError(
      "--strategy=parameter_server needs TF_CONFIG with `chief`, `worker` and `ps` tasks, and runs "
      f"the job on the chief (the others serve). Received: cluster {sizes}, task {task()}"
    )
  os.environ.setdefault("GRPC_FAIL_FAST", "use_caller")
  resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
  return tf.distribute.ParameterServerStrategy(
    resolver, variable_partitioner=variable_partitioner(config, sizes["ps"])
  )


def uses_coordinator(strategy: tf.distribute.Strategy) -> bool:
  """True for ParameterServerStrategy (training steps are scheduled on workers)."""
  return isinstance(strategy, tf.distribute.ParameterServerStrategy)


class MeanReplicaAdam(tf.keras.optimizers.Adam):
  """Adam that averages the replicas' gradients instead of summing them: with per-replica mean
  losses (the TFRS tasks'), each step follows the gradient of the global batch's mean loss."""

  def aggregate_gradients(self, grads_and_vars):
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas > 1:
      grads_and_vars = [(_scaled(g, 1.0 / replicas), v) for g, v in grads_and_vars]
    return super().aggregate_gradients(grads_and_vars)


def _scaled(gradient, factor: float):
  if gradient is None:
    return None
  if isinstance(gradient, tf.IndexedSlices):
    return tf.IndexedSlices(gradient.values * factor, gradient.indices, gradient.dense_shape)
  return gradient * factor


def adam(learning_rate: float, strategy: tf.distribute.Strategy) -> tf.keras.optimizers.Optimizer:
  """Adam for a model built under `strategy`: plain Adam without a strategy, `MeanReplicaAdam`
  under one (create it inside `strategy.scope()`)."""
  if is_default(strategy):
    return tf.keras.optimizers.Adam(learning_rate)
  return MeanReplicaAdam(learning_rate)


def is_default(strategy: tf.distribute.Strategy) -> bool:
  """True for TensorFlow's default (no-op) strategy."""
  with strategy.scope():
    return not tf.distribute.has_strategy()


def prepare_model(model: tf.keras.Model) -> tf.keras.Model:
  """Makes `model` (built inside a strategy's scope) train as it does on one device; a no-op for
  the default strategy. Returns `model`.

  Every Keras loss its layers hold (the TFRS tasks' `_loss`) may reduce to a per-replica mean
  (`adam` averages across replicas, as `Model.compile` lets its own losses do), and `fit` logs the
  first replica's values instead of the replicas' sum: the metrics are already global (Keras
  aggregates them across replicas); `loss` is then the first replica's batch loss.
  """
  for module in (model, *model.submodules):
    loss = getattr(module, "_loss", None)
    if isinstance(loss, tf.keras.losses.Loss):
      loss._allow_sum_over_batch_size = True
  model.distribute_reduction_method = "first"
  return model


@dataclasses.dataclass
class FitInputs:
  """What `model.fit` takes under a strategy: its data and, where needed, the steps."""

  train: Any
  validation: Any
  steps_per_epoch: Optional[int] = None
  validation_steps: Optional[int] = None


def fit_inputs(
  strategy: tf.distribute.Strategy,
  train_ds: tf.data.Dataset,
  val_ds: Optional[tf.data.Dataset],
  make_train: Callable[[], tf.data.Dataset],
  train_rows: int,
  batch_size: int,
) -> FitInputs:
  """`model.fit`'s inputs under `strategy`.

  `train_ds` (finite, batched with the global batch) and `val_ds` are used as they are (one pass
  per epoch), except that multi-worker auto-shards them by data (every global batch is split across
  the workers). With ParameterServerStrategy every worker builds its own copy with `make_train()`,
  keeps every n-th batch (n workers) and repeats it; an epoch is ceil(train_rows / batch_size)
  steps over all workers. Validation there repeats `val_ds` for its number of batches, the workers
  racing over their own copies: exact with one worker, an estimate with more (enough for early
  stopping; score the model on the chief for exact numbers).
  """
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return FitInputs(train_ds.with_options(options), val_ds and val_ds.with_options(options))
  if not uses_coordinator(strategy):
    return FitInputs(train_ds, val_ds)

  def per_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
    train = make_train()
    return train.shard(context.num_input_pipelines, context.input_pipeline_id).repeat()

  inputs = FitInputs(
    tf.keras.utils.experimental.DatasetCreator(per_worker),
    None,
    steps_per_epoch=max(1, math.ceil(train_rows / batch_size)),
  )
  if val_ds is not None:
    inputs.validation_steps = max(1, sum(1 for _ in val_ds))
    inputs.validation = val_ds.repeat()
  return inputs


class EpochNonFiniteGuard(tf.keras.callbacks.Callback):
  """Raises run_dir.NonFiniteLossError when an epoch's loss is NaN or Inf (the batch-level guard's
  stand-in where batch-level callbacks are not allowed)."""

  def on_epoch_end(self, epoch, logs=None):
    loss = (logs or {}).get("loss")
    if loss is not None and not math.isfinite(float(loss)):
      raise run_dir.NonFiniteLossError(
        f"The training loss became {float(loss)} in epoch {epoch + 1}; nothing was saved as done. "
        "Lower --learning_rate or check the data for extreme values."
      )


def non_finite_guard(strategy: tf.distribute.Strategy) -> tf.keras.callbacks.Callback:
  """The NaN guard `model.fit` can take under `strategy`: per batch, or per epoch when training
  steps run on parameter-server workers."""
  return EpochNonFiniteGuard() if uses_coordinator(strategy) else run_dir.RaiseOnNonFinite()


def variable_placement(model: tf.Module) -> Dict[str, Any]:
  """{variable name: {shape, shards: [{shape, device}]}} of `model`'s variables; the parts of a
  partitioned variable (`NAME/part_<i>`) are listed, in order, under NAME."""
  out: Dict[str, Any] = {}
  for variable in model.variables:
    match = _PART.fullmatch(variable.name)
    name, part = (match.group(1), int(match.group(2))) if match else (variable.name, 0)
    entry = out.setdefault(name, {"shards": {}})
    entry["shards"][part] = {"shape": list(variable.shape), "device": variable.device}
  for entry in out.values():
    shards = [entry["shards"][i] for i in sorted(entry["shards"])]
    entry["shards"] = shards
    first = shards[0]["shape"]
    entry["shape"] = [sum(s["shape"][0] for s in shards), *first[1:]] if len(shards) > 1 else first
  return out


class PlacementLog(tf.keras.callbacks.Callback):
  """At the start of training, writes DIR/distribution.json: the strategy, TF_CONFIG's cluster,
  the replicas, and where each variable (and each shard of a partitioned one) lives."""

  def __init__(self, output_dir: str, config: StrategyConfig):
    super().__init__()
    self.path = os.path.join(output_dir, PLACEMENT_FILE)
    self.config = config

  def on_train_begin(self, logs=None):
    strategy = self.model.distribute_strategy
    io_utils.write_json(
      self.path,
      {
        "strategy": self.config.strategy,
        "cluster": cluster_sizes(),
        "num_replicas_in_sync": int(strategy.num_replicas_in_sync),
        "variables": variable_placement(self.model),
      },
    )


def _copy_tree(source: str, target: str) -> None:
  for folder, _, files in tf.io.gfile.walk(source):
    relative = os.path.relpath(folder, source)
    tf.io.gfile.makedirs(os.path.join(target, relative))
    for name in files:
      tf.io.gfile.copy(os.path.join(folder, name), os.path.join(target, relative, name), True)


@contextlib.contextmanager
def task_output_dir(output_dir: str) -> Iterator[str]:
  """The folder this task writes the run to: `output_dir` on the chief; on another
  multi-worker task, a private local copy of it taken now (before any step runs, so the task
  makes the same reuse/resume decision as the chief and restores the same backup), deleted on
  exit. Only the chief's outputs are kept."""
  if is_chief():
    yield output_dir
    return
  kind, index = task()
  private = tempfile.mkdtemp(prefix=f"{kind}-{index}-")
  try:
    if tf.io.gfile.isdir(output_dir):
      _copy_tree(output_dir, private)
    yield private
  finally:
    shutil.rmtree(private, ignore_errors=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  kind, _ = task()
  if kind not in SERVER_TASKS:
    raise app.UsageError(
      f"python -m trainers.distribute serves a {' or '.join(SERVER_TASKS)} task of a "
      f"parameter-server cluster; TF_CONFIG names task {task()} (the chief runs the job itself)."
    )
  serve_if_server_task(StrategyConfig(strategy=Strategy.PARAMETER_SERVER.value))


if __name__ == "__main__":
  cli.run(main)
