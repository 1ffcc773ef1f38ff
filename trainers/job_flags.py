"""The flags the jobs share, each defined once, with defaults taken from the config dataclasses.

One convention for every job: a group of flags is defined by one `define_*` call (safe to call
from several modules), its defaults are the fields of the dataclass it fills, and one function
turns the parsed flags into that dataclass. Groups:

  define_output_dir      --output_dir
  define_ranker_train    --epochs --batch_size --learning_rate --patience        -> TrainConfig
  define_ranker_model    --history --history_length --embedding_dim --table_rows -> RankerConfig
  define_sid             --rqvae_dir --sid_levels --sid_codebook_size --rqvae_epochs -> SidConfig
  define_strategy        --strategy --ps_min_shard_bytes --ps_max_shards -> StrategyConfig
  trainers.item_flags    --hybrid_sid_scheme --id_dropout --token_dropout --table_initializer
  trainers.data_flags    the data flags

Every value is checked when the job starts (`check_positive`), with a message naming the flag.
"""

import dataclasses
from typing import Iterable

from absl import app, flags

from trainers import artifacts, distribute, ranker_training

FLAGS = flags.FLAGS
_TRAIN = ranker_training.TrainConfig()
_SID = artifacts.SidConfig()
_STRATEGY = distribute.StrategyConfig()


def _once(name: str) -> bool:
  """True the first time a flag group whose first flag is `name` is defined."""
  return name not in FLAGS


def define_output_dir(default=None, help_text: str = "Folder for every output of the job.") -> None:
  if _once("output_dir"):
    flags.DEFINE_string("output_dir", default, help_text)


def define_ranker_train() -> None:
  """Ranker training flags; defaults are `ranker_training.TrainConfig`'s."""
  if not _once("epochs"):
    return
  flags.DEFINE_integer("epochs", _TRAIN.epochs, "Most ranker epochs (early stopping on val AUC).")
  flags.DEFINE_integer("batch_size", _TRAIN.batch_size, "Ranker batch size.")
  flags.DEFINE_float("learning_rate", _TRAIN.learning_rate, "Ranker Adam learning rate.")
  flags.DEFINE_integer("patience", _TRAIN.patience, "Early-stopping patience (epochs).")


def train_config(seed: int, verbose: int) -> ranker_training.TrainConfig:
  check_positive(("epochs", "batch_size", "learning_rate", "patience"))
  return ranker_training.TrainConfig(
    epochs=FLAGS.epochs,
    batch_size=FLAGS.batch_size,
    learning_rate=FLAGS.learning_rate,
    patience=FLAGS.patience,
    seed=seed,
    verbose=verbose,
  )


def define_ranker_model(table_rows_default=4000) -> None:
  """Ranker shape flags: history on/off, H, embedding width and (when given) the table budget."""
  if not _once("history_length"):
    return
  flags.DEFINE_integer("history_length", 10, "H: history items per example.")
  flags.DEFINE_integer("embedding_dim", 32, "Item and user embedding width.")
  if table_rows_default is not None:
    flags.DEFINE_integer("table_rows", table_rows_default, "Embedding-table budget (rows).")


def define_sid() -> None:
  """The semantic-ID model flags; defaults are `artifacts.SidConfig`'s."""
  if not _once("sid_levels"):
    return
  flags.DEFINE_string("rqvae_dir", None, "A trained RQ-VAE (train_rqvae's DIR/model) to use as is.")
  flags.DEFINE_integer("sid_levels", _SID.num_levels, "RQ-VAE levels L (when training one).")
  flags.DEFINE_integer("sid_codebook_size", _SID.codebook_size, "RQ-VAE codes per level K.")
  flags.DEFINE_integer("rqvae_epochs", _SID.epochs, "RQ-VAE training epochs.")


def sid_config(seed: int) -> artifacts.SidConfig:
  check_positive(("sid_levels", "sid_codebook_size", "rqvae_epochs"))
  return dataclasses.replace(
    _SID,
    num_levels=FLAGS.sid_levels,
    codebook_size=FLAGS.sid_codebook_size,
    epochs=FLAGS.rqvae_epochs,
    seed=seed,
  )


def define_strategy() -> None:
  """The tf.distribute flags (`trainers.distribute`); defaults are `distribute.StrategyConfig`'s."""
  if not _once("strategy"):
    return
  flags.DEFINE_enum(
    "strategy",
    _STRATEGY.strategy,
    [s.value for s in distribute.Strategy],
    "tf.distribute strategy; the cluster comes from TF_CONFIG (multi_worker: every worker runs "
    "this command; parameter_server: the chief trains, worker and ps tasks serve).",
  )
  flags.DEFINE_integer(
    "ps_min_shard_bytes",
    _STRATEGY.ps_min_shard_bytes,
    "parameter_server: smallest shard of a variable split across the ps tasks.",
  )
  flags.DEFINE_integer(
    "ps_max_shards", None, "parameter_server: most shards per variable (default: one per ps task)."
  )


def strategy_config() -> distribute.StrategyConfig:
  check_positive(("ps_min_shard_bytes",))
  if FLAGS.ps_max_shards is not None and FLAGS.ps_max_shards <= 0:
    raise app.UsageError(
      f"--ps_max_shards must be positive. Received: --ps_max_shards={FLAGS.ps_max_shards}"
    )
  return distribute.StrategyConfig(
    strategy=FLAGS.strategy,
    ps_min_shard_bytes=FLAGS.ps_min_shard_bytes,
    ps_max_shards=FLAGS.ps_max_shards,
  )


def check_positive(names: Iterable[str]) -> None:
  """Raises app.UsageError naming the first flag of `names` that is not positive."""
  for name in names:
    value = FLAGS[name].value
    if value is None or not value > 0:
      raise app.UsageError(f"--{name} must be positive. Received: --{name}={value}")
