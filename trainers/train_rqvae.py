"""Trains the RQ-VAE that turns content embeddings into semantic IDs.

  python -m trainers.train_rqvae --dataset=movielens --num_levels=3 --codebook_size=256 \
      --latent_dim=256 --epochs=50 --output_dir=runs/rqvae

Writes, under --output_dir:
  model/           the trained RQ-VAE (config.json + TF checkpoint; `model.rqvae.load_rqvae`)
  metrics.json     per-epoch losses, per-level codebook utilization and perplexity, unique-SID
                   fraction and largest SID group, then the final SID quality over all items
  utilization.png  codebook utilization per level over the epochs
  backup/          Keras BackupAndRestore state while training: an interrupted run resumes from
                   the last finished epoch when re-run with the same flags; removed on success.
Every file is written atomically. Re-running a finished run with the same settings does nothing;
--overwrite starts again.

--strategy trains under tf.distribute (`trainers.distribute`, the cluster from TF_CONFIG). With
`parameter_server` the chief runs the job and each worker trains on its own shard of the batches,
initialising and resetting the codebooks (on the ps tasks) from its batch, asynchronously.
`mirrored` and `multi_worker` (every worker runs this command; worker 0 writes the outputs) average
the replicas' gradients; with more than one replica they need --codebook_init=random
--nodead_code_reset, since a replica cannot share the value it writes into a codebook inside the
training step.
"""

import dataclasses
import json
import math
import os
import shutil
from typing import Any, Dict, List, Optional

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from features import io_utils, schema  # noqa: E402
from model import rqvae, rqvae_metrics  # noqa: E402
from trainers import cli, data_flags, distribute, job_flags  # noqa: E402

data_flags.define()
job_flags.define_strategy()
job_flags.define_output_dir(None, "Folder for the model, metrics.json and plots.")
flags.DEFINE_integer("num_levels", 8, "L: codebooks (SID length). About 3-4 for ~10k items.")
flags.DEFINE_integer("codebook_size", 2048, "K: codes per level. About 64-256 for ~10k items.")
flags.DEFINE_integer("latent_dim", 256, "d: RQ-VAE latent width.")
flags.DEFINE_float("beta", 0.25, "Commitment loss weight.")
flags.DEFINE_enum("codebook_init", "kmeans", ["kmeans", "random"], "Codebook initialisation.")
flags.DEFINE_integer("kmeans_iterations", 10, "Lloyd iterations of the k-means initialisation.")
flags.DEFINE_bool("dead_code_reset", True, "Reset codes unused in each batch (the paper).")
flags.DEFINE_float(
  "reset_interpolation",
  0.3,
  "Reset codes go this far from a random item's code toward its residual (1 = the paper's "
  "recipe; 0.3, a split of a busy code, uses more codes and gives more unique SIDs).",
)
flags.DEFINE_integer("epochs", 20, "Training epochs.")
flags.DEFINE_integer("batch_size", 1024, "Items per step; the reset draws from the batch.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_enum(
  "items", "all", ["all", "train"], "Train on all items, or only those in the training split."
)
flags.DEFINE_integer(
  "sid_stats_items",
  100_000,
  "Epoch-end SID statistics on at most this many items (a fixed sample).",
)
flags.DEFINE_bool("overwrite", False, "Discard an existing run in --output_dir and start again.")
flags.DEFINE_integer(
  "verbose", 1, "Keras progress: 0 silent, 1 progress bar, 2 one line per epoch."
)
FLAGS = flags.FLAGS

MODEL_SUBDIR = "model"
BACKUP_SUBDIR = "backup"
METRICS_FILE = "metrics.json"
PLOT_FILE = "utilization.png"
RUN_FILE = "run.json"


def config_from_flags(input_dim: int) -> rqvae.RQVAEConfig:
  return rqvae.RQVAEConfig(
    input_dim=input_dim,
    latent_dim=FLAGS.latent_dim,
    num_levels=FLAGS.num_levels,
    codebook_size=FLAGS.codebook_size,
    beta=FLAGS.beta,
    codebook_init=FLAGS.codebook_init,
    kmeans_iterations=FLAGS.kmeans_iterations,
    dead_code_reset=FLAGS.dead_code_reset,
    reset_interpolation=FLAGS.reset_interpolation,
    learning_rate=FLAGS.learning_rate,
    seed=FLAGS.seed,
  )


def training_embeddings(dataset: schema.Dataset, which: str) -> np.ndarray:
  """The embeddings to train on: all items, or those with interactions in the training split."""
  if which == "all":
    return dataset.embeddings
  train_ids = np.unique(data_flags.split(dataset).train["item_id"].to_numpy())
  rows = dataset.item_index(train_ids)
  return dataset.embeddings[rows[rows >= 0]]


def _sample(embeddings: np.ndarray, size: int, seed: int) -> np.ndarray:
  if len(embeddings) <= size:
    return embeddings
  rows = np.sort(np.random.default_rng(seed).choice(len(embeddings), size, replace=False))
  return embeddings[rows]


def epoch_record(epoch: int, logs: Dict[str, Any], num_levels: int) -> Dict[str, Any]:
  """Folds Keras' flat per-level log keys (`utilization_0`, ...) into per-level lists."""
  record: Dict[str, Any] = {"epoch": epoch + 1}
  per_level = ("utilization", "perplexity", "item_utilization")
  for key, value in logs.items():
    if not any(key.startswith(f"{p}_") and key[len(p) + 1 :].isdigit() for p in per_level):
      record[key] = float(value)
  for prefix in per_level:
    values = [logs.get(f"{prefix}_{level}") for level in range(num_levels)]
    if all(v is not None for v in values):
      record[prefix] = [float(v) for v in values]
  return record


def plot_utilization(path: str, epochs: List[Dict[str, Any]], title: str) -> None:
  """PNG of per-level codebook utilization (over the epoch's batches, and over all items)."""
  fig, ax = plt.subplots(figsize=(7, 4))
  xs = [r["epoch"] for r in epochs]
  num_levels = len(epochs[0].get("utilization", [])) if epochs else 0
  colors = plt.cm.viridis(np.linspace(0, 0.9, max(num_levels, 1)))
  for level in range(num_levels):
    ax.plot(
      xs, [r["utilization"][level] for r in epochs], color=colors[level], label=f"level {level}"
    )
    if all("item_utilization" in r for r in epochs):
      ys = [r["item_utilization"][level] for r in epochs]
      ax.plot(xs, ys, color=colors[level], linestyle="--", linewidth=0.8)
  ax.set_xlabel("epoch")
  ax.set_ylabel("fraction of codes used")
  ax.set_ylim(0, 1.05)
  ax.set_title(f"{title}\nsolid: used in the epoch; dashed: by the item sample at epoch end")
  ax.legend(fontsize="small", ncol=2)
  fig.tight_layout()
  with io_utils.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=110)
  plt.close(fig)


class MetricsWriter(tf.keras.callbacks.Callback):
  """Rewrites metrics.json and the utilization PNG atomically after every epoch."""

  def __init__(self, output_dir: str, header: Dict[str, Any], num_levels: int):
    super().__init__()
    self.output_dir = output_dir
    self.header = header
    self.num_levels = num_levels
    self.epochs: List[Dict[str, Any]] = []
    previous = os.path.join(output_dir, METRICS_FILE)
    if os.path.exists(previous):  # Resuming: keep the epochs finished before the interruption.
      with open(previous) as f:
        self.epochs = json.load(f).get("epochs", [])

  def on_epoch_end(self, epoch, logs=None):
    record = epoch_record(epoch, logs or {}, self.num_levels)
    self.epochs = [r for r in self.epochs if r["epoch"] < record["epoch"]] + [record]
    self.write()

  def write(self, **extra) -> Dict[str, Any]:
    metrics = dict(self.header, epochs=self.epochs, **extra)
    io_utils.write_json(os.path.join(self.output_dir, METRICS_FILE), metrics)
    if self.epochs:
      title = (
        f"RQ-VAE L={self.header['config']['num_levels']} K={self.header['config']['codebook_size']}"
      )
      plot_utilization(os.path.join(self.output_dir, PLOT_FILE), self.epochs, title)
    return metrics


def _check_run_dir(output_dir: str, run: Dict[str, Any]) -> bool:
  """True if `output_dir` already holds this finished run; raises if it holds a different one."""
  path = os.path.join(output_dir, RUN_FILE)
  if FLAGS.overwrite and os.path.isdir(output_dir):
    for name in (MODEL_SUBDIR, BACKUP_SUBDIR):
      shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
    for name in (METRICS_FILE, PLOT_FILE, RUN_FILE):
      if os.path.exists(os.path.join(output_dir, name)):
        os.remove(os.path.join(output_dir, name))
  if not os.path.exists(path):
    return False
  try:
    with open(path) as f:
      previous = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise app.UsageError(
      f"--output_dir={output_dir}: {path} is unreadable ({e}); --overwrite to start again."
    ) from e
  if previous != json.loads(json.dumps(run)):
    changed = sorted(k for k in set(previous) | set(run) if previous.get(k) != run.get(k))
    raise app.UsageError(
      f"--output_dir={output_dir} holds a run with other settings (differences in {changed}). "
      "Use another --output_dir, or --overwrite to discard it."
    )
  metrics_path = os.path.join(output_dir, METRICS_FILE)
  if os.path.exists(metrics_path):
    try:
      with open(metrics_path) as f:
        return bool(json.load(f).get("completed"))
    except (json.JSONDecodeError, UnicodeDecodeError):
      return False  # Truncated by a kill: the run is not finished; it resumes.
  return False


def build_model(config: rqvae.RQVAEConfig, strategy: tf.distribute.Strategy) -> rqvae.RQVAE:
  """The compiled RQ-VAE, its variables made under `strategy` (see the module docstring)."""
  if distribute.is_default(strategy):
    return rqvae.build_rqvae(config)
  with strategy.scope():
    model = rqvae.build_rqvae(config)
    model.compile(optimizer=distribute.adam(config.learning_rate, strategy))
  return distribute.prepare_model(model)


def train(
  dataset: schema.Dataset, output_dir: str, strategy: Optional[tf.distribute.Strategy] = None
) -> Dict[str, Any]:
  """Trains (or resumes) the RQ-VAE on `dataset` and writes everything under `output_dir`."""
  strategy = strategy or tf.distribute.get_strategy()
  config = config_from_flags(dataset.embedding_dim)
  embeddings = training_embeddings(dataset, FLAGS.items)
  if len(embeddings) == 0:
    raise app.UsageError(f"No items to train on (--items={FLAGS.items}).")
  run = {
    "config": dataclasses.asdict(config),
    "data": data_flags.describe(),
    "items": FLAGS.items,
    "epochs": FLAGS.epochs,
    "batch_size": FLAGS.batch_size,
  }
  if _check_run_dir(output_dir, run):
    print(f"{output_dir} already holds this finished run; nothing to do (--overwrite to redo).")
    with open(os.path.join(output_dir, METRICS_FILE)) as f:
      return json.load(f)
  io_utils.write_json(os.path.join(output_dir, RUN_FILE), run)
  tf.keras.utils.set_random_seed(FLAGS.seed)
  model = build_model(config, strategy)

  def make_data():
    return (
      tf.data.Dataset.from_tensor_slices(embeddings.astype(np.float32))
      .shuffle(len(embeddings), seed=FLAGS.seed, reshuffle_each_iteration=True)
      .batch(FLAGS.batch_size)
      .prefetch(tf.data.AUTOTUNE)
    )

  inputs = distribute.fit_inputs(
    strategy, make_data(), None, make_data, len(embeddings), FLAGS.batch_size
  )
  header = dict(run, n_train_items=int(len(embeddings)), n_items=int(dataset.n_items))
  writer = MetricsWriter(output_dir, header, config.num_levels)
  print(
    f"training RQ-VAE L={config.num_levels} K={config.codebook_size} d={config.latent_dim} on "
    f"{len(embeddings):,} items (D={config.input_dim}) for {FLAGS.epochs} epochs"
  )
  placement = []
  if not distribute.is_default(strategy):
    placement.append(distribute.PlacementLog(output_dir, job_flags.strategy_config()))
  model.fit(
    inputs.train,
    epochs=FLAGS.epochs,
    steps_per_epoch=inputs.steps_per_epoch,
    verbose=2 if FLAGS.verbose == 1 and distribute.uses_coordinator(strategy) else FLAGS.verbose,
    callbacks=[
      *placement,
      distribute.non_finite_guard(strategy),
      tf.keras.callbacks.BackupAndRestore(os.path.join(output_dir, BACKUP_SUBDIR)),
      rqvae.SidStatsCallback(_sample(embeddings, FLAGS.sid_stats_items, FLAGS.seed)),
      writer,
      *cli.interrupt_callbacks(),
    ],
  )
  digest = rqvae.save_rqvae(model, os.path.join(output_dir, MODEL_SUBDIR))
  shutil.rmtree(os.path.join(output_dir, BACKUP_SUBDIR), ignore_errors=True)
  codes = model.assign_codes(dataset.embeddings)
  final = rqvae_metrics.sid_stats(codes, config.codebook_size)
  final["reconstruction_mse"] = model.reconstruction_mse(dataset.embeddings)
  final["n_items"] = int(dataset.n_items)
  metrics = writer.write(final=final, fingerprint=digest, completed=True)
  print(
    f"done: unique-SID fraction {final['unique_sid_fraction']:.3f}, max items per SID "
    f"{final['max_items_per_sid']}, utilization per level "
    f"{[round(u, 3) for u in final['utilization']]}, reconstruction MSE "
    f"{final['reconstruction_mse']:.3g}\nmodel: {os.path.join(output_dir, MODEL_SUBDIR)} "
    f"(fingerprint {digest[:12]}); metrics: {os.path.join(output_dir, METRICS_FILE)}"
  )
  return metrics


def _validate_flags() -> None:
  if not FLAGS.output_dir:
    raise app.UsageError("--output_dir is required.")
  for name in (
    "num_levels",
    "codebook_size",
    "latent_dim",
    "epochs",
    "batch_size",
    "sid_stats_items",
  ):
    if FLAGS[name].value <= 0:
      raise app.UsageError(f"--{name} must be positive. Received: --{name}={FLAGS[name].value}")
  if FLAGS.codebook_size < 2:
    raise app.UsageError(
      f"--codebook_size must be at least 2. Received: --codebook_size={FLAGS.codebook_size}"
    )
  if not 0.0 < FLAGS.reset_interpolation <= 1.0:
    raise app.UsageError(
      "--reset_interpolation must be in (0, 1]. "
      f"Received: --reset_interpolation={FLAGS.reset_interpolation}"
    )
  if not (math.isfinite(FLAGS.learning_rate) and math.isfinite(FLAGS.beta)):
    raise app.UsageError(
      f"--learning_rate and --beta must be finite. Received: --learning_rate="
      f"{FLAGS.learning_rate}, --beta={FLAGS.beta}"
    )
  if FLAGS.learning_rate <= 0 or FLAGS.beta < 0:
    raise app.UsageError(
      f"--learning_rate must be positive and --beta non-negative. Received: "
      f"--learning_rate={FLAGS.learning_rate}, --beta={FLAGS.beta}"
    )


def _check_strategy(strategy: tf.distribute.Strategy) -> None:
  """Refuses synchronous replicas when training writes codebooks from a replica's own batch."""
  replica_writes = FLAGS.codebook_init == "kmeans" or FLAGS.dead_code_reset
  if (
    replica_writes
    and strategy.num_replicas_in_sync > 1
    and not distribute.uses_coordinator(strategy)
  ):
    raise app.UsageError(
      f"--strategy={FLAGS.strategy} runs {strategy.num_replicas_in_sync} synchronous replicas, "
      "but the k-means codebook initialisation and the dead-code reset write codebooks from each "
      "replica's own batch (inside the training step, where replicas cannot agree on one value). "
      "Use --strategy=parameter_server (asynchronous: the codebooks live on the ps tasks), or "
      "--codebook_init=random --nodead_code_reset."
    )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  _validate_flags()
  logging.set_verbosity(logging.WARNING)
  strategy_config = job_flags.strategy_config()
  distribute.serve_if_server_task(strategy_config)  # parameter_server's worker and ps tasks.
  strategy = distribute.make_strategy(strategy_config)  # Before TensorFlow runs anything.
  _check_strategy(strategy)
  with distribute.task_output_dir(FLAGS.output_dir) as output_dir:
    train(data_flags.load(), output_dir, strategy)


if __name__ == "__main__":
  cli.run(main)
