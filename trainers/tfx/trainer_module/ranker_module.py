"""Trainer module file: `run_fn(fn_args)` trains the TFRS ranker and writes its TF Serving export.

Run by `trainers.tfx.ranker_trainer.SidRankerTrainer` (TFX's GenericExecutor imports it from the
wheel TFX builds of this folder). Steps, all library code:
  1. data     the items Examples and the interactions' train/eval splits (`fn_args.train_files`,
              `fn_args.eval_files`) back into a validated `schema.Dataset` and `splits.Split`
              (`trainers.tfx.examples_io`, tf.data over the TFRecords of tf.Example).
  2. inputs   the RQ-VAE of the SemanticIdModel (`model.rqvae.load_rqvae`, which checks its
              weights against its fingerprint; the fingerprint must also be the artifact's) as a
              frozen `SemanticIdEncoder`, and the SPM model when the scheme needs one.
  3. train    `trainers.ranker_training.fit_and_evaluate` (early stopping on a validation slice
              carved from the training rows, metrics on eval) into `fn_args.model_run_dir/ranker`.
  4. export   `export.export_model.export` (signatures serving_default / predict_examples /
              semantic_id, warm-up requests, verified against the ranker) moved to
              `fn_args.serving_model_dir`, plus `assets.extra/semantic_id.json` (the fingerprint and
              the scheme) so the pushed model names the semantic-ID model it embeds.
"""

import hashlib
import json
import os
from typing import Optional

import tensorflow as tf

from export import export_model
from features import io_utils, sid_spm
from model import rqvae, semantic_id_encoder
from trainers import ranker_training
from trainers.tfx import artifact_types, examples_io, ranker_trainer


def load_semantic_id_model(inputs: ranker_trainer.TrainerInputs) -> rqvae.RQVAE:
  """The RQ-VAE of the SemanticIdModel input, checked against the artifact's fingerprint."""
  model = rqvae.load_rqvae(os.path.join(inputs.semantic_id_model, artifact_types.RQVAE_DIR))
  actual = rqvae.fingerprint(model)
  if inputs.fingerprint and actual != inputs.fingerprint:
    raise ValueError(
      f"The RQ-VAE in {inputs.semantic_id_model} has fingerprint {actual}; its SemanticIdModel "
      f"artifact records {inputs.fingerprint}."
    )
  return model


def read_spm(inputs: ranker_trainer.TrainerInputs, config, num_levels: int, k: int) -> bytes:
  """The SPM model proto; it must have been trained for the scheme's row budget and this SID."""
  spec = config.item_representation.spec
  budget = spec.spm_budget(config.item_representation)
  if not inputs.spm_model:
    raise ValueError(
      f"Scheme {spec.name!r} needs an `spm_model` input (SemanticIdGen with `interactions`)."
    )
  stats_path = os.path.join(os.path.dirname(inputs.spm_model), artifact_types.SPM_STATS_FILE)
  with tf.io.gfile.GFile(stats_path) as f:
    trained_for = json.load(f)["budget"]
  if trained_for != budget:
    raise ValueError(
      f"The spm_model input ({inputs.spm_model}) was trained for a budget of {trained_for} rows; "
      f"scheme {spec.name!r} with table_rows={config.item_representation.table_rows} needs "
      f"{budget} (set SemanticIdGen's spm_vocab_size={budget})."
    )
  with tf.io.gfile.GFile(inputs.spm_model, "rb") as f:
    proto = f.read()
  sid_spm.check_model_proto(proto, num_levels, k)
  return proto


def write_export(ranker_dir: str, fn_args, config, record: dict) -> str:
  """Exports the ranker with `export.export_model` into `fn_args.serving_model_dir`, atomically:
  the version is built under the run folder, then its files fill a fresh temp folder that replaces
  `serving_model_dir` in one swap (`io_utils.atomic_dir`)."""
  base = os.path.join(fn_args.model_run_dir, "export")
  io_utils.remove(base)  # Scratch of an earlier attempt: version 1 again.
  version_dir = export_model.export(
    ranker_dir, base, export_model.ExportConfig(model_name=config.model_name, version=1)
  )
  with io_utils.atomic_dir(fn_args.serving_model_dir) as tmp:
    for name in tf.io.gfile.listdir(version_dir):  # models.config etc. stay in `base`
      tf.io.gfile.rename(
        os.path.join(version_dir, name.rstrip("/")), os.path.join(tmp, name.rstrip("/"))
      )
    io_utils.write_json(os.path.join(tmp, ranker_trainer.SEMANTIC_ID_FILE), record)
  return fn_args.serving_model_dir


def read_data(inputs: ranker_trainer.TrainerInputs, fn_args, config, expected_dim):
  """(schema.Dataset, splits.Split) from the items and the interactions' train/eval files."""
  try:
    return examples_io.read_dataset(
      inputs.items,
      fn_args.train_files,
      fn_args.eval_files,
      config.split_method,
      config.split_params,
      expected_dim=expected_dim,
      second_label_name=config.ranker.second_label_name,
    )
  except examples_io.ExamplesError as e:
    if expected_dim is None:
      raise
    raise examples_io.ExamplesError(
      f"{e} (the semantic_id_model input {inputs.semantic_id_model} reads D={expected_dim})"
    ) from e


def export_record(config, inputs, sid_model: Optional[rqvae.RQVAE], proto: Optional[bytes]):
  """What `assets.extra/semantic_id.json` says: the scheme and the RQ-VAE inside the graph."""
  embedded = sid_model if config.item_representation.spec.uses_sid else None
  return {
    "item_representation": config.item_representation.to_dict(),
    "fingerprint": rqvae.fingerprint(embedded) if embedded else None,
    "semantic_id_model": inputs.semantic_id_model if embedded else None,
    "num_levels": int(embedded.config.num_levels) if embedded else None,
    "codebook_size": int(embedded.config.codebook_size) if embedded else None,
    "spm_model_sha256": hashlib.sha256(proto).hexdigest() if proto else None,
  }


def run_fn(fn_args) -> None:
  """Trains the ranker `fn_args.custom_config` describes and exports it (module docstring).

  Raises:
    ValueError: `train_args.num_steps` set (training runs by epochs), a missing or mismatched
      semantic-ID or SPM input, or examples that do not fit the semantic-ID model.
  """
  tf.keras.backend.clear_session()
  config = ranker_trainer.RankerTrainerConfig.from_json_dict(fn_args.custom_config)
  inputs = ranker_trainer.TrainerInputs.from_custom_config(fn_args.custom_config)
  if fn_args.train_steps:
    raise ValueError(
      "SidRankerTrainer trains by epochs (RankerTrainerConfig.train.epochs, early stopping); "
      f"leave train_args.num_steps unset. Received: num_steps={fn_args.train_steps}"
    )
  spec = config.item_representation.spec
  sid_model = load_semantic_id_model(inputs) if inputs.semantic_id_model else None
  if spec.uses_sid and sid_model is None:
    raise ValueError(f"Scheme {spec.name!r} needs a `semantic_id_model` input (SemanticIdGen).")
  dataset, split = read_data(
    inputs, fn_args, config, sid_model.config.input_dim if sid_model else None
  )
  encoder = proto = None
  if spec.uses_sid:
    encoder = semantic_id_encoder.SemanticIdEncoder.from_rqvae(sid_model, name="sid_encoder")
  if spec.spm_budget(config.item_representation) is not None:
    proto = read_spm(inputs, config, encoder.num_levels, encoder.codebook_size)
  ranker_dir = os.path.join(fn_args.model_run_dir, ranker_trainer.RANKER_SUBDIR)
  result = ranker_training.fit_and_evaluate(
    dataset,
    split,
    config.item_representation,
    config.ranker,
    config.train,
    ranker_dir,
    sid_encoder=encoder,
    spm_model_proto=proto,
    data_description={"items": inputs.items, "train": fn_args.train_files},
  )
  print(ranker_training.format_metrics(result))
  write_export(ranker_dir, fn_args, config, export_record(config, inputs, sid_model, proto))
