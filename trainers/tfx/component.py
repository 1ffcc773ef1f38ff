"""`SemanticIdGen`: the TFX component that turns items' content embeddings into semantic IDs.

Inputs:
  items         Examples of items: `item_id` int64 and `content_embedding` float[D] per record
                (`trainers.tfx.examples_io`), every split read.
  interactions  Optional Examples of interactions (`item_id` per record); with it the component
                also trains a SentencePiece model over the SIDs, weighted by the impressions of
                split `impressions_split`.
Outputs:
  semantic_id_model  SemanticIdModel: the RQ-VAE (`model.rqvae.load_rqvae(uri + "/rqvae")`), its
                     fingerprint, L, K, D, d and SID quality (metrics.json; custom properties).
  sid_table          SidTable: every item's SID with its manifest (`features.sid_table`).
  spm_model          SidSpmModel (only with `interactions`): spm.model and its statistics.
Parameters: the RQ-VAE's `num_levels` (L), `codebook_size` (K), `latent_dim`, `epochs`,
`batch_size`, `seed` and `reset_interpolation` (the dead-code reset step), defaults from
`trainers.artifacts.SidConfig`; `embedding_dim` (the width D every embedding must have; 0 takes
record 0's); `spm_vocab_size` (the SPM row budget) and `impressions_split`.

Example:
  ```python
  sid_gen = component.SemanticIdGen(
      items=items_gen.outputs["examples"], interactions=interactions_gen.outputs["examples"],
      num_levels=3, codebook_size=64, spm_vocab_size=4000)
  sid_gen.outputs["semantic_id_model"]  # -> ranker_trainer.SidRankerTrainer(semantic_id_model=...)
  ```
"""

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from trainers import artifacts
from trainers.tfx import artifact_types, examples_io, executor

_DEFAULTS = artifacts.SidConfig()


class SemanticIdGenSpec(ComponentSpec):
  """Inputs, outputs and parameters of `SemanticIdGen` (see the module docstring)."""

  PARAMETERS = {
    "num_levels": ExecutionParameter(type=int),
    "codebook_size": ExecutionParameter(type=int),
    "latent_dim": ExecutionParameter(type=int),
    "epochs": ExecutionParameter(type=int),
    "batch_size": ExecutionParameter(type=int),
    "seed": ExecutionParameter(type=int),
    "reset_interpolation": ExecutionParameter(type=float),
    "embedding_dim": ExecutionParameter(type=int),
    "spm_vocab_size": ExecutionParameter(type=int, optional=True),
    "impressions_split": ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {
    executor.ITEMS_KEY: ChannelParameter(type=standard_artifacts.Examples),
    executor.INTERACTIONS_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True),
  }
  OUTPUTS = {
    executor.SEMANTIC_ID_MODEL_KEY: ChannelParameter(type=artifact_types.SemanticIdModel),
    executor.SID_TABLE_KEY: ChannelParameter(type=artifact_types.SidTable),
    executor.SPM_MODEL_KEY: ChannelParameter(type=artifact_types.SidSpmModel, optional=True),
  }


class SemanticIdGen(base_component.BaseComponent):
  """Trains an RQ-VAE on items' content embeddings; writes its SID table and SPM model.

  Args:
    items: Channel of `Examples` with `item_id` and `content_embedding` (all splits are read).
    interactions: Optional channel of `Examples` with `item_id`: impressions for the SPM model.
    num_levels: int. L, codes per SID. Defaults to SidConfig's (3).
    codebook_size: int. K, codes per level. Defaults to SidConfig's (64).
    latent_dim: int. The RQ-VAE's latent width. Defaults to SidConfig's (64).
    epochs: int. RQ-VAE training epochs. Defaults to SidConfig's (20).
    batch_size: int. Items per RQ-VAE step. Defaults to SidConfig's (256).
    seed: int. Initialisation and shuffling seed. Defaults to 0.
    reset_interpolation: float in (0, 1]. The dead-code reset step (1.0: the paper's jump to a
      batch item's residual). Defaults to SidConfig's (0.3).
    embedding_dim: int. The width D every `content_embedding` must have; 0 accepts any width that
      all records share. Defaults to 0.
    spm_vocab_size: Optional int. Row budget of the SPM model (raised to at least L*K + 1, as the
      ranker jobs do). Required with `interactions`.
    impressions_split: str. The `interactions` split whose rows count as impressions. Defaults to
      "train" (never count evaluation rows).

  Raises:
    ValueError: `interactions` without `spm_vocab_size`, or a bad parameter value.
  """

  SPEC_CLASS = SemanticIdGenSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(
    self,
    items: types.BaseChannel,
    interactions: Optional[types.BaseChannel] = None,
    num_levels: int = _DEFAULTS.num_levels,
    codebook_size: int = _DEFAULTS.codebook_size,
    latent_dim: int = _DEFAULTS.latent_dim,
    epochs: int = _DEFAULTS.epochs,
    batch_size: int = _DEFAULTS.batch_size,
    seed: int = _DEFAULTS.seed,
    reset_interpolation: float = _DEFAULTS.reset_interpolation,
    embedding_dim: int = 0,
    spm_vocab_size: Optional[int] = None,
    impressions_split: str = examples_io.TRAIN,
  ):
    for name, value in (
      ("num_levels", num_levels),
      ("codebook_size", codebook_size),
      ("latent_dim", latent_dim),
      ("epochs", epochs),
      ("batch_size", batch_size),
    ):
      if value <= 0:
        raise ValueError(f"`{name}` must be positive. Received: {name}={value}")
    if codebook_size < 2:
      raise ValueError(
        f"`codebook_size` must be at least 2. Received: codebook_size={codebook_size}"
      )
    if not 0.0 < reset_interpolation <= 1.0:
      raise ValueError(
        "`reset_interpolation` must be in (0, 1]. "
        f"Received: reset_interpolation={reset_interpolation}"
      )
    if embedding_dim < 0:
      raise ValueError(f"`embedding_dim` must be >= 0. Received: embedding_dim={embedding_dim}")
    if interactions is not None and not spm_vocab_size:
      raise ValueError(
        "`spm_vocab_size` (the SPM row budget) is required with `interactions`. "
        f"Received: spm_vocab_size={spm_vocab_size}"
      )
    spec = SemanticIdGenSpec(
      items=items,
      interactions=interactions,
      num_levels=num_levels,
      codebook_size=codebook_size,
      latent_dim=latent_dim,
      epochs=epochs,
      batch_size=batch_size,
      seed=seed,
      reset_interpolation=float(reset_interpolation),
      embedding_dim=embedding_dim,
      spm_vocab_size=spm_vocab_size if interactions is not None else None,
      impressions_split=impressions_split if interactions is not None else None,
      semantic_id_model=channel.Channel(type=artifact_types.SemanticIdModel),
      sid_table=channel.Channel(type=artifact_types.SidTable),
      spm_model=(
        channel.Channel(type=artifact_types.SidSpmModel) if interactions is not None else None
      ),
    )
    super().__init__(spec=spec)
