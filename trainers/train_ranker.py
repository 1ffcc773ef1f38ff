"""Trains and evaluates one ranker: `python -m trainers.train_ranker --item_representation=...
--output_dir=DIR`.

Steps: load and split the data (the shared data flags); carve a validation slice from the training
period with the same split protocol (for early stopping and model choice; the test slice is only
scored); get the semantic-ID encoder (`--rqvae_dir`, or an RQ-VAE trained on the fly with small
defaults) and, for SPM, the SentencePiece model (`--spm_model`, or trained on the fly on the
training impressions with vocabulary = `--table_rows`), both from `trainers.artifacts` (cached in
DIR/artifacts/); build the ranker from the scheme registry (`model.schemes`); `model.fit` with
progress, TensorBoard logs, early stopping on validation AUC and BackupAndRestore (a killed run
resumes); score validation and test; write the outputs.

`--strategy` trains under tf.distribute (`trainers.distribute`; the cluster from TF_CONFIG): with
`multi_worker` every worker runs this same command and worker 0 writes DIR; with
`parameter_server` the `chief` task runs it and the `worker` and `ps` tasks run the same command
and serve, the large tables split across the ps tasks (where each variable lives: DIR/
distribution.json, written under any strategy but `default`).

Outputs in DIR (each written atomically):
  metrics.json        global AUC and GAUC per slice (all, warm, cold, and cold rows of users with
                      and without a training click), the second task's RMSE, rows per slice, train
                      time, examples/s; the same for the validation slice under "validation".
  predictions.npz     test-slice scores (`ctr`, second task), labels, user ids, cold flags.
  checkpoint/         tf.train.Checkpoint of the ranker's weights.
  ranker_config.json  the ranker's Keras config (`tf.keras.layers.serialize`), the item
                      representation's config, the input specs and outputs; with checkpoint/ it
                      rebuilds the ranker (`ranker_training.load_ranker(DIR)`). Export it for TF
                      Serving with `python -m export.export_model --ranker_dir=DIR`.
  assets/spm.model    the SentencePiece model (SPM schemes).
  logs/               TensorBoard.
"""

import json
import os

from absl import app, flags

from model import ranker as ranker_lib
from model import schemes
from trainers import (
  artifacts,
  cli,
  data_flags,
  distribute,
  item_flags,
  job_flags,
  ranker_training,
  run_dir,
)


def define_flags() -> None:
  data_flags.define()
  flags.DEFINE_string(
    "item_representation", "hash", f"Item representation scheme, one of {list(schemes.names())}."
  )
  flags.DEFINE_enum("history", "on", ["on", "off"], "Use the history feature.")
  job_flags.define_ranker_model()
  item_flags.define()
  job_flags.define_sid()
  flags.DEFINE_string("spm_model", None, "SentencePiece model file for spm (else trained here).")
  job_flags.define_ranker_train()
  job_flags.define_strategy()
  flags.DEFINE_float("second_weight", 0.1, "Weight of the second task's loss (click weight 1).")
  job_flags.define_output_dir(help_text="Where the ranker and metrics.json go.")
  flags.DEFINE_bool("overwrite", False, "Discard a run in --output_dir made with other settings.")


FLAGS = flags.FLAGS


def configs_from_flags(dataset, verbose: int = 1):
  if FLAGS.item_representation not in schemes.names():
    raise app.UsageError(
      f"--item_representation must be one of {list(schemes.names())}. "
      f"Received: --item_representation={FLAGS.item_representation}"
    )
  job_flags.check_positive(("table_rows", "history_length", "embedding_dim"))
  item_config = item_flags.item_config(
    FLAGS.item_representation, FLAGS.table_rows, FLAGS.embedding_dim
  )
  ranker_config = ranker_lib.RankerConfig(
    second_label_name=dataset.second_label_name,
    user_embedding_dim=FLAGS.embedding_dim,
    use_history=FLAGS.history == "on" and item_config.scheme != schemes.NONE,
    history_length=FLAGS.history_length,
    second_weight=FLAGS.second_weight,
  )
  return item_config, ranker_config, job_flags.train_config(FLAGS.seed, verbose=verbose)


def sid_inputs(dataset, split, item_config, output_dir):
  """(sid_encoder, spm_model_proto) for `item_config`: from --rqvae_dir / --spm_model, else made
  (and cached) under OUTPUT_DIR/artifacts."""
  spec = item_config.spec
  if not spec.uses_sid:
    return None, None
  cache = artifacts.SidArtifacts(
    dataset,
    split,
    os.path.join(output_dir, "artifacts"),
    job_flags.sid_config(FLAGS.seed),
    rqvae_dir=FLAGS.rqvae_dir,
  )
  if FLAGS.spm_model and spec.spm_budget(item_config) is not None:
    encoder = cache.encoder()
    check_spm_model(FLAGS.spm_model, encoder.fingerprint())
    with open(FLAGS.spm_model, "rb") as f:
      proto = f.read()
    artifacts.check_spm_proto(proto, FLAGS.spm_model)
    return encoder, proto
  return cache.for_config(item_config)


def check_spm_model(path: str, fingerprint: str) -> None:
  """Raises ValueError unless the SPM model at `path` was trained on SIDs of the RQ-VAE with
  `fingerprint` (as recorded in `PATH.stats.json` by trainers.train_spm)."""
  stats_path = path + ".stats.json"
  try:
    with open(stats_path) as f:
      recorded = json.load(f).get("sid_fingerprint")
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(
      f"--spm_model={path}: cannot tell which RQ-VAE its SIDs came from ({stats_path}: {e}); "
      "train it with trainers.train_spm, which records it."
    ) from e
  if recorded != fingerprint:
    raise ValueError(
      f"--spm_model={path} was trained on SIDs of RQ-VAE {str(recorded)[:12]}, but this ranker "
      f"uses RQ-VAE {fingerprint[:12]} (--rqvae_dir={FLAGS.rqvae_dir}): pass the RQ-VAE it was "
      "made with, or train a SentencePiece model on this one's SIDs."
    )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.output_dir:
    raise app.UsageError("--output_dir is required.")
  strategy_config = job_flags.strategy_config()
  distribute.serve_if_server_task(strategy_config)  # parameter_server's worker and ps tasks.
  strategy = distribute.make_strategy(strategy_config)  # Before TensorFlow runs anything.
  dataset = data_flags.load()
  split = data_flags.split(dataset)
  print(f"data: {split.counts()}")
  verbose = 2 if distribute.uses_coordinator(strategy) else 1  # No progress bar there (Keras).
  item_config, ranker_config, train_config = configs_from_flags(dataset, verbose)
  with distribute.task_output_dir(FLAGS.output_dir) as output_dir:
    if FLAGS.overwrite:
      run_dir.clear(output_dir)
    encoder, proto = sid_inputs(dataset, split, item_config, output_dir)
    callbacks = cli.interrupt_callbacks()
    if not distribute.is_default(strategy):
      callbacks.insert(0, distribute.PlacementLog(output_dir, strategy_config))
    result = ranker_training.fit_and_evaluate(
      dataset,
      split,
      item_config,
      ranker_config,
      train_config,
      output_dir,
      sid_encoder=encoder,
      spm_model_proto=proto,
      data_description=data_flags.describe(),
      callbacks=callbacks,
      strategy=strategy,
    )
  print(ranker_training.format_metrics(result))
  if distribute.is_chief():
    print(f"wrote {os.path.join(FLAGS.output_dir, 'metrics.json')}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
