"""Data: schema, loaders, splits, tf.data pipelines and SID-to-subword layers."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from features import keras_env  # noqa: E402

keras_env.configure()

# The public modules (import them as `from features import <module>`).
__all__ = [
  "datasets",
  "feature_spec",
  "history",
  "io_utils",
  "keras_env",
  "movielens",
  "pipeline",
  "schema",
  "sid_ngram",
  "sid_prefix_ngram",
  "sid_segmentation",
  "sid_spm",
  "sid_symbols",
  "sid_table",
  "splits",
  "spm_training",
  "synthetic",
  "user_files",
]
