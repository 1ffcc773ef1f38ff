"""Trains and evaluates one ranker: `python -m trainers.train_ranker --item_representation=...
--output_dir=DIR`.

Steps: load and split the data (the shared data flags); carve a validation slice from the training
period with the same split protocol (for early stopping and model choice; the test slice is only
scored); get the semantic-ID encoder (`--rqvae_dir`, or an RQ-VAE trained on the fly with small
defaults) and, for SPM, the SentencePiece model (`--spm_model`, or trained on the fly on the
training impressions with vocabulary = `--table_rows`); build the ranker; `model.fit` with progress,
TensorBoard logs, early stopping on validation AUC and BackupAndRestore (a killed run resumes);
score validation and test; write the outputs.

Outputs in DIR (each written atomically):
  metrics.json        global AUC and GAUC per slice (all, warm, cold, and cold rows of users with
                      and without a training click), the second task's RMSE, rows per slice, train
                      time, examples/s; the same for the validation slice under "validation".
  predictions.npz     test-slice scores (`ctr`, second task), labels, user ids, cold flags.
  saved_model/        SavedModel: `serving_default` (raw inputs -> {"ctr", <second label>}) and,
                      for SID schemes, `semantic_id` (content_embedding -> codes).
  checkpoint/         tf.train.Checkpoint of the ranker (rebuild with `load_ranker(DIR)`).
  ranker_config.json  item-representation and ranker configs, SID encoder config, input spec.
  assets/spm.model    the SentencePiece model (SPM schemes).
  logs/               TensorBoard.
"""

import os

from absl import app, flags

from features import schema
from model import item_representation as item_rep_lib
from model import ranker as ranker_lib
from model import rqvae as rqvae_lib
from model import semantic_id_encoder
from trainers import data_flags, item_flags, ranker_training

Scheme = item_rep_lib.Scheme


def sid_encoder_from_flags(dataset: schema.Dataset):
  """(SemanticIdEncoder, RQVAE) from `--rqvae_dir`, or trained on the fly."""
  if FLAGS.rqvae_dir:
    rqvae = rqvae_lib.load_rqvae(FLAGS.rqvae_dir)
    if rqvae.config.input_dim != dataset.embedding_dim:
      raise ValueError(
        f"--rqvae_dir={FLAGS.rqvae_dir} expects D={rqvae.config.input_dim}; the data has "
        f"D={dataset.embedding_dim}."
      )
  else:
    print("no --rqvae_dir: training a small RQ-VAE on the fly")
    rqvae = ranker_training.train_rqvae(
      dataset,
      ranker_training.SidConfig(FLAGS.sid_levels, FLAGS.sid_codebook_size, seed=FLAGS.seed),
      verbose=2,
    )
  return semantic_id_encoder.SemanticIdEncoder.from_rqvae(rqvae, name="sid_encoder"), rqvae


def define_flags() -> None:
  data_flags.define()
  flags.DEFINE_enum(
    "item_representation", "hash", [s.value for s in Scheme], "Item representation scheme."
  )
  flags.DEFINE_integer("table_rows", 4000, "Embedding-table budget (rows).")
  flags.DEFINE_enum("history", "on", ["on", "off"], "Use the history feature.")
  flags.DEFINE_integer("history_length", 10, "H: history items per example.")
  flags.DEFINE_integer("embedding_dim", 32, "Item/user embedding width.")
  # A single run starts plain; the experiments' protocol is item_flags' own defaults.
  item_flags.define(
    hybrid_sid_scheme="prefix", id_dropout=0.0, token_dropout=0.0, table_initializer="normal"
  )
  flags.DEFINE_string("rqvae_dir", None, "RQ-VAE model dir (trainers.train_rqvae's DIR/model).")
  flags.DEFINE_integer("sid_levels", 3, "On-the-fly RQ-VAE: L.")
  flags.DEFINE_integer("sid_codebook_size", 64, "On-the-fly RQ-VAE: K.")
  flags.DEFINE_string("spm_model", None, "SentencePiece model file for spm (else trained here).")
  flags.DEFINE_integer("epochs", 4, "Most training epochs.")
  flags.DEFINE_integer("batch_size", 512, "Batch size.")
  flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate.")
  flags.DEFINE_integer("patience", 1, "Early-stopping patience (epochs).")
  flags.DEFINE_float("second_weight", 0.1, "Weight of the second task's loss (click weight 1).")
  flags.DEFINE_string("output_dir", None, "Where the ranker and metrics.json go.")


FLAGS = flags.FLAGS


def configs_from_flags(dataset: schema.Dataset):
  item_config = item_flags.item_config(
    FLAGS.item_representation, FLAGS.table_rows, FLAGS.embedding_dim
  )
  ranker_config = ranker_lib.RankerConfig(
    second_label_name=dataset.second_label_name,
    user_embedding_dim=FLAGS.embedding_dim,
    use_history=FLAGS.history == "on" and item_config.scheme is not Scheme.NONE,
    history_length=FLAGS.history_length,
    second_weight=FLAGS.second_weight,
  )
  train_config = ranker_training.TrainConfig(
    epochs=FLAGS.epochs,
    batch_size=FLAGS.batch_size,
    learning_rate=FLAGS.learning_rate,
    patience=FLAGS.patience,
    seed=FLAGS.seed,
  )
  return item_config, ranker_config, train_config


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.output_dir:
    raise app.UsageError("--output_dir is required.")
  dataset = data_flags.load()
  split = data_flags.split(dataset)
  print(f"data: {split.counts()}")
  item_config, ranker_config, train_config = configs_from_flags(dataset)
  encoder = proto = None
  if item_config.scheme.uses_sid:
    encoder, rqvae = sid_encoder_from_flags(dataset)
    if ranker_training.uses_spm(item_config):
      if FLAGS.spm_model:
        with open(FLAGS.spm_model, "rb") as f:
          proto = f.read()
      else:
        print(f"no --spm_model: training one with vocabulary {item_config.table_rows}")
        codes = rqvae.assign_codes(dataset.embeddings)
        proto = ranker_training.train_spm(
          codes,
          ranker_training.impressions_per_item(
            dataset, ranker_training.validation_split(split).train
          ),
          encoder.codebook_size,
          item_config.table_rows,
        )
  result = ranker_training.fit_and_evaluate(
    dataset,
    split,
    item_config,
    ranker_config,
    train_config,
    FLAGS.output_dir,
    sid_encoder=encoder,
    spm_model_proto=proto,
    data_description=data_flags.describe(),
  )
  print(ranker_training.format_metrics(result))
  print(f"wrote {os.path.join(FLAGS.output_dir, 'metrics.json')}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
