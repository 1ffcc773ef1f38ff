"""Library behind `trainers.train_ranker`: train, evaluate, save and reload one ranker.

`fit_and_evaluate` is what the job, `trainers.experiment` and `trainers.pipeline` call: it carves a
validation slice from the training period with the same split protocol, trains with `model.fit`
(early stopping on validation AUC, BackupAndRestore, TensorBoard), scores the validation and test
slices and writes the run directory (layout in `trainers.train_ranker`). The ranker is saved as
its Keras config (`ranker_config.json`) plus a checkpoint of its weights; `load_ranker` rebuilds it
from those. Serving exports are made from that by `export.export_model`, the only place that
builds serving signatures.
"""

import dataclasses
import json
import os
import time
from typing import Any, Dict, Optional, Sequence

import numpy as np
import pandas as pd
import tensorboard  # noqa: F401  (the TensorBoard callback writes its logs with it)
import tensorflow as tf

from features import history, io_utils, schema, splits
from model import metrics as metrics_lib
from model import ranker as ranker_lib
from model import schemes, sid_item
from trainers import artifacts, distribute, run_dir

SPM_FILE = "spm.model"
CONFIG_FILE = "ranker_config.json"
CHECKPOINT_DIR = "checkpoint"
FORMAT_VERSION = 2


@dataclasses.dataclass
class TrainConfig:
  """How one ranker is trained.

  Attributes:
    epochs: int. Most epochs (early stopping usually ends sooner). Defaults to 3.
    batch_size: int. Defaults to 1024.
    learning_rate: float. Adam. Defaults to 3e-3.
    patience: int. Epochs without validation-AUC improvement before stopping. Defaults to 1.
    seed: int. Initialisation and shuffling seed. Defaults to 0.
    verbose: int. Keras progress (0 silent, 1 bar, 2 one line per epoch). Defaults to 1.
  """

  epochs: int = 3
  batch_size: int = 1024
  learning_rate: float = 3e-3
  patience: int = 1
  seed: int = 0
  verbose: int = 1

  def __post_init__(self):
    run_dir.finite_positive("learning_rate", self.learning_rate)
    for name in ("epochs", "batch_size"):
      if getattr(self, name) <= 0:
        raise ValueError(f"`{name}` must be positive. Received: {name}={getattr(self, name)}")
    if self.patience < 0:
      raise ValueError(f"`patience` must be >= 0. Received: patience={self.patience}")


validation_split = artifacts.validation_split


def build_ranker(
  item_config: schemes.ItemRepresentationConfig,
  ranker_config: ranker_lib.RankerConfig,
  sid_encoder: Optional[tf.keras.layers.Layer] = None,
  spm_model_proto: Optional[bytes] = None,
) -> ranker_lib.Ranker:
  """The ranker for `item_config` (the registry builds the representation)."""
  representation = schemes.create(
    item_config, sid_encoder=sid_encoder, spm_model_proto=spm_model_proto
  )
  return ranker_lib.build_ranker(representation, ranker_config)


def make_dataset(dataset, frame, ranker_config, batch_size, shuffle=False, seed=0, item_cache=None):
  """Batches of `frame` for the ranker. With an `item_cache` (`catalogue_cache`), candidates and
  history items carry their cached subword ids (`sid_tokens`, `history_sid_tokens`) instead of
  content embeddings; the ranker must read them (`read_cache`)."""
  h = ranker_config.history_length if ranker_config.use_history else None
  cached = {"item_features": item_cache, "content": False} if item_cache else {}
  return history.make_tf_dataset(
    dataset, frame, batch_size, h, shuffle=shuffle, seed=seed, **cached
  )


def catalogue_cache(
  dataset: schema.Dataset,
  item_config: schemes.ItemRepresentationConfig,
  sid_encoder: Optional[tf.keras.layers.Layer] = None,
  spm_model_proto: Optional[bytes] = None,
) -> Dict[str, np.ndarray]:
  """Every catalogue item's subword ids under `item_config`'s SID part, computed once before fit
  (the RQ-VAE is frozen and the tokenizers are deterministic): {"sid_tokens": int64[n_items, T]},
  or {} for a scheme without a SID part."""
  if not item_config.spec.uses_sid:
    return {}
  representation = schemes.create(
    item_config, sid_encoder=sid_encoder, spm_model_proto=spm_model_proto
  )
  cache = sid_item.catalogue_inputs(representation, dataset.embeddings)
  return {sid_item.TOKENS: cache[sid_item.TOKENS]} if cache else {}


def read_cache(model: ranker_lib.Ranker, cache: Optional[Dict[str, np.ndarray]]):
  """Makes `model`'s SID part read the cached subword ids when `cache` holds them, its content
  embeddings otherwise; returns `model`."""
  key = sid_item.TOKENS if cache and sid_item.TOKENS in cache else sid_item.CONTENT
  sid_item.use_inputs(model.item_representation, key)
  return model


def predict(model: ranker_lib.Ranker, data: tf.data.Dataset) -> Dict[str, np.ndarray]:
  keys = model.input_keys
  outputs = {ranker_lib.CTR: [], model.config.second_label_name: []}
  for batch in data:
    out = model({k: batch[k] for k in keys}, training=False)
    for name in outputs:
      outputs[name].append(out[name].numpy())
  return {k: np.concatenate(v) if v else np.zeros(0, np.float32) for k, v in outputs.items()}


def clicked_users(frame: pd.DataFrame) -> np.ndarray:
  """Users with at least one click in `frame` (as strings): users with a training history."""
  return frame.loc[frame["click"] > 0, "user_id"].astype(str).unique()


def row_slices(
  dataset: schema.Dataset, frame: pd.DataFrame, train: pd.DataFrame
) -> Dict[str, np.ndarray]:
  """Per-row slice keys of an evaluation frame: `band` (popularity band of the item by its
  impressions in `train`) and `age_s` (seconds since the item was first seen)."""
  items = frame["item_id"].to_numpy()
  first_seen = dataset.items["first_seen"].to_numpy()[dataset.item_index(items)]
  return {
    "band": metrics_lib.popularity_bands(train["item_id"].to_numpy(), items),
    "age_s": frame["timestamp"].to_numpy(np.int64) - first_seen,
  }


def evaluate(
  frame: pd.DataFrame,
  scores: Dict[str, np.ndarray],
  second_name: str,
  known_users,
  slices: Optional[Dict[str, np.ndarray]] = None,
):
  """Slice metrics of one scored frame (`cold` column marks cold rows; `slices` from
  `row_slices` adds the popularity bands and item-age slices)."""
  labels = frame["click"].to_numpy(np.float64)
  users = frame["user_id"].astype(str).to_numpy()
  cold = frame["cold"].to_numpy(bool)
  known = np.isin(users, known_users)
  extra = {"cold_known_user": cold & known, "cold_new_user": cold & ~known}
  if slices is not None:
    extra.update(metrics_lib.extra_slice_masks(slices["band"], slices["age_s"]))
  out = metrics_lib.slice_metrics(labels, scores[ranker_lib.CTR], users, cold, extra)
  second = frame["second_label"].to_numpy(np.float64)
  for name, mask in metrics_lib.slice_masks(cold).items():
    err = scores[second_name][mask] - second[mask]
    out[name][f"{second_name}_rmse"] = (
      float(np.sqrt(np.mean(err**2))) if mask.any() else float("nan")
    )
  return out


def run_identity(
  dataset: schema.Dataset,
  item_config: schemes.ItemRepresentationConfig,
  ranker_config: ranker_lib.RankerConfig,
  train_config: TrainConfig,
  sid_encoder: Optional[tf.keras.layers.Layer],
  spm_model_proto: Optional[bytes],
  data_description: Optional[Dict[str, Any]],
) -> Dict[str, Any]:
  """What makes a ranker run: every config, the data flags, and fingerprints of the data, the
  SID encoder and the SentencePiece model. A run folder is reused only for an equal identity."""
  train = dataclasses.asdict(train_config)
  train.pop("verbose")
  return run_dir.canonical(
    {
      "item_representation": item_config.to_dict(),
      "ranker": ranker_config.to_dict(),
      "train": train,
      "data": data_description or {},
      "data_fingerprint": artifacts.data_fingerprint(dataset, with_interactions=True),
      "sid_encoder": sid_encoder.fingerprint() if sid_encoder is not None else None,
      "spm_model": artifacts.bytes_digest(spm_model_proto) if spm_model_proto else None,
    }
  )


def _fit(
  model,
  train_ds,
  val_ds,
  train_config: TrainConfig,
  output_dir: str,
  extra=(),
  steps_per_epoch=None,
  validation_steps=None,
):
  """`model.fit` with early stopping, BackupAndRestore, TensorBoard, the epoch log, the NaN
  guard and `extra` callbacks (last); returns (EpochLog, seconds)."""
  log = run_dir.EpochLog(output_dir, run_dir.previous_epochs(output_dir))
  callbacks = [
    distribute.non_finite_guard(model.distribute_strategy),
    tf.keras.callbacks.EarlyStopping(
      monitor="val_auc", mode="max", patience=train_config.patience, restore_best_weights=True
    ),
    tf.keras.callbacks.BackupAndRestore(os.path.join(output_dir, run_dir.BACKUP_DIR)),
    log,
    tf.keras.callbacks.TensorBoard(os.path.join(output_dir, "logs"), profile_batch=0),
    *extra,
  ]
  start = time.perf_counter()
  model.fit(
    train_ds,
    validation_data=val_ds,
    epochs=train_config.epochs,
    steps_per_epoch=steps_per_epoch,
    validation_steps=validation_steps,
    callbacks=callbacks,
    verbose=train_config.verbose,
  )
  return log, time.perf_counter() - start


def fit_and_evaluate(
  dataset: schema.Dataset,
  split: splits.Split,
  item_config: schemes.ItemRepresentationConfig,
  ranker_config: ranker_lib.RankerConfig,
  train_config: TrainConfig,
  output_dir: str,
  sid_encoder: Optional[tf.keras.layers.Layer] = None,
  spm_model_proto: Optional[bytes] = None,
  data_description: Optional[Dict[str, Any]] = None,
  save_model: bool = True,
  on_mismatch: str = "refuse",
  callbacks: Sequence[tf.keras.callbacks.Callback] = (),
  strategy: Optional[tf.distribute.Strategy] = None,
) -> Dict[str, Any]:
  """Trains one ranker, scores validation and test, writes DIR's outputs; returns the metrics
  dict.

  A folder that already holds this finished run is reused as is; an unfinished one resumes; one
  made with other settings raises `run_dir.RunMismatchError` (`on_mismatch="refuse"`) or is
  cleared and retrained (`"replace"`); see `trainers.run_dir`. `callbacks` are added to
  `model.fit`'s, after the job's own. `strategy` (`trainers.distribute`; default: none) is the
  tf.distribute strategy the ranker is built and trained under.

  Raises:
    run_dir.RunMismatchError: see above.
    run_dir.NonFiniteLossError: the loss became NaN or Inf (nothing is written as done).
  """
  identity = run_identity(
    dataset, item_config, ranker_config, train_config, sid_encoder, spm_model_proto,
    data_description,
  )  # fmt: skip
  done = run_dir.prepare(output_dir, identity, on_mismatch)
  if done is not None:
    print(f"{output_dir} already holds this finished run; reusing it")
    return done
  val_split = validation_split(split)
  bs = train_config.batch_size
  cache = catalogue_cache(dataset, item_config, sid_encoder, spm_model_proto)

  def make_train():
    return make_dataset(dataset, val_split.train, ranker_config, bs, True, train_config.seed, cache)

  train_ds = make_train()
  val_ds = make_dataset(dataset, val_split.eval, ranker_config, 2048, item_cache=cache)
  first = next(iter(train_ds))
  strategy = strategy or tf.distribute.get_strategy()
  inputs = distribute.fit_inputs(strategy, train_ds, val_ds, make_train, len(val_split.train), bs)

  def new_model():
    with strategy.scope():
      tf.keras.utils.set_random_seed(train_config.seed)
      model = read_cache(
        build_ranker(item_config, ranker_config, sid_encoder, spm_model_proto), cache
      )
      distribute.prepare_model(model)
      model.compile(optimizer=distribute.adam(train_config.learning_rate, strategy))
      model({k: first[k] for k in model.input_keys})  # builds it (BackupAndRestore needs variables)
    return model

  def fit(model):
    return _fit(
      model,
      inputs.train,
      inputs.validation,
      train_config,
      output_dir,
      callbacks,
      inputs.steps_per_epoch,
      inputs.validation_steps,
    )

  model = new_model()
  resuming = tf.io.gfile.exists(os.path.join(output_dir, run_dir.BACKUP_DIR))
  try:
    log, train_time = fit(model)
  except run_dir.NonFiniteLossError:
    raise
  except (ValueError, IndexError, tf.errors.OpError) as e:
    if not resuming:
      raise
    print(f"{output_dir}: the backup cannot be restored ({type(e).__name__}: {e}); starting over")
    run_dir.discard_backup(output_dir)
    model = new_model()
    log, train_time = fit(model)
  history = log.history()
  epochs_run = len(log.epochs)
  second = ranker_config.second_label_name
  known_fit = clicked_users(val_split.train)
  val_scores = predict(model, val_ds)
  test_scores = predict(
    model, make_dataset(dataset, split.eval, ranker_config, 2048, item_cache=cache)
  )
  test_slices = row_slices(dataset, split.eval, split.train)
  result = {
    "identity": identity,
    "item_representation": item_config.to_dict(),
    "ranker": ranker_config.to_dict(),
    "train": dataclasses.asdict(train_config),
    "data": data_description or {},
    "test": evaluate(split.eval, test_scores, second, clicked_users(split.train), test_slices),
    "validation": evaluate(
      val_split.eval,
      val_scores,
      second,
      known_fit,
      row_slices(dataset, val_split.eval, val_split.train),
    ),
    "rows": {
      "fit": len(val_split.train),
      "validation": len(val_split.eval),
      "test": len(split.eval),
    },
    "table_rows": int(getattr(model.item_representation, "num_rows", 0) or 0),
    "train_time_s": train_time,
    "epochs_run": epochs_run,
    "train_examples_per_s": len(val_split.train) * max(epochs_run, 1) / max(train_time, 1e-9),
    "history": history,
  }
  io_utils.write_npz(
    os.path.join(output_dir, "predictions.npz"),
    ctr=test_scores[ranker_lib.CTR],
    second=test_scores[second],
    click=split.eval["click"].to_numpy(np.float32),
    user_id=np.asarray(split.eval["user_id"].astype(str).to_numpy(), dtype=str),
    cold=split.eval["cold"].to_numpy(bool),
    known_user=np.isin(split.eval["user_id"].astype(str), clicked_users(split.train)),
    band=test_slices["band"],
    age_s=test_slices["age_s"],
  )
  if save_model:
    save_ranker(model, output_dir, item_config, dataset.embedding_dim, spm_model_proto)
  io_utils.write_json(os.path.join(output_dir, run_dir.METRICS_FILE), result)
  run_dir.discard_backup(output_dir)
  return result


def save_ranker(
  model: ranker_lib.Ranker,
  output_dir: str,
  item_config: schemes.ItemRepresentationConfig,
  content_dim: int,
  spm_proto: Optional[bytes] = None,
) -> None:
  """Writes checkpoint/, assets/spm.model and ranker_config.json (the Keras config of the ranker,
  its inputs and outputs), each atomically; `load_ranker` rebuilds the ranker from them."""
  with io_utils.atomic_dir(os.path.join(output_dir, CHECKPOINT_DIR)) as tmp:
    tf.train.Checkpoint(model=model).write(os.path.join(tmp, "ckpt"))
  if spm_proto is not None:
    io_utils.write_bytes(os.path.join(output_dir, "assets", SPM_FILE), spm_proto)
  with sid_item.reading(model.item_representation, sid_item.CONTENT):  # The serving inputs.
    specs = model.input_specs(content_dim)
  config = {
    "format_version": FORMAT_VERSION,
    "model": tf.keras.layers.serialize(model),
    "item_representation": item_config.to_dict(),
    "content_dim": int(content_dim),
    "inputs": {k: {"dtype": s.dtype.name, "shape": s.shape.as_list()} for k, s in specs.items()},
    "outputs": list(model.prediction_names),
    "spm_model": os.path.join("assets", SPM_FILE) if spm_proto is not None else None,
  }
  io_utils.write_json(os.path.join(output_dir, CONFIG_FILE), config)


def with_spm_model(config: Any, proto: Optional[bytes]) -> Any:
  """`config` with `model_proto` added to every SentencePiece tokenizer's config (the proto is kept
  out of layer configs, as TF Text keeps it out; it travels as an asset file)."""
  if isinstance(config, list):
    return [with_spm_model(v, proto) for v in config]
  if not isinstance(config, dict):
    return config
  out = {k: with_spm_model(v, proto) for k, v in config.items()}
  if str(out.get("class_name", "")).endswith("SidSentencePiece") and isinstance(
    out.get("config"), dict
  ):
    if proto is None:
      raise ValueError("The ranker has a SentencePiece tokenizer but no assets/spm.model.")
    out["config"] = dict(out["config"], model_proto=proto)
  return out


def sample_features(ranker: ranker_lib.Ranker, content_dim: int) -> Dict[str, tf.Tensor]:
  """One all-zeros row of every input `ranker` reads (builds its weights)."""
  specs = ranker.input_specs(content_dim)
  return {
    k: tf.zeros([1, *spec.shape[1:]], spec.dtype)
    if spec.dtype != tf.string
    else tf.fill([1, *spec.shape[1:]], "0")
    for k, spec in specs.items()
  }


def read_config(ranker_dir: str) -> Dict[str, Any]:
  """`ranker_config.json` of a trained ranker.

  Raises:
    FileNotFoundError: if it is missing.
    ValueError: if it is of another format version.
  """
  path = os.path.join(ranker_dir, CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"No trained ranker in {ranker_dir!r}: {path} is missing.")
  try:
    with tf.io.gfile.GFile(path) as f:
      config = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"{path} is not readable JSON (truncated or corrupt): {e}") from e
  if config.get("format_version") != FORMAT_VERSION:
    raise ValueError(
      f"{path} has format_version={config.get('format_version')}; this version reads "
      f"{FORMAT_VERSION}. Retrain the ranker."
    )
  return config


def content_dim(ranker_dir: str) -> int:
  """D, the content-embedding width the trained ranker in `ranker_dir` reads."""
  return int(read_config(ranker_dir)["content_dim"])


def load_ranker(ranker_dir: str) -> ranker_lib.Ranker:
  """Rebuilds the trained ranker in `ranker_dir` from its config and checkpoint.

  Raises:
    FileNotFoundError: if `ranker_config.json` or the checkpoint is missing.
    ValueError: if the config is of another format version.
  """
  config = read_config(ranker_dir)
  proto = None
  if config.get("spm_model"):
    with tf.io.gfile.GFile(os.path.join(ranker_dir, config["spm_model"]), "rb") as f:
      proto = f.read()
  model = tf.keras.layers.deserialize(with_spm_model(config["model"], proto))
  model(sample_features(model, config["content_dim"]))
  try:
    tf.train.Checkpoint(model=model).read(
      os.path.join(ranker_dir, CHECKPOINT_DIR, "ckpt")
    ).expect_partial().assert_existing_objects_matched()
  except (tf.errors.OpError, ValueError, IndexError, AssertionError) as e:
    raise ValueError(
      f"Cannot restore the ranker weights in {os.path.join(ranker_dir, CHECKPOINT_DIR)} "
      f"({type(e).__name__}: {str(e)[:200]}); the checkpoint is truncated or corrupt: retrain."
    ) from e
  return model


def format_metrics(result: Dict[str, Any]) -> str:
  lines = ["slice              rows    AUC     GAUC"]
  for name, m in result["test"].items():
    lines.append(f"{name:16s} {m['rows']:6d}  {m['auc']:.4f}  {metrics_lib.format_gauc(m)}")
  lines.append(
    f"train time {result['train_time_s']:.1f}s, {result['epochs_run']} epochs, "
    f"{result['train_examples_per_s']:.0f} examples/s"
  )
  return "\n".join(lines)
