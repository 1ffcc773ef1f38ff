"""Library behind `trainers.train_ranker`: train, evaluate, save and reload one ranker.

`fit_and_evaluate` is what the job, `trainers.experiment` and `trainers.pipeline` call: it carves a
validation slice from the training period with the same split protocol, trains with `model.fit`
(early stopping on validation AUC, BackupAndRestore, TensorBoard when installed), scores the
validation and test slices and writes the run directory (layout in `trainers.train_ranker`).
`load_ranker` rebuilds a saved ranker with its weights.
"""

import dataclasses
import json
import os
import shutil
import time
from typing import Any, Dict, Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from features import history, io_utils, schema, splits, spm_training
from model import item_representation as item_rep_lib
from model import metrics as metrics_lib
from model import ranker as ranker_lib
from model import rqvae as rqvae_lib
from model import semantic_id_encoder

Scheme = item_rep_lib.Scheme
SPM_FILE = "spm.model"


@dataclasses.dataclass
class TrainConfig:
  """How one ranker is trained.

  Attributes:
    epochs: int. Most epochs (early stopping usually ends sooner). Defaults to 4.
    batch_size: int. Defaults to 512.
    learning_rate: float. Adam. Defaults to 3e-3.
    patience: int. Epochs without validation-AUC improvement before stopping. Defaults to 1.
    seed: int. Initialisation and shuffling seed. Defaults to 0.
    verbose: int. Keras progress (0 silent, 1 bar, 2 one line per epoch). Defaults to 1.
  """

  epochs: int = 4
  batch_size: int = 512
  learning_rate: float = 3e-3
  patience: int = 1
  seed: int = 0
  verbose: int = 1


@dataclasses.dataclass
class SidConfig:
  """The on-the-fly RQ-VAE (used when no `--rqvae_dir` is given); small-corpus defaults
  (DESIGN.md)."""

  num_levels: int = 3
  codebook_size: int = 64
  latent_dim: int = 64
  epochs: int = 20
  batch_size: int = 256
  seed: int = 0
  # Split reset (0.3) rather than the paper's 1.0: more codes used and more unique SIDs (README).
  reset_interpolation: float = 0.3


def validation_split(split: splits.Split) -> splits.Split:
  """Carves a validation split out of `split.train` with the same protocol and parameters."""
  params = {k: v for k, v in split.params.items() if v is not None}
  if split.method is splits.SplitMethod.GLOBAL_TIME:
    params.pop("split_time", None)
    return splits.global_time_split(split.train, **params)
  return splits.new_items_split(split.train, **params)


def train_rqvae(dataset: schema.Dataset, config: SidConfig, verbose: int = 0) -> rqvae_lib.RQVAE:
  """Trains a small RQ-VAE on every item's content embedding (content only, no labels)."""
  tf.keras.utils.set_random_seed(config.seed)
  model = rqvae_lib.build_rqvae(
    rqvae_lib.RQVAEConfig(
      input_dim=dataset.embedding_dim,
      latent_dim=config.latent_dim,
      num_levels=config.num_levels,
      codebook_size=config.codebook_size,
      reset_interpolation=config.reset_interpolation,
      seed=config.seed,
    )
  )
  data = tf.data.Dataset.from_tensor_slices(dataset.embeddings.astype(np.float32))
  data = data.shuffle(len(dataset.embeddings), seed=config.seed).batch(config.batch_size)
  model.fit(data, epochs=config.epochs, verbose=verbose)
  return model


def impressions_per_item(dataset: schema.Dataset, interactions: pd.DataFrame) -> np.ndarray:
  """Impression counts aligned with `dataset.items` rows."""
  rows = dataset.item_index(interactions["item_id"].to_numpy())
  return np.bincount(rows[rows >= 0], minlength=dataset.n_items).astype(np.int64)


def train_spm(codes: np.ndarray, weights: np.ndarray, codebook_size: int, vocab_size: int) -> bytes:
  """A SentencePiece model over SIDs weighted by impressions, vocabulary budget `vocab_size`."""
  floor = codes.shape[1] * codebook_size + 1
  config = spm_training.SpmTrainingConfig(vocab_size=max(vocab_size, floor))
  return spm_training.train_sid_spm(codes, weights, codebook_size, config)


def build_ranker(
  item_config: item_rep_lib.ItemRepresentationConfig,
  ranker_config: ranker_lib.RankerConfig,
  sid_encoder: Optional[tf.keras.layers.Layer] = None,
  spm_model_proto: Optional[bytes] = None,
) -> ranker_lib.Ranker:
  """The ranker for `item_config` (the factory picks the representation)."""
  representation = item_rep_lib.create(
    item_config, sid_encoder=sid_encoder, spm_model_proto=spm_model_proto
  )
  return ranker_lib.Ranker(representation, ranker_config, name="ranker")


def make_dataset(dataset, frame, ranker_config, batch_size, shuffle=False, seed=0):
  h = ranker_config.history_length if ranker_config.use_history else None
  return history.make_tf_dataset(dataset, frame, batch_size, h, shuffle=shuffle, seed=seed)


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


def evaluate(frame: pd.DataFrame, scores: Dict[str, np.ndarray], second_name: str, known_users):
  """Slice metrics of one scored frame (`cold` column marks cold rows)."""
  labels = frame["click"].to_numpy(np.float64)
  users = frame["user_id"].astype(str).to_numpy()
  cold = frame["cold"].to_numpy(bool)
  out = metrics_lib.slice_metrics(labels, scores[ranker_lib.CTR], users, cold)
  known = np.isin(users, known_users)
  for name, mask in (("cold_known_user", cold & known), ("cold_new_user", cold & ~known)):
    y, s, u = labels[mask], scores[ranker_lib.CTR][mask], users[mask]
    out[name] = {
      "auc": metrics_lib.auc(y, s),
      "gauc": metrics_lib.gauc(y, s, u) if mask.any() else float("nan"),
      "rows": int(mask.sum()),
    }
  second = frame["second_label"].to_numpy(np.float64)
  for name, mask in metrics_lib.slice_masks(cold).items():
    err = scores[second_name][mask] - second[mask]
    out[name][f"{second_name}_rmse"] = (
      float(np.sqrt(np.mean(err**2))) if mask.any() else float("nan")
    )
  return out


def tensorboard_available() -> bool:
  """Whether the `tensorboard` package (needed by the TensorBoard callback) is installed."""
  try:
    import tensorboard  # noqa: F401, PLC0415
  except ImportError:
    print("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
    return False
  return True


def fit_and_evaluate(
  dataset: schema.Dataset,
  split: splits.Split,
  item_config: item_rep_lib.ItemRepresentationConfig,
  ranker_config: ranker_lib.RankerConfig,
  train_config: TrainConfig,
  output_dir: str,
  sid_encoder: Optional[tf.keras.layers.Layer] = None,
  spm_model_proto: Optional[bytes] = None,
  data_description: Optional[Dict[str, Any]] = None,
  save_model: bool = True,
) -> Dict[str, Any]:
  """Trains one ranker, scores validation and test, writes DIR's outputs; returns the metrics
  dict."""
  os.makedirs(output_dir, exist_ok=True)
  tf.keras.utils.set_random_seed(train_config.seed)
  val_split = validation_split(split)
  model = build_ranker(item_config, ranker_config, sid_encoder, spm_model_proto)
  model.compile(optimizer=tf.keras.optimizers.Adam(train_config.learning_rate))
  bs = train_config.batch_size
  train_ds = make_dataset(dataset, val_split.train, ranker_config, bs, True, train_config.seed)
  val_ds = make_dataset(dataset, val_split.eval, ranker_config, 2048)
  first = next(iter(train_ds))
  model({k: first[k] for k in model.input_keys})  # builds it (BackupAndRestore needs the variables)
  callbacks = [
    tf.keras.callbacks.EarlyStopping(
      monitor="val_auc", mode="max", patience=train_config.patience, restore_best_weights=True
    ),
    tf.keras.callbacks.BackupAndRestore(os.path.join(output_dir, "backup")),
  ]
  if tensorboard_available():
    callbacks.append(
      tf.keras.callbacks.TensorBoard(os.path.join(output_dir, "logs"), profile_batch=0)
    )
  start = time.perf_counter()
  fit = model.fit(
    train_ds,
    validation_data=val_ds,
    epochs=train_config.epochs,
    callbacks=callbacks,
    verbose=train_config.verbose,
  )
  train_time = time.perf_counter() - start
  epochs_run = len(fit.history.get("loss", []))
  second = ranker_config.second_label_name
  known_fit = clicked_users(val_split.train)
  val_scores = predict(model, val_ds)
  test_scores = predict(model, make_dataset(dataset, split.eval, ranker_config, 2048))
  result = {
    "item_representation": item_config.to_dict(),
    "ranker": ranker_config.to_dict(),
    "train": dataclasses.asdict(train_config),
    "data": data_description or {},
    "test": evaluate(split.eval, test_scores, second, clicked_users(split.train)),
    "validation": evaluate(val_split.eval, val_scores, second, known_fit),
    "rows": {
      "fit": len(val_split.train),
      "validation": len(val_split.eval),
      "test": len(split.eval),
    },
    "table_rows": int(getattr(model.item_representation, "num_rows", 0) or 0),
    "train_time_s": train_time,
    "epochs_run": epochs_run,
    "train_examples_per_s": len(val_split.train) * max(epochs_run, 1) / max(train_time, 1e-9),
    "history": {k: [float(x) for x in v] for k, v in fit.history.items()},
  }
  with io_utils.atomic_path(os.path.join(output_dir, "predictions.npz")) as tmp:
    with open(tmp, "wb") as f:
      np.savez(
        f,
        ctr=test_scores[ranker_lib.CTR],
        second=test_scores[second],
        click=split.eval["click"].to_numpy(np.float32),
        user_id=np.asarray(split.eval["user_id"].astype(str).to_numpy(), dtype=str),
        cold=split.eval["cold"].to_numpy(bool),
        known_user=np.isin(split.eval["user_id"].astype(str), clicked_users(split.train)),
      )
  if save_model:
    save_ranker(
      model,
      output_dir,
      item_config,
      ranker_config,
      dataset.embedding_dim,
      spm_model_proto,
      data_description,
    )
  io_utils.write_json(os.path.join(output_dir, "metrics.json"), result)
  shutil.rmtree(os.path.join(output_dir, "backup"), ignore_errors=True)
  return result


def save_ranker(model, output_dir, item_config, ranker_config, content_dim, spm_proto, data):
  """Writes saved_model/, checkpoint/, assets/spm.model and ranker_config.json (see module doc)."""
  for name in ("saved_model", "checkpoint"):
    shutil.rmtree(os.path.join(output_dir, name + ".tmp"), ignore_errors=True)
  spec = ranker_lib.save(model, os.path.join(output_dir, "saved_model.tmp"), content_dim)
  tf.train.Checkpoint(model=model).write(os.path.join(output_dir, "checkpoint.tmp", "ckpt"))
  for name in ("saved_model", "checkpoint"):
    shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
    os.replace(os.path.join(output_dir, name + ".tmp"), os.path.join(output_dir, name))
  if spm_proto is not None:
    os.makedirs(os.path.join(output_dir, "assets"), exist_ok=True)
    with io_utils.atomic_path(os.path.join(output_dir, "assets", SPM_FILE)) as tmp:
      with open(tmp, "wb") as f:
        f.write(spm_proto)
  encoder = getattr(model.item_representation, "sid_encoder", None)
  config = {
    "format_version": 1,
    "item_representation": item_config.to_dict(),
    "ranker": ranker_config.to_dict(),
    "sid_encoder": encoder.get_config() if encoder is not None else None,
    "content_dim": int(content_dim),
    "inputs": {k: {"dtype": s.dtype.name, "shape": s.shape.as_list()} for k, s in spec.items()},
    "outputs": [ranker_lib.CTR, ranker_config.second_label_name],
    "spm_model": os.path.join("assets", SPM_FILE) if spm_proto is not None else None,
    "data": data or {},
  }
  io_utils.write_json(os.path.join(output_dir, "ranker_config.json"), config)


def load_ranker(ranker_dir: str) -> ranker_lib.Ranker:
  """Rebuilds the trained ranker in `ranker_dir` (written by `fit_and_evaluate`) with its weights.

  Raises:
    FileNotFoundError: if `ranker_config.json` or the checkpoint is missing.
  """
  path = os.path.join(ranker_dir, "ranker_config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"No trained ranker in {ranker_dir!r}: {path} is missing.")
  with open(path) as f:
    config = json.load(f)
  encoder = None
  if config.get("sid_encoder"):
    encoder = semantic_id_encoder.SemanticIdEncoder.from_config(config["sid_encoder"])
    encoder.build(tf.TensorShape([None, config["content_dim"]]))
  proto = None
  if config.get("spm_model"):
    with open(os.path.join(ranker_dir, config["spm_model"]), "rb") as f:
      proto = f.read()
  ranker_config = ranker_lib.RankerConfig.from_dict(config["ranker"])
  model = build_ranker(
    item_rep_lib.ItemRepresentationConfig.from_dict(config["item_representation"]),
    ranker_config,
    encoder,
    proto,
  )
  features = dummy_features(ranker_config, config["content_dim"])
  model({k: features[k] for k in model.input_keys})
  tf.train.Checkpoint(model=model).read(
    os.path.join(ranker_dir, "checkpoint", "ckpt")
  ).assert_existing_objects_matched()
  return model


def dummy_features(
  ranker_config: ranker_lib.RankerConfig, content_dim: int
) -> Dict[str, tf.Tensor]:
  h = ranker_config.history_length
  return {
    "user_id": tf.constant(["0"]),
    "item_id": tf.constant(["0"]),
    "content_embedding": tf.zeros([1, content_dim]),
    "history_item_id": tf.fill([1, h], ""),
    "history_content_embedding": tf.zeros([1, h, content_dim]),
    "history_mask": tf.zeros([1, h]),
  }


def uses_spm(item_config: item_rep_lib.ItemRepresentationConfig) -> bool:
  return item_config.scheme is Scheme.SPM or (
    item_config.scheme is Scheme.HYBRID and item_config.hybrid_sid_scheme is Scheme.SPM
  )


def format_metrics(result: Dict[str, Any]) -> str:
  lines = ["slice              rows    AUC     GAUC"]
  for name, m in result["test"].items():
    lines.append(f"{name:16s} {m['rows']:6d}  {m['auc']:.4f}  {m['gauc']:.4f}")
  lines.append(
    f"train time {result['train_time_s']:.1f}s, {result['epochs_run']} epochs, "
    f"{result['train_examples_per_s']:.0f} examples/s"
  )
  return "\n".join(lines)
