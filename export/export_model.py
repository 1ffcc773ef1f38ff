r"""Exports a trained ranker for TF Serving: `BASE/<version>/` with three signatures and assets.

Usage:
  python -m export.export_model --ranker_dir=runs/ranker_spm --output_dir=/tmp/serving/ranker

Input contract (`--ranker_dir`): trainers.train_ranker's output directory (the ranker is rebuilt
from its `ranker_config.json` and `checkpoint/`; its inputs come from `features.feature_spec`; a
ranker with a semantic-ID part also gets `predict_codes`, which takes precomputed SIDs), or
any SavedModel directory whose `serving_default` signature takes named batch-major tensors, among
them `content_embedding` float32[None, D], and returns `ctr` [B] plus the second task's output
[B]; an optional `semantic_id` signature (content_embedding -> codes [B, L]) is carried over. A
Keras model qualifies once saved with such a signature:
`tf.saved_model.save(model, dir, signatures={"serving_default": fn})` with
`fn = tf.function(lambda features: model(features), input_signature=[{name: TensorSpec}])`.
This module and `export.signatures` are the only places that build serving signatures.

Output (`--output_dir`, TF Serving's base path for one model):
  BASE/<version>/                    SavedModel: `serving_default`, `predict_examples`,
                                     `semantic_id`, `predict_codes` (export/signatures.py),
                                     core TF ops only (no TF Text), plus
  BASE/<version>/assets.extra/tf_serving_warmup_requests   warm-up PredictionLogs.
  BASE/models.config                 ModelServerConfig (base_path = --server_base_path).
  BASE/batching_parameters.txt       BatchingParameters for --enable_batching.
The version is one more than the highest existing version (or --version). The SavedModel is
written to a new temp folder in BASE with an unpredictable name (`features.io_utils.atomic_dir`:
`tempfile.mkdtemp` locally; the server ignores it, it is not a number) and renamed into place only
after it reloads and matches the ranker (and `predict_codes` fed the export's own `semantic_id`
codes matches `serving_default`), so the model server never sees a half-written version; on any
failure the temp folder is removed. Re-running adds a version. With `--catalogue_embeddings`
the SID layers hold the catalogue's tokens in the graph (`model.catalogue_cache`), and the export
must also give the ranker's predictions on catalogue rows. `--model_name` must be one plain
path component (not empty, `.` or `..`, no `/`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Sequence

import numpy as np
import tensorflow as tf
import tqdm
from absl import app, flags

from export import contract_check, serving_assets, signatures
from features import feature_spec, io_utils, user_files
from model import catalogue_cache, sid_item
from model import user_tower as user_tower_lib
from trainers import cli, job_flags, ranker_training

TRAINING_ONLY_CHILDREN = ("optimizer",)
EMBEDDING_KEY = feature_spec.CONTENT_EMBEDDING
PATH_COMPONENT_RULE = "one path component: not empty, '.' or '..', without '/' or '\\'"


def is_path_component(name: str) -> bool:
  """True when `name` is one safe path component (it names a folder: `/models/<name>`)."""
  return name not in ("", ".", "..") and not any(c in name for c in "/\\\0")


@dataclasses.dataclass
class ExportConfig:
  """How the ranker is exported.

  Attributes:
    model_name: The model's name in models.config and requests. Defaults to "ranker".
    version: Version directory to write; None for one more than the highest existing.
    max_batch_size: Rows allowed per request (larger ones fail with InvalidArgument).
    warmup_batch_sizes: Sizes of the warm-up requests. Defaults to (1, 100).
    server_base_path: base_path written to models.config (the path inside the server container).
      Defaults to "/models/<model_name>".
    num_versions: Versions the server keeps loaded. Defaults to 1.
    tolerance: Largest difference between the ranker and the export on sample rows.
    catalogue_embeddings: Optional path of an embeddings file (`features.user_files.
      read_embeddings`: .npy float[N, D], or an .npz with `embedding`) of the items to cache in
      the graph (`model.sid_item.cache_catalogue`): a served content embedding equal to one of
      them skips the nearest-code search and the tokenizer. Needs a `trainers.train_ranker`
      folder with a semantic-ID part. Defaults to None (no cache).
    catalogue_match: How a served row is matched to a cached one (`model.catalogue_cache.
      MATCHES`): "fingerprint" (64-bit FarmHash of the row, 8 bytes per item in the export; a
      row outside the catalogue is taken for one with probability about N * 2^-128, at most
      2^-64) or "exact" (the whole row: never a wrong hit, N * D * 4 bytes, slower). Defaults to
      "fingerprint".
  """

  model_name: str = "ranker"
  version: int | None = None
  max_batch_size: int = 10_000
  warmup_batch_sizes: Sequence[int] = (1, 100)
  server_base_path: str | None = None
  num_versions: int = 1
  tolerance: float = 1e-5
  catalogue_embeddings: str | None = None
  catalogue_match: str = catalogue_cache.DEFAULT_MATCH

  def __post_init__(self):
    if self.catalogue_match not in catalogue_cache.MATCHES:
      raise ValueError(
        f"`catalogue_match` must be one of {sorted(catalogue_cache.MATCHES)}. "
        f"Received: catalogue_match={self.catalogue_match!r}"
      )
    if not is_path_component(self.model_name):
      raise ValueError(
        f"`model_name` must be a plain name, {PATH_COMPONENT_RULE}. "
        f"Received: model_name={self.model_name!r}"
      )
    if self.version is not None and self.version < 1:
      raise ValueError(f"`version` must be positive. Received: version={self.version}")
    if any(size < 1 or size > self.max_batch_size for size in self.warmup_batch_sizes):
      raise ValueError(
        f"`warmup_batch_sizes` must be in [1, max_batch_size={self.max_batch_size}]. "
        f"Received: {list(self.warmup_batch_sizes)}"
      )


def is_trained_ranker(ranker_dir: str) -> bool:
  """True for a `trainers.train_ranker` output folder (config + checkpoint)."""
  return os.path.isfile(os.path.join(ranker_dir, ranker_training.CONFIG_FILE))


def ranker_saved_model(ranker_dir: str) -> str:
  """The SavedModel inside `ranker_dir` (its `saved_model/`, or `ranker_dir` itself)."""
  for path in (os.path.join(ranker_dir, "saved_model"), ranker_dir):
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
      return path
  raise FileNotFoundError(
    f"No SavedModel in --ranker_dir={ranker_dir!r}: expected {ranker_dir}/saved_model/"
    "saved_model.pb (trainers.train_ranker's output) or saved_model.pb in the directory itself"
  )


def contract_from_signature(
  function: tf.types.experimental.ConcreteFunction, max_batch_size: int
) -> signatures.ServingContract:
  """The serving contract the ranker's `serving_default` implies (inputs, output names)."""
  specs = function.structured_input_signature[1]
  if not specs:
    raise ValueError("The ranker's serving_default must take named tensors (keyword inputs)")
  outputs = sorted(function.structured_outputs)
  if signatures.CTR_KEY not in outputs:
    raise ValueError(f"The ranker's serving_default must return 'ctr'. It returns {outputs}")
  return signatures.ServingContract(
    input_specs={name: tf.TensorSpec(spec.shape, spec.dtype) for name, spec in specs.items()},
    output_names=(signatures.CTR_KEY, *[o for o in outputs if o != signatures.CTR_KEY]),
    embedding_key=EMBEDDING_KEY if EMBEDDING_KEY in specs else None,
    max_batch_size=max_batch_size,
  )


def drop_training_state(ranker: tf.Module) -> list[str]:
  """Untracks the optimizer (Adam slots are ~2/3 of a trained Keras ranker) so it is not
  re-exported; serving never reads it. Returns the names dropped."""
  dropped = []
  for name in TRAINING_ONLY_CHILDREN:
    if hasattr(ranker, name):
      delattr(ranker, name)
      dropped.append(name)
  return dropped


def keras_serving_module(ranker, content_dim: int, max_batch_size: int) -> signatures.ServingModule:
  """Wraps a Keras ranker (`model.ranker.Ranker`) in the validated signatures: its inputs from the
  feature spec; with a semantic-ID part also `semantic_id` and `predict_codes` (the ranker traced
  reading precomputed codes, `model.sid_item.reading`)."""
  representation = ranker.item_representation
  with sid_item.reading(representation, sid_item.CONTENT):
    contract = _contract(ranker.input_specs(content_dim), ranker, max_batch_size)
  encoder = getattr(representation, "sid_encoder", None)
  if contract.embedding_key is None:
    encoder = None
  codes_contract, codes_fn = None, None
  frozen = sid_item.FrozenVectors(representation)  # Cached catalogue rows: one gather each.
  layers = sid_item.sid_items(representation)
  if encoder is not None and len(layers) == 1:
    with sid_item.reading(representation, sid_item.CODES):
      specs = signatures.with_sid_length(ranker.input_specs(content_dim), layers[0].num_levels)
      bounds = {k: layers[0].codebook_size for k in specs if k.endswith(feature_spec.CODES)}
      codes_contract = _contract(specs, ranker, max_batch_size, bounds)

    def codes_fn(features):
      with sid_item.reading(representation, sid_item.CODES), frozen.tracing():
        return ranker(features, training=False)

  def predict_fn(features):
    with sid_item.reading(representation, sid_item.CONTENT), frozen.tracing():
      return ranker(features, training=False)

  return signatures.ServingModule(
    predict_fn=predict_fn,
    contract=contract,
    sid_fn=encoder,
    trackables={"ranker": signatures.serving_state(ranker)},
    codes_fn=codes_fn,
    codes_contract=codes_contract,
  )


def _contract(specs, ranker, max_batch_size: int, bounds=None) -> signatures.ServingContract:
  # The history inputs are passed once when a request repeats them: the UserTower applies a
  # one-row history to every row (another user tower might not).
  tower = ranker.user_tower
  shared = tower.history_keys() if isinstance(tower, user_tower_lib.UserTower) else ()
  return signatures.ServingContract(
    input_specs={k: tf.TensorSpec(s.shape, s.dtype) for k, s in specs.items()},
    output_names=ranker.prediction_names,
    embedding_key=EMBEDDING_KEY if EMBEDDING_KEY in specs else None,
    max_batch_size=max_batch_size,
    value_bounds=bounds or {},
    shared_keys=tuple(shared),
  )


def serving_module(ranker: tf.Module, max_batch_size: int) -> signatures.ServingModule:
  """Wraps a loaded ranker SavedModel in the three validated signatures."""
  serve = ranker.signatures["serving_default"]
  contract = contract_from_signature(serve, max_batch_size)
  sid_fn = None
  if signatures.SIGNATURE_SEMANTIC_ID in ranker.signatures and contract.embedding_key:
    semantic_id = ranker.signatures[signatures.SIGNATURE_SEMANTIC_ID]
    (key,) = semantic_id.structured_input_signature[1]
    sid_fn = lambda embedding: semantic_id(**{key: embedding})[signatures.CODES_KEY]  # noqa: E731
  return signatures.ServingModule(
    predict_fn=lambda features: serve(**features),
    contract=contract,
    sid_fn=sid_fn,
    trackables={"ranker": ranker},
  )


def next_version(base_dir: str) -> int:
  names = tf.io.gfile.listdir(base_dir) if tf.io.gfile.isdir(base_dir) else []
  versions = [int(d.rstrip("/")) for d in names if d.rstrip("/").isdigit()]
  return max(versions, default=0) + 1


def _max_diff(a, b) -> float:
  return max(float(np.max(np.abs(a[k].numpy() - b[k].numpy()), initial=0.0)) for k in a)


def export(ranker_dir: str, output_dir: str, config: ExportConfig | None = None) -> str:
  """Exports the ranker in `ranker_dir` to `output_dir/<version>`; returns that directory.

  Raises:
    FileNotFoundError: `ranker_dir` holds no SavedModel.
    FileExistsError: the requested version already exists.
    ValueError: the ranker does not follow the input contract (see the module docstring), or the
      export's predictions differ from the ranker's by more than `config.tolerance`.
  """
  config = config or ExportConfig()
  steps = tqdm.tqdm(total=5, desc="export", unit="step", file=sys.stdout)
  catalogue_check = None
  if is_trained_ranker(ranker_dir):
    keras_ranker = ranker_training.load_ranker(ranker_dir)
    dim = ranker_training.content_dim(ranker_dir)
    if config.catalogue_embeddings:
      catalogue_check = attach_catalogue(
        keras_ranker, dim, config.catalogue_embeddings, config.catalogue_match
      )
    module = keras_serving_module(keras_ranker, dim, config.max_batch_size)
    reference = lambda **inputs: keras_ranker(inputs, training=False)  # noqa: E731
  elif config.catalogue_embeddings:
    raise ValueError(
      f"A catalogue cache needs a trainers.train_ranker folder; {ranker_dir} is a SavedModel"
    )
  else:
    ranker = tf.saved_model.load(ranker_saved_model(ranker_dir), tags=["serve"])
    drop_training_state(ranker)
    module = serving_module(ranker, config.max_batch_size)
    reference = ranker.signatures["serving_default"]
  steps.update()
  tf.io.gfile.makedirs(output_dir)
  version = config.version or next_version(output_dir)
  final = os.path.join(output_dir, str(version))
  if tf.io.gfile.exists(final):
    raise FileExistsError(f"Version {version} already exists: {final}")
  with io_utils.atomic_dir(final, overwrite=False) as temp:
    module.save(temp)
    steps.update()
    specs = module.contract.input_specs
    requests = [
      (signatures.SIGNATURE_DEFAULT, serving_assets.sample_inputs(specs, n))
      for n in config.warmup_batch_sizes
    ]
    if module.codes_contract is not None:
      codes = module.codes_contract
      requests += [
        (signatures.SIGNATURE_CODES, serving_assets.sample_inputs(codes.input_specs, n))
        for n in config.warmup_batch_sizes
      ]
    serving_assets.write_warmup_requests(temp, config.model_name, requests)
    steps.update()
    _verify(reference, temp, specs, config.tolerance, catalogue_check)
    steps.update()
  base_path = config.server_base_path or f"/models/{config.model_name}"
  serving_assets.write_model_config(
    os.path.join(output_dir, serving_assets.MODEL_CONFIG_FILE),
    config.model_name,
    base_path,
    config.num_versions,
  )
  serving_assets.write_batching_parameters(
    os.path.join(output_dir, serving_assets.BATCHING_FILE),
    serving_assets.BatchingConfig(max_batch_size=config.max_batch_size),
  )
  steps.update()
  steps.close()
  return final


def attach_catalogue(
  ranker, content_dim: int, path: str, match: str = catalogue_cache.DEFAULT_MATCH
):
  """Caches the catalogue of the embeddings file `path` in `ranker`'s SID layers (before the
  export is traced); returns (inputs, outputs) of the ranker WITHOUT the cache on a request of
  catalogue rows, which the export must reproduce through its cache (`_verify`).

  Raises:
    schema.SchemaError: `path` cannot be read or is not a finite [N, D] array.
    ValueError: the embeddings are not `content_dim` wide, or the ranker has no SID part.
  """
  embeddings = user_files.read_embeddings(path)
  if embeddings.shape[1] != content_dim:
    raise ValueError(
      f"{path}: the catalogue's embeddings are {embeddings.shape[1]} wide; the ranker reads "
      f"content embeddings of {content_dim}"
    )
  if not sid_item.sid_items(ranker.item_representation):
    raise ValueError(f"The ranker has no semantic-ID part to cache {path} in")
  specs = ranker.input_specs(content_dim)
  inputs = serving_assets.sample_inputs(specs, 16, seed=2)
  rng = np.random.default_rng(2)
  for key in (EMBEDDING_KEY, feature_spec.history_key(EMBEDDING_KEY)):
    if key in inputs:  # Candidates and history items drawn from the catalogue.
      inputs[key] = embeddings[rng.integers(0, len(embeddings), size=inputs[key].shape[:-1])]
  inputs = {k: tf.constant(v) for k, v in inputs.items()}
  expected = ranker(inputs, training=False)
  sid_item.cache_catalogue(ranker.item_representation, embeddings, match=match)
  return inputs, expected


def _verify(reference, export_dir: str, specs, tolerance: float, catalogue_check=None) -> None:
  """Reloads the export and checks it predicts what the in-process ranker predicts on sample
  rows (`reference`: a serving function taking the inputs as keyword arguments), that
  `predict_codes` on the export's own `semantic_id` codes predicts what `serving_default` does,
  and, with a `catalogue_check` from `attach_catalogue`, that catalogue rows served through the
  cache get the ranker's predictions without it."""
  inputs = {k: tf.constant(v) for k, v in serving_assets.sample_inputs(specs, 16, seed=1).items()}
  expected = reference(**inputs)
  loaded = tf.saved_model.load(export_dir)
  if catalogue_check is not None:
    rows, without_cache = catalogue_check
    served = loaded.signatures[signatures.SIGNATURE_DEFAULT](**rows)
    diff = _max_diff({k: without_cache[k] for k in served}, served)
    if not diff <= tolerance:
      raise ValueError(
        f"The export's catalogue cache changes predictions by {diff:.3g} > tolerance {tolerance}"
      )
  exported = loaded.signatures[signatures.SIGNATURE_DEFAULT](**inputs)
  diff = _max_diff({k: expected[k] for k in exported}, exported)
  if not diff <= tolerance:
    raise ValueError(f"The export differs from the ranker by {diff:.3g} > tolerance {tolerance}")
  if signatures.SIGNATURE_CODES in loaded.signatures:
    codes_inputs = serving_assets.codes_inputs(loaded, {k: v.numpy() for k, v in inputs.items()})
    from_codes = loaded.signatures[signatures.SIGNATURE_CODES](**codes_inputs)
    diff = _max_diff(exported, from_codes)
    if not diff <= tolerance:
      raise ValueError(
        f"predict_codes differs from serving_default by {diff:.3g} > tolerance {tolerance}"
      )


def directory_size(path: str) -> int:
  """Bytes on disk under `path` (file sizes, recursively)."""
  return sum(
    os.path.getsize(os.path.join(root, name)) for root, _, files in os.walk(path) for name in files
  )


FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the CLI flags (only when run as a program, so importing this module defines none)."""
  flags.DEFINE_string(
    "ranker_dir", None, "trainers.train_ranker's output dir, or a SavedModel dir."
  )
  job_flags.define_output_dir(None, "TF Serving base path for the model: versions go below.")
  flags.DEFINE_string("model_name", "ranker", "Model name (models.config, requests).")
  flags.DEFINE_integer("version", None, "Version to write (default: one more than the highest).")
  flags.DEFINE_integer("max_batch_size", 10_000, "Most rows per request.")
  flags.DEFINE_list("warmup_batch_sizes", ["1", "100"], "Rows of each warm-up request.")
  flags.DEFINE_string(
    "server_base_path", None, "base_path in models.config (default /models/NAME)."
  )
  flags.DEFINE_string(
    "catalogue_embeddings",
    None,
    "Optional embeddings file (.npy float[N, D], or .npz with 'embedding') of the items to cache "
    "in the graph: a served row equal to one skips the SID encoder and tokenizer. Needs a "
    "train_ranker folder with a semantic-ID part.",
  )
  flags.DEFINE_enum(
    "catalogue_match",
    catalogue_cache.DEFAULT_MATCH,
    sorted(catalogue_cache.MATCHES),
    "With --catalogue_embeddings: match served rows to cached ones by a 64-bit FarmHash of the "
    "row (fingerprint: 8 bytes per item; a wrong hit has probability about N * 2^-128) or by "
    "the whole row (exact: never wrong, N * D * 4 bytes, slower).",
  )
  flags.DEFINE_enum(
    "check",
    "python",
    ["none", "python", "full"],
    "Contract check after export: none, fresh Python process, or also the C++ loader (g++).",
  )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.ranker_dir or not FLAGS.output_dir:
    raise app.UsageError("--ranker_dir and --output_dir are required")
  if FLAGS["catalogue_match"].present and not FLAGS.catalogue_embeddings:
    raise app.UsageError(
      "--catalogue_match applies only with --catalogue_embeddings. Received: "
      f"--catalogue_match={FLAGS.catalogue_match} without --catalogue_embeddings"
    )
  if not is_path_component(FLAGS.model_name):
    raise app.UsageError(
      f"--model_name must be {PATH_COMPONENT_RULE}. Received: --model_name={FLAGS.model_name!r}"
    )
  try:
    warmup = tuple(int(size) for size in FLAGS.warmup_batch_sizes)
  except ValueError:
    raise app.UsageError(
      "--warmup_batch_sizes must be integers. Received: "
      f"--warmup_batch_sizes={','.join(FLAGS.warmup_batch_sizes)}"
    ) from None
  config = ExportConfig(
    model_name=FLAGS.model_name,
    version=FLAGS.version,
    max_batch_size=FLAGS.max_batch_size,
    warmup_batch_sizes=warmup,
    server_base_path=FLAGS.server_base_path,
    catalogue_embeddings=FLAGS.catalogue_embeddings,
    catalogue_match=FLAGS.catalogue_match,
  )
  export_dir = export(FLAGS.ranker_dir, FLAGS.output_dir, config)
  loaded = tf.saved_model.load(export_dir)
  print(f"exported {export_dir} ({directory_size(export_dir) / 1e6:.2f} MB)")
  for name, function in loaded.signatures.items():
    inputs = {
      k: (v.dtype.name, v.shape.as_list())
      for k, v in function.structured_input_signature[1].items()
    }
    outputs = {k: (v.dtype.name, v.shape.as_list()) for k, v in function.structured_outputs.items()}
    print(f"  {name}: {inputs} -> {outputs}")
  print(
    f"wrote {os.path.join(FLAGS.output_dir, serving_assets.MODEL_CONFIG_FILE)} and "
    f"{serving_assets.BATCHING_FILE}"
  )
  if FLAGS.check != "none":
    results = contract_check.run_checks(export_dir, skip_cpp=FLAGS.check != "full")
    print(contract_check.format_summary(results))
    if not all(r.passed for r in results):
      sys.exit(1)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
