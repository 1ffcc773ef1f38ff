"""`SidRankerTrainer`: TFX's Trainer with typed semantic-ID inputs, and its run_fn configuration.

TFX's stock `Trainer` takes a fixed set of input channels (examples, schema, transform graph, ...),
so it cannot receive a `SemanticIdModel` as a tracked input. `SidRankerTrainer` is the stock
Trainer spec plus three inputs, run by the stock `GenericExecutor` with one addition:
  items              Examples of items (`content_embedding` per item: the ranker's content table).
  semantic_id_model  SemanticIdModel (`SemanticIdGen`); optional for schemes without SIDs.
  spm_model          SidSpmModel; needed by `spm` (and `hybrid` over `spm`).
The executor hands their locations to `run_fn(fn_args)` in `fn_args.custom_config["inputs"]` and,
after training, records on the `Model` artifact the fingerprint `run_fn` wrote into the export
(`assets.extra/semantic_id.json`) and the test metrics. The same run_fn protocol, caching (the
inputs are artifacts, so a new semantic-ID model re-runs the Trainer) and `TYPE_ANNOTATION = Train`.

`RankerTrainerConfig` is what `run_fn` trains (`trainer_module/ranker_module.py`): the scheme
(`model.schemes.ItemRepresentationConfig`), the ranker (`model.ranker.RankerConfig`), its training
(`trainers.ranker_training.TrainConfig`, epochs with early stopping: `train_args.num_steps` must
stay unset) and the split protocol of the interactions (its validation slice is carved from the
training rows with the same protocol, as `trainers.ranker_training.fit_and_evaluate` does).
"""

import dataclasses
import json
import os
from typing import Any, Dict, List, Mapping, Optional

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.components.util import udf_utils
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import trainer_pb2
from tfx.types import artifact_utils, channel, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import json_utils

from features import splits
from model import ranker as ranker_lib
from model import schemes
from trainers import ranker_training
from trainers.tfx import artifact_types, executor

ITEMS_KEY = "items"
SEMANTIC_ID_MODEL_KEY = "semantic_id_model"
SPM_MODEL_KEY = "spm_model"
INPUTS_CONFIG_KEY = "inputs"
RANKER_SUBDIR = "ranker"
SEMANTIC_ID_FILE = os.path.join("assets.extra", "semantic_id.json")


@dataclasses.dataclass
class RankerTrainerConfig:
  """What `run_fn` trains; travels as the Trainer's `custom_config`.

  Attributes:
    item_representation: schemes.ItemRepresentationConfig. The scheme and its table budget.
    ranker: ranker_lib.RankerConfig. Towers, history, heads (set `second_label_name` to what the
      data's second label is).
    train: ranker_training.TrainConfig. Epochs, batch size, learning rate, patience, seed.
    split_method: str. The protocol that split the interactions ("new_items", "global_time").
    split_params: dict. Its parameters (`features.splits.Split.params`).
    model_name: str. The model's name in the export's warm-up requests and models.config.
  """

  item_representation: schemes.ItemRepresentationConfig = dataclasses.field(
    default_factory=lambda: schemes.ItemRepresentationConfig(scheme="spm", table_rows=4000)
  )
  ranker: ranker_lib.RankerConfig = dataclasses.field(default_factory=ranker_lib.RankerConfig)
  train: ranker_training.TrainConfig = dataclasses.field(
    default_factory=lambda: ranker_training.TrainConfig(verbose=2)
  )
  split_method: str = splits.SplitMethod.NEW_ITEMS.value
  split_params: Dict[str, Any] = dataclasses.field(default_factory=dict)
  model_name: str = "ranker"

  def __post_init__(self):
    splits.parse_method(self.split_method)

  def to_json_dict(self) -> Dict[str, Any]:
    return {
      "item_representation": self.item_representation.to_dict(),
      "ranker": self.ranker.to_dict(),
      "train": dataclasses.asdict(self.train),
      "split_method": self.split_method,
      "split_params": dict(self.split_params),
      "model_name": self.model_name,
    }

  @classmethod
  def from_json_dict(cls, values: Mapping[str, Any]) -> "RankerTrainerConfig":
    return cls(
      item_representation=schemes.ItemRepresentationConfig.from_dict(values["item_representation"]),
      ranker=ranker_lib.RankerConfig.from_dict(values["ranker"]),
      train=ranker_training.TrainConfig(**values["train"]),
      split_method=values["split_method"],
      split_params=dict(values["split_params"]),
      model_name=values["model_name"],
    )


@dataclasses.dataclass
class TrainerInputs:
  """Where the executor found the extra inputs (`fn_args.custom_config["inputs"]`)."""

  items: List[str]
  semantic_id_model: Optional[str] = None
  fingerprint: Optional[str] = None
  spm_model: Optional[str] = None

  @classmethod
  def from_custom_config(cls, custom_config: Mapping[str, Any]) -> "TrainerInputs":
    if INPUTS_CONFIG_KEY not in (custom_config or {}):
      raise ValueError(
        "run_fn needs the inputs SidRankerTrainer adds to custom_config; run it with "
        "trainers.tfx.ranker_trainer.SidRankerTrainer, not the stock Trainer."
      )
    return cls(**custom_config[INPUTS_CONFIG_KEY])


def _single(input_dict, key) -> Optional[types.Artifact]:
  found = input_dict.get(key) or []
  return artifact_utils.get_single_instance(found) if found else None


def _read_json(path: str) -> Dict[str, Any]:
  if not os.path.isfile(path):
    return {}
  with open(path) as f:
    return json.load(f)


class SidRankerTrainerExecutor(trainer_executor.GenericExecutor):
  """The stock GenericExecutor; passes the extra inputs to run_fn and records what it exported."""

  def _GetFnArgs(self, input_dict, output_dict, exec_properties):
    fn_args = super()._GetFnArgs(input_dict, output_dict, exec_properties)
    config = dict(fn_args.custom_config or {})
    sid_model = _single(input_dict, SEMANTIC_ID_MODEL_KEY)
    spm_model = _single(input_dict, SPM_MODEL_KEY)
    items = artifact_utils.get_single_instance(input_dict[ITEMS_KEY])
    config[INPUTS_CONFIG_KEY] = dataclasses.asdict(
      TrainerInputs(
        items=executor.split_patterns(items),
        semantic_id_model=sid_model.uri if sid_model else None,
        fingerprint=sid_model.fingerprint if sid_model else None,
        spm_model=os.path.join(spm_model.uri, artifact_types.SPM_FILE) if spm_model else None,
      )
    )
    fn_args.custom_config = config
    return fn_args

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    super().Do(input_dict, output_dict, exec_properties)
    model = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_KEY])
    model_run = artifact_utils.get_single_instance(
      output_dict[standard_component_specs.MODEL_RUN_KEY]
    )
    exported = _read_json(os.path.join(model.uri, "Format-Serving", SEMANTIC_ID_FILE))
    if exported:  # Written by trainer_module/ranker_module.py (a run_fn of your own may not).
      model.set_string_custom_property("scheme", exported["item_representation"]["scheme"])
      if exported.get("fingerprint"):
        model.set_string_custom_property("sid_fingerprint", exported["fingerprint"])
    test = _read_json(os.path.join(model_run.uri, RANKER_SUBDIR, "metrics.json")).get("test", {})
    for slice_name in ("all", "warm", "cold"):
      for metric in ("auc", "gauc"):
        value = test.get(slice_name, {}).get(metric)
        if value is not None:
          model_run.set_float_custom_property(f"test_{slice_name}_{metric}", float(value))


class SidRankerTrainerSpec(standard_component_specs.TrainerSpec):
  """The stock Trainer spec plus the semantic-ID inputs (module docstring)."""

  INPUTS = {
    **standard_component_specs.TrainerSpec.INPUTS,
    ITEMS_KEY: ChannelParameter(type=standard_artifacts.Examples),
    SEMANTIC_ID_MODEL_KEY: ChannelParameter(type=artifact_types.SemanticIdModel, optional=True),
    SPM_MODEL_KEY: ChannelParameter(type=artifact_types.SidSpmModel, optional=True),
  }


class SidRankerTrainer(base_component.BaseComponent):
  """Trains the TFRS ranker on interactions Examples and writes its TF Serving export.

  Args:
    examples: Channel of interactions `Examples` with `train` and `eval` splits.
    items: Channel of items `Examples` (`item_id`, `content_embedding`).
    module_file: str. The file holding `run_fn` (`trainer_module/ranker_module.py`, or your own).
    config: RankerTrainerConfig. What to train. Defaults to `RankerTrainerConfig()` (spm).
    semantic_id_model: Optional channel of `SemanticIdModel` (needed by SID schemes).
    spm_model: Optional channel of `SidSpmModel` (needed by `spm`).
    train_args: Optional trainer_pb2.TrainArgs (splits only). Defaults to the `train` split.
    eval_args: Optional trainer_pb2.EvalArgs (splits only). Defaults to the `eval` split.
  """

  SPEC_CLASS = SidRankerTrainerSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(SidRankerTrainerExecutor)

  def __init__(
    self,
    examples: types.BaseChannel,
    items: types.BaseChannel,
    module_file: str,
    config: Optional[RankerTrainerConfig] = None,
    semantic_id_model: Optional[types.BaseChannel] = None,
    spm_model: Optional[types.BaseChannel] = None,
    train_args: Optional[trainer_pb2.TrainArgs] = None,
    eval_args: Optional[trainer_pb2.EvalArgs] = None,
  ):
    config = config or RankerTrainerConfig()
    spec = SidRankerTrainerSpec(
      examples=examples,
      items=items,
      semantic_id_model=semantic_id_model,
      spm_model=spm_model,
      module_file=module_file,
      train_args=train_args or trainer_pb2.TrainArgs(splits=["train"]),
      eval_args=eval_args or trainer_pb2.EvalArgs(splits=["eval"]),
      custom_config=json_utils.dumps(config.to_json_dict()),
      model=channel.Channel(type=standard_artifacts.Model),
      model_run=channel.Channel(type=standard_artifacts.ModelRun),
    )
    super().__init__(spec=spec)
    if udf_utils.should_package_user_modules():  # As the stock Trainer: the module file's folder
      udf_utils.add_user_module_dependency(  # becomes a wheel whose hash is in the cache key.
        self, standard_component_specs.MODULE_FILE_KEY, standard_component_specs.MODULE_PATH_KEY
      )
