"""The custom ML Metadata artifact types of the semantic-ID components.

Each type's name and properties are recorded in ML Metadata the first time a pipeline uses it;
keep them stable (a type cannot change its properties' types once a store knows it). The
fingerprint (`model.rqvae.fingerprint`: sha256 of the weights that decide the SIDs) is a typed
property of all three, so lineage queries can match an SID table or SPM model to its RQ-VAE.

Folder layouts (the artifact's `uri`):
  SemanticIdModel  rqvae/ (`model.rqvae.save_rqvae`: config.json + checkpoint; `load_rqvae` reads
                   it) and metrics.json (SID quality over every item, as `trainers.train_rqvae`'s
                   `final`: unique-SID fraction, largest SID group, per-level utilization and
                   perplexity, reconstruction MSE).
  SidTable         sid_table.npz (`features.sid_table`: item ids, codes and the manifest).
  SidSpmModel      spm.model (SentencePiece proto) and spm.stats.json.
"""

from tfx.types import artifact

_INT = artifact.PropertyType.INT
_STRING = artifact.PropertyType.STRING

RQVAE_DIR = "rqvae"
METRICS_FILE = "metrics.json"
SID_TABLE_FILE = "sid_table.npz"
SPM_FILE = "spm.model"
SPM_STATS_FILE = "spm.stats.json"


class SemanticIdModel(artifact.Artifact):
  """A trained RQ-VAE: content embedding float[D] -> semantic ID int[L] (codes in [0, K))."""

  TYPE_NAME = "SemanticIdModel"
  PROPERTIES = {
    "fingerprint": artifact.Property(type=_STRING),
    "num_levels": artifact.Property(type=_INT),
    "codebook_size": artifact.Property(type=_INT),
    "input_dim": artifact.Property(type=_INT),
    "latent_dim": artifact.Property(type=_INT),
  }


class SidTable(artifact.Artifact):
  """Every item's semantic ID, with the manifest `features.sid_table` verifies."""

  TYPE_NAME = "SidTable"
  PROPERTIES = {
    "fingerprint": artifact.Property(type=_STRING),
    "num_levels": artifact.Property(type=_INT),
    "codebook_size": artifact.Property(type=_INT),
    "n_items": artifact.Property(type=_INT),
    "checksum": artifact.Property(type=_STRING),
  }


class SidSpmModel(artifact.Artifact):
  """A SentencePiece model over semantic IDs (SPM-SID), trained on impression counts."""

  TYPE_NAME = "SidSpmModel"
  PROPERTIES = {
    "fingerprint": artifact.Property(type=_STRING),
    "vocab_size": artifact.Property(type=_INT),
    "n_impressions": artifact.Property(type=_INT),
  }
