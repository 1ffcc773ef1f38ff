"""Command-line jobs: data, RQ-VAE, SIDs, SentencePiece, ranker, experiments, pipeline."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from features import keras_env  # noqa: E402

keras_env.check_legacy_keras()
