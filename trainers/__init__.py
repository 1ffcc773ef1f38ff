"""Command-line jobs: data, RQ-VAE, SIDs, SentencePiece, ranker, experiments, pipeline."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from features import keras_env  # noqa: E402

keras_env.configure()

# The public modules (import them as `from trainers import <module>`).
__all__ = [
  "analyze_sids",
  "analyze_sids_report",
  "artifacts",
  "assign_sids",
  "beam_assign_sids",
  "beam_items",
  "beam_sid_pipeline",
  "cli",
  "data_flags",
  "describe_data",
  "distribute",
  "experiment",
  "experiment_report",
  "item_flags",
  "job_flags",
  "pipeline",
  "ranker_training",
  "report_format",
  "rolling_origin",
  "rolling_origin_report",
  "run_dir",
  "train_ranker",
  "train_rqvae",
  "train_spm",
]
