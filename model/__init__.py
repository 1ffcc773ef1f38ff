"""Keras layers and models: quantizer, RQ-VAE, SID encoder, item representations, ranker."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from features import keras_env  # noqa: E402

keras_env.configure()

# The public modules (import them as `from model import <module>`).
__all__ = [
  "catalogue_cache",
  "dense_item",
  "hash_item",
  "hybrid_item",
  "item_representation",
  "metrics",
  "ranker",
  "residual_quantizer",
  "rqvae",
  "rqvae_metrics",
  "schemes",
  "semantic_id_encoder",
  "sid_analysis",
  "sid_collisions",
  "sid_item",
  "tasks",
  "user_tower",
]
