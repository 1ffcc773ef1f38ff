"""The project's data as `tf.Example` TFRecords, and back, with errors that name the feature.

Two kinds of records, with the names of `features.feature_spec` (and `features.schema` for the
item columns that are no model input):

  items         `item_id` int64, `content_embedding` float[D], `first_seen` int64 (optional)
  interactions  `user_id` bytes, `item_id` int64, `timestamp` int64, `click` int64 (0/1),
                `second_label` float, `cold` int64 (optional: 1 for an evaluation row whose item
                the split holds out as new; computed from the training rows when absent)

`write_dataset` writes a dataset and its split as ImportExampleGen input: `items/items.tfrecord`,
`interactions/train/...` and `interactions/eval/...`. A file whose records are unchanged is left
untouched, so its modification time (which ImportExampleGen fingerprints) stays the same and a
re-run is served from the cache. `read_items` and `read_interactions` read such records (or any
ExampleGen output, gzipped or not) with tf.data; every required feature must be present in every
record with the expected width, else `ExamplesError` names the feature, the value and the record.
"""

import dataclasses
import functools
import hashlib
import os
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import tensorflow as tf

from features import feature_spec, io_utils, schema, splits

ITEM_ID = feature_spec.ITEM_ID
CONTENT_EMBEDDING = feature_spec.CONTENT_EMBEDDING
USER_ID = feature_spec.USER_ID
TIMESTAMP = feature_spec.TIMESTAMP
CLICK = feature_spec.CLICK
SECOND_LABEL = feature_spec.SECOND_LABEL
FIRST_SEEN = schema.ITEM_COLUMNS[1]
COLD = "cold"  # the column `features.splits` adds to a split's evaluation rows

ITEMS_DIR = "items"
INTERACTIONS_DIR = "interactions"
TRAIN = "train"
EVAL = "eval"
_BATCH = 4096


class ExamplesError(ValueError):
  """Raised when Examples lack a feature, or carry it with the wrong type or width."""


@dataclasses.dataclass(frozen=True)
class Column:
  """One feature to read.

  Attributes:
    dtype: tf.DType. tf.int64, tf.float32 or tf.string.
    width: Optional int. Values per record; None for "the same in every record" (a vector whose
      width the data decides). Defaults to 1.
    required: bool. Absent from every record is an error; otherwise it reads as None. A column
      present in some records but not in others is always an error. Defaults to True.
  """

  dtype: tf.DType
  width: Optional[int] = 1
  required: bool = True


# --------------------------------------------------------------------------------------------
# Writing.


def _feature(values: np.ndarray) -> tf.train.Feature:
  values = np.atleast_1d(values)
  if values.dtype.kind == "f":
    return tf.train.Feature(float_list=tf.train.FloatList(value=values.tolist()))
  if values.dtype.kind in "iub":
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values.astype(np.int64).tolist()))
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(v).encode() for v in values]))


def serialize(columns: Mapping[str, np.ndarray]) -> Iterable[bytes]:
  """One serialized `tf.Example` per row of equally long arrays ([N] or [N, width])."""
  names = sorted(columns)
  n = len(next(iter(columns.values()))) if columns else 0
  for row in range(n):
    features = {name: _feature(columns[name][row]) for name in names}
    example = tf.train.Example(features=tf.train.Features(feature=features))
    yield example.SerializeToString(deterministic=True)


def _digest(path: str) -> Optional[str]:
  if not tf.io.gfile.exists(path):
    return None
  digest = hashlib.sha256()
  with tf.io.gfile.GFile(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def write_records(path: str, records: Iterable[bytes]) -> bool:
  """Writes a TFRecord file atomically unless `path` already holds the same bytes (then the file
  is left untouched, so ExampleGen's input fingerprint and its cache entry stay valid).

  Returns:
    True when the file was (re)written, False when it was already up to date.
  """
  with io_utils.atomic_path(path, keep_identical=True) as temp:
    with tf.io.TFRecordWriter(temp) as writer:
      for record in records:
        writer.write(record)
    changed = not io_utils.same_bytes(temp, path)
  return changed


def item_columns(dataset: schema.Dataset) -> Dict[str, np.ndarray]:
  return {
    ITEM_ID: dataset.items["item_id"].to_numpy(np.int64),
    FIRST_SEEN: dataset.items["first_seen"].to_numpy(np.int64),
    CONTENT_EMBEDDING: np.asarray(dataset.embeddings, np.float32),
  }


def interaction_columns(frame: pd.DataFrame) -> Dict[str, np.ndarray]:
  columns = {
    USER_ID: frame["user_id"].astype(str).to_numpy(),
    ITEM_ID: frame["item_id"].to_numpy(np.int64),
    TIMESTAMP: frame["timestamp"].to_numpy(np.int64),
    CLICK: frame["click"].to_numpy(np.int64),
    SECOND_LABEL: frame["second_label"].to_numpy(np.float32),
  }
  if COLD in frame.columns:
    columns[COLD] = frame[COLD].to_numpy(np.int64)
  return columns


def write_dataset(dataset: schema.Dataset, split: splits.Split, data_dir: str) -> Dict[str, bool]:
  """Writes `dataset`'s items and `split`'s rows under `data_dir` (module docstring).

  Returns:
    {relative path: whether it was rewritten}.
  """
  files = {
    os.path.join(ITEMS_DIR, "items.tfrecord"): item_columns(dataset),
    os.path.join(INTERACTIONS_DIR, TRAIN, "interactions.tfrecord"): interaction_columns(
      split.train
    ),
    os.path.join(INTERACTIONS_DIR, EVAL, "interactions.tfrecord"): interaction_columns(split.eval),
  }
  return {
    name: write_records(os.path.join(data_dir, name), serialize(columns))
    for name, columns in files.items()
  }


# --------------------------------------------------------------------------------------------
# Reading.


def list_files(patterns: Sequence[str]) -> Tuple[str, ...]:
  """Every file matching the glob `patterns` (a folder stands for everything in it), sorted."""
  files = []
  for pattern in patterns:
    if tf.io.gfile.isdir(pattern):
      pattern = os.path.join(pattern, "*")
    files.extend(tf.io.gfile.glob(pattern))
  return tuple(sorted(f for f in files if not os.path.basename(f).startswith(".")))


def _records(files: Sequence[str]) -> tf.data.Dataset:
  """The records of `files` in order; `.gz` files (ExampleGen's output) are read as GZIP."""
  datasets = [
    tf.data.TFRecordDataset(f, compression_type="GZIP" if f.endswith(".gz") else "") for f in files
  ]
  return functools.reduce(lambda a, b: a.concatenate(b), datasets)


def _feature_names(files: Sequence[str]) -> list:
  for record in _records(files).take(1):
    return sorted(tf.train.Example.FromString(record.numpy()).features.feature)
  return []


def _collect(files: Sequence[str], columns: Mapping[str, Column], what: str):
  spec = {
    name: tf.io.RaggedFeature(c.dtype, row_splits_dtype=tf.int64) for name, c in columns.items()
  }
  lengths = {name: [] for name in columns}
  values = {name: [] for name in columns}
  try:
    for batch in _records(files).batch(_BATCH):
      parsed = tf.io.parse_example(batch, spec)
      for name in columns:
        lengths[name].append(parsed[name].row_lengths().numpy())
        values[name].append(parsed[name].flat_values.numpy())
  except tf.errors.InvalidArgumentError as e:
    raise ExamplesError(f"{what}: {e.message} (files {list(files)[:3]})") from e
  lengths = {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in lengths.items()}
  values = {k: np.concatenate(v) if v else np.zeros(0) for k, v in values.items()}
  return lengths, values


def _check_width(name: str, column: Column, lengths: np.ndarray, ids, what: str, files):
  """The width every record has; raises ExamplesError naming the feature and the bad value."""
  n = len(lengths)
  present = lengths > 0
  if not present.any():
    if not column.required:
      return None
    raise ExamplesError(
      f"{what}: no record has the feature '{name}' ({column.dtype.name}"
      f"{'' if column.width is None else f'[{column.width}]'}); the records carry "
      f"{_feature_names(files)}."
    )
  if not present.all():
    row = int(np.flatnonzero(~present)[0])
    raise ExamplesError(
      f"{what}: feature '{name}' is missing from {int((~present).sum())} of {n} records, "
      f"e.g. record {row}{_which(ids, row)}."
    )
  width = column.width if column.width is not None else int(lengths[0])
  wrong = lengths != width
  if wrong.any():
    row = int(np.flatnonzero(wrong)[0])
    raise ExamplesError(
      f"{what}: feature '{name}' has width {int(lengths[row])} in record {row}"
      f"{_which(ids, row)}; expected {width} "
      f"({'the declared width' if column.width else 'the width of record 0'})."
    )
  return width


def _which(ids: Optional[np.ndarray], row: int) -> str:
  return f" ({ITEM_ID}={int(ids[row])})" if ids is not None and row < len(ids) else ""


def read_columns(
  patterns: Sequence[str], columns: Mapping[str, Column], what: str
) -> Dict[str, Optional[np.ndarray]]:
  """Reads `columns` from the TFRecords of `tf.Example` matching `patterns`.

  Args:
    patterns: file globs or folders (an ExampleGen split's folder, `fn_args.train_files`).
    columns: {feature name: Column}.
    what: str. What the records are, for error messages ("items Examples (split 'train')").

  Returns:
    {name: array [N] (width 1) or [N, width]}; None for an optional column no record has.

  Raises:
    ExamplesError: no file matches; a required feature is absent; a feature is missing from some
      records, has another type, or another width than the spec (or than record 0).
  """
  files = list_files(patterns)
  if not files:
    raise ExamplesError(f"{what}: no files match {list(patterns)}.")
  lengths, values = _collect(files, columns, what)
  ids = None
  if ITEM_ID in columns and (lengths[ITEM_ID] == 1).all():
    ids = values[ITEM_ID]
  out = {}
  for name, column in columns.items():
    width = _check_width(name, column, lengths[name], ids, what, files)
    if width is None:
      out[name] = None
    elif column.width == 1:
      out[name] = values[name]
    else:
      out[name] = values[name].reshape(len(lengths[name]), width)
  return out


ITEM_SPEC = {
  ITEM_ID: Column(tf.int64),
  CONTENT_EMBEDDING: Column(tf.float32, width=None),
  FIRST_SEEN: Column(tf.int64, required=False),
}
INTERACTION_SPEC = {
  USER_ID: Column(tf.string),
  ITEM_ID: Column(tf.int64),
  TIMESTAMP: Column(tf.int64),
  CLICK: Column(tf.int64),
  SECOND_LABEL: Column(tf.float32),
  COLD: Column(tf.int64, required=False),
}


def read_items(
  patterns: Sequence[str], expected_dim: Optional[int] = None, what: str = "items Examples"
) -> Tuple[pd.DataFrame, np.ndarray]:
  """(items frame with `item_id`, `first_seen`; embeddings float32[N, D]), sorted by item id.

  Args:
    patterns: file globs or folders of item records.
    expected_dim: Optional int. The width `content_embedding` must have (an RQ-VAE's D). Defaults
      to None (whatever record 0 has; every record must agree).
    what: str. For error messages.

  Raises:
    ExamplesError: a missing feature, a wrong width, or no records.
  """
  spec = dict(ITEM_SPEC)
  if expected_dim is not None:
    spec[CONTENT_EMBEDDING] = Column(tf.float32, width=int(expected_dim))
  data = read_columns(patterns, spec, what)
  if len(data[ITEM_ID]) == 0:
    raise ExamplesError(f"{what}: the files hold no records.")
  order = np.argsort(data[ITEM_ID], kind="stable")
  first_seen = data[FIRST_SEEN] if data[FIRST_SEEN] is not None else np.zeros(len(order), np.int64)
  items = pd.DataFrame({"item_id": data[ITEM_ID][order], "first_seen": first_seen[order]})
  return items, np.ascontiguousarray(data[CONTENT_EMBEDDING][order], np.float32)


def read_interactions(patterns: Sequence[str], what: str = "interactions Examples") -> pd.DataFrame:
  """The interaction records as a frame in the canonical schema (plus `cold` when recorded),
  ordered by time (ties by user and item, so the order does not depend on the files')."""
  data = read_columns(patterns, INTERACTION_SPEC, what)
  frame = pd.DataFrame(
    {
      "user_id": np.char.decode(data[USER_ID].astype(bytes), "utf-8").astype(object),
      "item_id": data[ITEM_ID],
      "timestamp": data[TIMESTAMP],
      "click": data[CLICK].astype(np.int8),
      "second_label": data[SECOND_LABEL].astype(np.float32),
    }
  )
  if data[COLD] is not None:
    frame[COLD] = data[COLD].astype(bool)
  frame = frame.sort_values(["timestamp", "user_id", "item_id"], kind="stable")
  return frame.reset_index(drop=True)


def read_dataset(
  items: Sequence[str],
  train: Sequence[str],
  evaluation: Sequence[str],
  split_method: str = splits.SplitMethod.NEW_ITEMS.value,
  split_params: Optional[Mapping[str, float]] = None,
  expected_dim: Optional[int] = None,
  second_label_name: str = "second_label",
) -> Tuple[schema.Dataset, splits.Split]:
  """The validated `schema.Dataset` and its `splits.Split` back from item and interaction records.

  Args:
    items: globs or folders of item records.
    train: globs or folders of the training interactions.
    evaluation: globs or folders of the evaluation interactions.
    split_method: str. The protocol that made the split ("new_items" or "global_time"); the
      ranker carves its validation slice from the training rows with the same protocol.
      Defaults to "new_items".
    split_params: Optional mapping. That protocol's parameters (`splits.Split.params`). Defaults to
      its defaults.
    expected_dim: Optional int. The width `content_embedding` must have.
    second_label_name: str. What `second_label` means ("rating", "engagement").

  Raises:
    ExamplesError: records without a feature or with a wrong width.
    schema.SchemaError: data outside the canonical schema (e.g. interactions of unknown items).
  """
  item_frame, embeddings = read_items(items, expected_dim)
  train_rows = read_interactions(train, "interactions Examples (split 'train')")
  eval_rows = read_interactions(evaluation, "interactions Examples (split 'eval')")
  train_rows = train_rows.drop(columns=[COLD], errors="ignore")
  if COLD not in eval_rows.columns:
    eval_rows[COLD] = ~eval_rows["item_id"].isin(pd.Index(train_rows["item_id"].unique()))
  dataset = schema.Dataset(
    name="tfx_examples",
    items=item_frame,
    embeddings=embeddings,
    interactions=pd.concat([train_rows, eval_rows.drop(columns=[COLD])], ignore_index=True),
    second_label_name=second_label_name,
  )
  dataset, _ = schema.validate(dataset)
  cold_items = np.unique(eval_rows.loc[eval_rows[COLD], "item_id"].to_numpy())
  split = splits.Split(
    method=splits.parse_method(split_method),
    train=train_rows,
    eval=eval_rows,
    cold_item_ids=cold_items,
    params=dict(split_params or {}),
    first_seen=pd.Series(
      item_frame["first_seen"].to_numpy(), index=item_frame["item_id"].to_numpy()
    ),
  )
  return dataset, split
