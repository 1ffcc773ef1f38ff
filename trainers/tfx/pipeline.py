"""The TFX pipeline: ImportExampleGen -> SemanticIdGen -> SidRankerTrainer -> Pusher.

  .venv-tfx/bin/python -m trainers.tfx.pipeline --output_dir=runs/tfx_pipeline [data flags]
  .venv-tfx/bin/python -m trainers.tfx.pipeline --dataset=movielens --output_dir=runs/tfx_ml

Before the pipeline runs, the dataset the data flags name (synthetic by default, MovieLens, your
own files) is loaded, split with the jobs' protocol and written as TFRecords of tf.Example under
DIR/data (`trainers.tfx.examples_io`; unchanged files are not rewritten, so a re-run with the same
flags is served from the cache). Then, run by `LocalDagRunner` with a SQLite ML Metadata store:
  ItemsExampleGen         ImportExampleGen over DIR/data/items (one split, `items`)
  InteractionsExampleGen  ImportExampleGen over DIR/data/interactions (`train`, `eval`)
  SemanticIdGen           RQ-VAE + SID table (+ SPM model when the scheme needs one)
  SidRankerTrainer        the TFRS ranker of --item_representation; its TF Serving export
  Pusher                  the export to DIR/serving/<model_name>/<version>/ (TF Serving's layout)
Outputs: DIR/pipeline_root (artifacts), DIR/metadata.sqlite (ML Metadata), DIR/serving/<name>/
(versions, plus models.config and batching_parameters.txt for `tensorflow_model_server`).
"""

import os
import time
from typing import Optional

from absl import app, flags
from tfx.components.example_gen.import_example_gen.component import ImportExampleGen
from tfx.components.pusher.component import Pusher
from tfx.orchestration import metadata
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.proto import example_gen_pb2, pusher_pb2

from export import serving_assets
from model import ranker as ranker_lib
from model import schemes
from trainers import artifacts, cli, data_flags, item_flags, job_flags
from trainers.tfx import component, examples_io, executor, metadata_report, ranker_trainer
from trainers.tfx.trainer_module import MODULE_FILE

PIPELINE_NAME = "semantic_id_ranking"
BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
ITEMS_SPLIT = "items"


def example_gens(data_dir: str):
  """(items, interactions) ImportExampleGens over `examples_io.write_dataset`'s layout."""
  items = ImportExampleGen(
    input_base=os.path.join(data_dir, examples_io.ITEMS_DIR),
    output_config=example_gen_pb2.Output(
      split_config=example_gen_pb2.SplitConfig(
        splits=[example_gen_pb2.SplitConfig.Split(name=ITEMS_SPLIT, hash_buckets=1)]
      )
    ),
  ).with_id("ItemsExampleGen")
  interactions = ImportExampleGen(
    input_base=os.path.join(data_dir, examples_io.INTERACTIONS_DIR),
    input_config=example_gen_pb2.Input(
      splits=[
        example_gen_pb2.Input.Split(name=name, pattern=f"{name}/*")
        for name in (examples_io.TRAIN, examples_io.EVAL)
      ]
    ),
  ).with_id("InteractionsExampleGen")
  return items, interactions


def create_pipeline(
  output_dir: str,
  sid_config: artifacts.SidConfig,
  trainer_config: ranker_trainer.RankerTrainerConfig,
  embedding_dim: int = 0,
  serving_dir: Optional[str] = None,
  enable_cache: bool = True,
) -> tfx_pipeline.Pipeline:
  """The pipeline over the TFRecords in `output_dir/data` (see the module docstring).

  Args:
    output_dir: str. Holds data/, pipeline_root/, metadata.sqlite and serving/.
    sid_config: artifacts.SidConfig. SemanticIdGen's RQ-VAE parameters.
    trainer_config: ranker_trainer.RankerTrainerConfig. What the Trainer trains.
    embedding_dim: int. The content width every item must have (0: any shared width).
    serving_dir: Optional str. The Pusher's base directory. Defaults to
      `output_dir/serving/<model_name>`.
    enable_cache: bool. Reuse executions whose inputs and parameters are unchanged.
  """
  items, interactions = example_gens(os.path.join(output_dir, "data"))
  item_config = trainer_config.item_representation
  spm_budget = item_config.spec.spm_budget(item_config)
  sid_gen = component.SemanticIdGen(
    items=items.outputs["examples"],
    interactions=interactions.outputs["examples"] if spm_budget is not None else None,
    spm_vocab_size=spm_budget,
    embedding_dim=embedding_dim,
    **{key: getattr(sid_config, key) for key in executor.SID_CONFIG_KEYS},
  )
  trainer = ranker_trainer.SidRankerTrainer(
    examples=interactions.outputs["examples"],
    items=items.outputs["examples"],
    semantic_id_model=sid_gen.outputs["semantic_id_model"],
    spm_model=sid_gen.outputs["spm_model"] if spm_budget is not None else None,
    module_file=MODULE_FILE,
    config=trainer_config,
  )
  pusher = Pusher(
    model=trainer.outputs["model"],
    push_destination=pusher_pb2.PushDestination(
      filesystem=pusher_pb2.PushDestination.Filesystem(
        base_directory=serving_dir or default_serving_dir(output_dir, trainer_config.model_name)
      )
    ),
  )
  return tfx_pipeline.Pipeline(
    pipeline_name=PIPELINE_NAME,
    pipeline_root=os.path.join(output_dir, "pipeline_root"),
    components=[items, interactions, sid_gen, trainer, pusher],
    enable_cache=enable_cache,
    metadata_connection_config=metadata.sqlite_metadata_connection_config(
      metadata_path(output_dir)
    ),
    beam_pipeline_args=list(BEAM_ARGS),
  )


def metadata_path(output_dir: str) -> str:
  return os.path.join(output_dir, "metadata.sqlite")


def default_serving_dir(output_dir: str, model_name: str) -> str:
  return os.path.join(output_dir, "serving", model_name)


def write_server_config(serving_dir: str, model_name: str) -> None:
  """models.config and batching_parameters.txt next to the pushed versions (as the export's)."""
  serving_assets.write_model_config(
    os.path.join(serving_dir, serving_assets.MODEL_CONFIG_FILE), model_name, f"/models/{model_name}"
  )
  serving_assets.write_batching_parameters(
    os.path.join(serving_dir, serving_assets.BATCHING_FILE), serving_assets.BatchingConfig()
  )


# --------------------------------------------------------------------------------------------
# The command-line job.


def define_flags() -> None:
  """The job's flags (only when run as a program, so importing this module defines none)."""
  data_flags.define()
  job_flags.define_output_dir("runs/tfx_pipeline", "Folder for data, artifacts, ML Metadata.")
  flags.DEFINE_enum(
    "item_representation", schemes.SPM, list(schemes.names()), "The ranker's item representation."
  )
  job_flags.define_ranker_model()
  item_flags.define()
  job_flags.define_sid()
  job_flags.define_ranker_train()
  flags.DEFINE_string("model_name", "ranker", "Model name (serving folder, models.config).")
  flags.DEFINE_bool("cache", True, "Serve unchanged executions from the ML Metadata cache.")


FLAGS = flags.FLAGS


def trainer_config_from_flags(dataset, split) -> ranker_trainer.RankerTrainerConfig:
  job_flags.check_positive(("table_rows", "history_length", "embedding_dim"))
  return ranker_trainer.RankerTrainerConfig(
    item_representation=item_flags.item_config(
      FLAGS.item_representation, FLAGS.table_rows, FLAGS.embedding_dim
    ),
    ranker=ranker_lib.RankerConfig(
      second_label_name=dataset.second_label_name,
      user_embedding_dim=FLAGS.embedding_dim,
      use_history=FLAGS.item_representation != schemes.NONE,
      history_length=FLAGS.history_length,
    ),
    train=job_flags.train_config(FLAGS.seed, verbose=2),
    split_method=split.method.value,
    split_params=dict(split.params),
    model_name=FLAGS.model_name,
  )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if FLAGS.rqvae_dir:
    raise app.UsageError("--rqvae_dir is not used here: SemanticIdGen trains the RQ-VAE.")
  out = os.path.abspath(FLAGS.output_dir)
  start = time.perf_counter()
  dataset = data_flags.load()
  split = data_flags.split(dataset)
  written = examples_io.write_dataset(dataset, split, os.path.join(out, "data"))
  changed = [name for name, rewritten in written.items() if rewritten]
  print(f"data: {split.counts()}; rewritten: {changed or 'none (unchanged)'}", flush=True)
  config = trainer_config_from_flags(dataset, split)
  sid_config = job_flags.sid_config(FLAGS.seed)
  data_s = time.perf_counter() - start
  LocalDagRunner().run(
    create_pipeline(out, sid_config, config, dataset.embedding_dim, enable_cache=FLAGS.cache)
  )
  serving_dir = default_serving_dir(out, FLAGS.model_name)
  write_server_config(serving_dir, FLAGS.model_name)
  report = metadata_report.read(metadata_path(out))
  states = [e["state"] for e in report["runs"][-1]["executions"]]
  print(metadata_report.format_run(report))
  versions = sorted((d for d in os.listdir(serving_dir) if d.isdigit()), key=int)
  print(
    f"done in {time.perf_counter() - start:.1f}s (data {data_s:.1f}s); executions: "
    f"{states.count('COMPLETE')} complete, {states.count('CACHED')} cached; serving: "
    f"{serving_dir} (versions {versions})",
    flush=True,
  )


if __name__ == "__main__":
  define_flags()
  cli.run(main)
