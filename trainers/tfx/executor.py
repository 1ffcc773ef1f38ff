"""The executor of `SemanticIdGen`: items Examples -> RQ-VAE, SID table and (optionally) SPM model.

It runs the library code the command-line jobs run, not a copy of it:
  RQ-VAE      `trainers.artifacts.train_rqvae` (the ranker jobs' small-corpus recipe, `SidConfig`),
              saved with `model.rqvae.save_rqvae`, which returns the fingerprint.
  SID table   `model.rqvae.RQVAE.assign_codes` + `features.sid_table.make_table/write_sid_table`
              (what `trainers.assign_sids` and `trainers.pipeline` write).
  SPM model   `features.spm_training.impression_counts` (as `trainers.train_spm` counts) +
              `trainers.artifacts.train_spm` (vocabulary `artifacts.spm_vocab_size(budget, L, K)`,
              as every ranker job sizes it).
Every file is written atomically (`features.io_utils`), and when anything fails TFX removes the
output folders and publishes no output artifact, so nothing half-written is ever registered.
"""

import os
from typing import Any, Dict, List

import numpy as np
import pandas as pd
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from features import io_utils, schema, sid_spm, sid_table, spm_training
from model import rqvae as rqvae_lib
from model import rqvae_metrics
from trainers import artifacts
from trainers.tfx import artifact_types, examples_io

# Keys of the component spec (trainers.tfx.component).
ITEMS_KEY = "items"
INTERACTIONS_KEY = "interactions"
SEMANTIC_ID_MODEL_KEY = "semantic_id_model"
SID_TABLE_KEY = "sid_table"
SPM_MODEL_KEY = "spm_model"
SID_CONFIG_KEYS = (
  "num_levels",
  "codebook_size",
  "latent_dim",
  "epochs",
  "batch_size",
  "seed",
  "reset_interpolation",
)


def split_patterns(examples: types.Artifact, names=None) -> List[str]:
  """The file globs of `examples`' splits `names` (every split when None)."""
  available = artifact_utils.decode_split_names(examples.split_names)
  wanted = list(names) if names else available
  missing = [name for name in wanted if name not in available]
  if missing:
    raise ValueError(
      f"Examples at {examples.uri} have no split {missing}; their splits are {available}."
    )
  return [os.path.join(artifact_utils.get_split_uri([examples], name), "*") for name in wanted]


def sid_config(exec_properties: Dict[str, Any]) -> artifacts.SidConfig:
  """The `SidConfig` the component's parameters describe."""
  defaults = artifacts.SidConfig()
  values = {
    key: type(getattr(defaults, key))(exec_properties[key])
    for key in SID_CONFIG_KEYS
    if exec_properties.get(key) is not None
  }
  config = artifacts.SidConfig(**values)
  for key in ("num_levels", "codebook_size", "latent_dim", "epochs", "batch_size"):
    value = getattr(config, key)
    if value <= 0:
      raise ValueError(f"SemanticIdGen: `{key}` must be positive. Received: {key}={value}")
  return config


def read_items(items: types.Artifact, embedding_dim: int) -> schema.Dataset:
  """The items as a validated `schema.Dataset` (no interactions), sorted by item id.

  Raises:
    examples_io.ExamplesError: records without `content_embedding` or with a wrong width.
    schema.SchemaError: duplicate item ids, NaN or Inf in an embedding.
  """
  what = f"SemanticIdGen input `{ITEMS_KEY}` ({items.uri})"
  try:
    frame, embeddings = examples_io.read_items(
      split_patterns(items), expected_dim=embedding_dim or None, what=what
    )
  except examples_io.ExamplesError as e:
    if not embedding_dim:
      raise
    raise examples_io.ExamplesError(f"{e} (SemanticIdGen embedding_dim={embedding_dim})") from e
  empty = pd.DataFrame({c: [] for c in schema.INTERACTION_COLUMNS})
  dataset = schema.Dataset("tfx_items", frame, embeddings, empty)
  try:
    return schema.validate(dataset)[0]
  except schema.SchemaError as e:
    raise schema.SchemaError(f"{what}: {e}") from e


def write_semantic_id_model(
  model: rqvae_lib.RQVAE, dataset: schema.Dataset, out: types.Artifact
) -> np.ndarray:
  """Saves the RQ-VAE and its SID quality under `out.uri`; sets its properties; returns codes."""
  fingerprint = rqvae_lib.save_rqvae(model, os.path.join(out.uri, artifact_types.RQVAE_DIR))
  codes = model.assign_codes(dataset.embeddings)
  metrics = rqvae_metrics.sid_stats(codes, model.config.codebook_size)
  metrics["reconstruction_mse"] = model.reconstruction_mse(dataset.embeddings)
  metrics["n_items"] = int(dataset.n_items)
  metrics["fingerprint"] = fingerprint
  io_utils.write_json(os.path.join(out.uri, artifact_types.METRICS_FILE), metrics)
  out.fingerprint = fingerprint
  out.num_levels = int(model.config.num_levels)
  out.codebook_size = int(model.config.codebook_size)
  out.input_dim = int(model.config.input_dim)
  out.latent_dim = int(model.config.latent_dim)
  for key in ("unique_sid_fraction", "reconstruction_mse"):
    out.set_float_custom_property(key, float(metrics[key]))
  out.set_int_custom_property("max_items_per_sid", int(metrics["max_items_per_sid"]))
  out.set_int_custom_property("n_items", int(dataset.n_items))
  return codes


def write_sid_table(
  dataset: schema.Dataset,
  codes: np.ndarray,
  fingerprint: str,
  codebook_size: int,
  items_uri: str,
  out: types.Artifact,
) -> sid_table.SidTable:
  """Writes every item's SID as a SID table with manifest under `out.uri`; sets its properties."""
  table = sid_table.make_table(
    dataset.items["item_id"].to_numpy(),
    codes,
    fingerprint=fingerprint,
    codebook_size=codebook_size,
    extra={"items": items_uri},
  )
  sid_table.write_sid_table(os.path.join(out.uri, artifact_types.SID_TABLE_FILE), table)
  out.fingerprint = fingerprint
  out.num_levels = table.num_levels
  out.codebook_size = int(codebook_size)
  out.n_items = int(table.manifest["n_items"])
  out.checksum = table.manifest["checksum"]
  return table


def write_spm_model(
  table: sid_table.SidTable,
  interactions: types.Artifact,
  split: str,
  budget: int,
  out: types.Artifact,
) -> None:
  """Trains the SPM model on `split`'s impression counts (as `trainers.train_spm`)."""
  what = f"SemanticIdGen input `{INTERACTIONS_KEY}` ({interactions.uri}, split {split!r})"
  spec = {examples_io.ITEM_ID: examples_io.INTERACTION_SPEC[examples_io.ITEM_ID]}
  patterns = split_patterns(interactions, [split])
  impressed = examples_io.read_columns(patterns, spec, what)[examples_io.ITEM_ID]
  counts = spm_training.impression_counts(table.item_ids, impressed)
  if not counts.any():
    raise ValueError(
      f"{what}: none of its {len(impressed)} impressions is of an item of the items input."
    )
  unknown = int((table.lookup(impressed) < 0).sum())
  if unknown:
    logging.warning("SemanticIdGen: %d impressions are of items without a SID; ignored.", unknown)
  codebook_size = int(table.manifest["codebook_size"])
  proto = artifacts.train_spm(table.codes, counts, codebook_size, budget)
  io_utils.write_bytes(os.path.join(out.uri, artifact_types.SPM_FILE), proto)
  lengths = sid_spm.piece_lengths(proto)
  stats = {
    "vocab_size": int(len(lengths)),
    "budget": int(budget),
    "piece_length_histogram": np.bincount(lengths[lengths > 0]).tolist(),
    "n_impressions": int(counts.sum()),
    "n_impressed_items": int((counts > 0).sum()),
    "impressions_split": split,
    "fingerprint": table.fingerprint,
  }
  io_utils.write_json(os.path.join(out.uri, artifact_types.SPM_STATS_FILE), stats)
  out.fingerprint = table.fingerprint
  out.vocab_size = int(len(lengths))
  out.n_impressions = int(counts.sum())


class Executor(base_executor.BaseExecutor):
  """Trains the semantic-ID model and writes its SID table and SPM model (module docstring)."""

  def Do(
    self,
    input_dict: Dict[str, List[types.Artifact]],
    output_dict: Dict[str, List[types.Artifact]],
    exec_properties: Dict[str, Any],
  ) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    tf.keras.backend.clear_session()
    config = sid_config(exec_properties)
    items = artifact_utils.get_single_instance(input_dict[ITEMS_KEY])
    dataset = read_items(items, int(exec_properties.get("embedding_dim") or 0))
    logging.info(
      "SemanticIdGen: training the RQ-VAE L=%d K=%d d=%d on %d items (D=%d)",
      config.num_levels,
      config.codebook_size,
      config.latent_dim,
      dataset.n_items,
      dataset.embedding_dim,
    )
    model = artifacts.train_rqvae(dataset, config, verbose=0)
    model_out = artifact_utils.get_single_instance(output_dict[SEMANTIC_ID_MODEL_KEY])
    codes = write_semantic_id_model(model, dataset, model_out)
    table_out = artifact_utils.get_single_instance(output_dict[SID_TABLE_KEY])
    table = write_sid_table(
      dataset, codes, model_out.fingerprint, config.codebook_size, items.uri, table_out
    )
    if input_dict.get(INTERACTIONS_KEY):
      if not output_dict.get(SPM_MODEL_KEY):
        raise ValueError("SemanticIdGen: an `interactions` input needs the `spm_model` output.")
      write_spm_model(
        table,
        artifact_utils.get_single_instance(input_dict[INTERACTIONS_KEY]),
        exec_properties.get("impressions_split") or examples_io.TRAIN,
        int(exec_properties["spm_vocab_size"]),
        artifact_utils.get_single_instance(output_dict[SPM_MODEL_KEY]),
      )
