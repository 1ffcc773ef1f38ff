"""Export for TF Serving: SavedModel signatures, serving assets, client, contract check."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from features import keras_env  # noqa: E402

keras_env.configure()

# The public modules (import them as `from export import <module>`).
__all__ = [
  "client",
  "contract_check",
  "export_model",
  "loader_check",
  "serving_assets",
  "signatures",
]
