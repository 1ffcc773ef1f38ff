"""Item files of the Beam SID assignment: their formats, row parsing and the dead-letter records.

The input side of `trainers.beam_assign_sids` (see its docstring for the whole job): sharded
TFRecord files of `tf.Example`s or Parquet files, each row an item with `item_id` (one int64) and
`content_embedding` (D floats). `read_items` reads a glob into chunks {item_id, embedding} of
valid rows plus a DEAD output of `dead_letter` records, one per rejected row with its
`DeadLetterReason` and source file; `write_item_files` writes items in either format (tests,
benchmarks, users converting their catalogue).
"""

import enum
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import app

from features import feature_spec, io_utils

try:
  import apache_beam as beam
  import pyarrow as pa
  import pyarrow.compute as pc
  import pyarrow.parquet as pq
except (
  ImportError
) as e:  # The core environment has no Beam (protobuf 7; see requirements-beam.txt).
  raise ImportError(
    "trainers.beam_assign_sids needs Apache Beam, which lives in the optional Beam environment: "
    "run `bash scripts/setup_beam.sh`, then `.venv-beam/bin/python -m trainers.beam_assign_sids`."
  ) from e

DEAD = "dead_letter"
COUNTERS = "beam_assign_sids"  # Beam metrics namespace of the job.


class InputFormat(enum.Enum):
  AUTO = "auto"
  TFRECORD = "tfrecord"
  PARQUET = "parquet"


class DeadLetterReason(enum.Enum):
  """Why a row got no SID (the `reason` of its dead-letter record)."""

  UNPARSEABLE = "unparseable"  # Not a serialized tf.Example.
  MISSING_ITEM_ID = "missing_item_id"
  BAD_ITEM_ID = "bad_item_id"  # Not exactly one integer.
  DUPLICATE_ITEM_ID = "duplicate_item_id"  # Every row of a repeated id is rejected.
  MISSING_EMBEDDING = "missing_embedding"
  BAD_EMBEDDING_TYPE = "bad_embedding_type"  # Not a list of floats.
  WRONG_WIDTH = "wrong_width"  # Not D values.
  NON_FINITE = "non_finite"  # NaN or Inf.


def dead_letter(reason: DeadLetterReason, detail: str, item_id=None, source=None) -> Dict[str, Any]:
  return {
    "item_id": None if item_id is None else int(item_id),
    "reason": reason.value,
    "detail": detail,
    "source": source,
  }


def _embedding_problem(values: np.ndarray, dim: int, name: str) -> Optional[Tuple]:
  if len(values) == 0:
    return DeadLetterReason.MISSING_EMBEDDING, f"`{name}` is empty"
  if len(values) != dim:
    return DeadLetterReason.WRONG_WIDTH, f"`{name}` has {len(values)} values, the RQ-VAE D={dim}"
  if not np.isfinite(values).all():
    return DeadLetterReason.NON_FINITE, f"`{name}` holds NaN or Inf"
  return None


def parse_example(raw: bytes, dim: int, id_key: str, emb_key: str):
  """(item_id, float32[D] embedding, None) for a valid serialized tf.Example, else
  (item_id or None, None, (DeadLetterReason, detail))."""
  try:
    features = tf.train.Example.FromString(raw).features.feature
  except Exception as e:  # noqa: BLE001 (protobuf's DecodeError is not public API)
    return None, None, (DeadLetterReason.UNPARSEABLE, f"not a tf.Example ({type(e).__name__})")
  ids = features[id_key] if id_key in features else None
  if ids is None or ids.WhichOneof("kind") is None:
    return None, None, (DeadLetterReason.MISSING_ITEM_ID, f"no `{id_key}` feature")
  if ids.WhichOneof("kind") != "int64_list" or len(ids.int64_list.value) != 1:
    got = f"{ids.WhichOneof('kind')} of {len(getattr(ids, ids.WhichOneof('kind')).value)}"
    return None, None, (DeadLetterReason.BAD_ITEM_ID, f"`{id_key}` must be one int64; got {got}")
  item_id = int(ids.int64_list.value[0])
  emb = features[emb_key] if emb_key in features else None
  if emb is None or emb.WhichOneof("kind") is None:
    return item_id, None, (DeadLetterReason.MISSING_EMBEDDING, f"no `{emb_key}` feature")
  if emb.WhichOneof("kind") != "float_list":
    detail = f"`{emb_key}` must be a float_list; got {emb.WhichOneof('kind')}"
    return item_id, None, (DeadLetterReason.BAD_EMBEDDING_TYPE, detail)
  values = np.asarray(emb.float_list.value, np.float32)
  problem = _embedding_problem(values, dim, emb_key)
  return (item_id, None, problem) if problem else (item_id, values, None)


def _arrow_ids(table, id_key: str) -> Tuple[np.ndarray, List[Optional[Tuple]]]:
  n = table.num_rows
  if id_key not in table.column_names:
    return np.zeros(n, np.int64), [(DeadLetterReason.MISSING_ITEM_ID, f"no `{id_key}` column")] * n
  column = table.column(id_key).combine_chunks()
  if not pa.types.is_integer(column.type):
    detail = f"`{id_key}` must be integers; the column is {column.type}"
    return np.zeros(n, np.int64), [(DeadLetterReason.BAD_ITEM_ID, detail)] * n
  valid = column.is_valid().to_numpy(zero_copy_only=False)
  ids = column.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
  problem = (DeadLetterReason.MISSING_ITEM_ID, f"`{id_key}` is null")
  return ids, [None if ok else problem for ok in valid]


def _arrow_embeddings(table, dim: int, emb_key: str) -> Tuple[np.ndarray, List[Optional[Tuple]]]:
  n = table.num_rows
  out = np.zeros((n, dim), np.float32)
  if emb_key not in table.column_names:
    return out, [(DeadLetterReason.MISSING_EMBEDDING, f"no `{emb_key}` column")] * n
  column = table.column(emb_key).combine_chunks()
  kind = column.type
  is_list = pa.types.is_list(kind) or pa.types.is_large_list(kind)
  if not (is_list or pa.types.is_fixed_size_list(kind)) or not pa.types.is_floating(
    kind.value_type
  ):
    detail = f"`{emb_key}` must be a list of floats; the column is {kind}"
    return out, [(DeadLetterReason.BAD_EMBEDDING_TYPE, detail)] * n
  valid = column.is_valid().to_numpy(zero_copy_only=False)
  lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
  rows = np.flatnonzero(valid & (lengths == dim))
  if len(rows):
    flat = pc.list_flatten(column.take(pa.array(rows))).to_numpy(zero_copy_only=False)
    out[rows] = np.asarray(flat, np.float32).reshape(len(rows), dim)
  finite = np.isfinite(out).all(axis=1)
  problems = []
  for row in range(n):
    if not valid[row]:
      problems.append((DeadLetterReason.MISSING_EMBEDDING, f"`{emb_key}` is null"))
    elif lengths[row] != dim:
      problems.append(_embedding_problem(np.zeros(lengths[row]), dim, emb_key))
    elif not finite[row]:
      problems.append((DeadLetterReason.NON_FINITE, f"`{emb_key}` holds NaN, Inf or null values"))
    else:
      problems.append(None)
  return out, problems


def parse_arrow_table(table, dim: int, id_key: str, emb_key: str):
  """(item_id int64[N], embeddings float32[N, D], problem per row: None or (reason, detail))."""
  ids, id_problems = _arrow_ids(table, id_key)
  embeddings, emb_problems = _arrow_embeddings(table, dim, emb_key)
  return ids, embeddings, [a or b for a, b in zip(id_problems, emb_problems)]


class _Parse(beam.DoFn):
  """Base of the parsers: emits valid rows as chunks {item_id, embedding} and the rest, tagged
  DEAD, as dead-letter records."""

  def __init__(self, dim: int, id_key: str, emb_key: str, chunk_rows: int):
    self.dim, self.id_key, self.emb_key, self.chunk_rows = dim, id_key, emb_key, chunk_rows

  def _emit(self, ids, embeddings, problems, sources, bad_id):
    ok = np.array([p is None for p in problems], bool)
    for row in np.flatnonzero(~ok):
      reason, detail = problems[row]
      item = None if bad_id[row] else ids[row]
      beam.metrics.Metrics.counter(COUNTERS, f"dead_letter_{reason.value}").inc()
      yield beam.pvalue.TaggedOutput(DEAD, dead_letter(reason, detail, item, sources[row]))
    rows = np.flatnonzero(ok)
    for start in range(0, len(rows), self.chunk_rows):
      part = rows[start : start + self.chunk_rows]
      yield {"item_id": ids[part].astype(np.int64), "embedding": embeddings[part]}


class ParseExamples(_Parse):
  """Batches of (file name, serialized tf.Example) -> chunks + dead letters."""

  def process(self, batch: Sequence[Tuple[str, bytes]]):
    n = len(batch)
    ids = np.zeros(n, np.int64)
    embeddings = np.zeros((n, self.dim), np.float32)
    problems, bad_id = [], np.zeros(n, bool)
    for row, (_, raw) in enumerate(batch):
      item_id, values, problem = parse_example(raw, self.dim, self.id_key, self.emb_key)
      bad_id[row] = item_id is None
      ids[row] = item_id or 0
      if values is not None:
        embeddings[row] = values
      problems.append(problem)
    yield from self._emit(ids, embeddings, problems, [name for name, _ in batch], bad_id)


class ParseArrowTables(_Parse):
  """(file name, pyarrow.Table of one row group) -> chunks + dead letters."""

  def process(self, element: Tuple[str, Any]):
    name, table = element
    ids, embeddings, problems = parse_arrow_table(table, self.dim, self.id_key, self.emb_key)
    bad_id = np.array(
      [p is not None and p[0] in (DeadLetterReason.MISSING_ITEM_ID, DeadLetterReason.BAD_ITEM_ID)
       for p in problems], bool,
    )  # fmt: skip
    yield from self._emit(ids, embeddings, problems, [name] * len(ids), bad_id)


def read_items(pipeline, pattern: str, fmt: InputFormat, parse_args: Tuple, batch_size: int):
  """Reads the item files matching `pattern` -> tagged outputs `rows` (chunks) and DEAD."""
  files = pipeline | "Pattern" >> beam.Create([pattern])
  if fmt is InputFormat.PARQUET:
    rows = files | "ReadParquet" >> beam.io.ReadAllFromParquetBatched(with_filename=True)
    parser = ParseArrowTables(*parse_args, chunk_rows=batch_size)
  else:
    records = files | "ReadTFRecord" >> beam.io.ReadAllFromTFRecord(with_filename=True)
    rows = records | "Batch" >> beam.BatchElements(batch_size, batch_size)
    parser = ParseExamples(*parse_args, chunk_rows=batch_size)
  return rows | "Parse" >> beam.ParDo(parser).with_outputs(DEAD, main="rows")


def write_item_files(
  prefix: str,
  item_ids: np.ndarray,
  embeddings: np.ndarray,
  fmt: InputFormat = InputFormat.TFRECORD,
  num_files: int = 4,
  id_key: str = feature_spec.ITEM_ID,
  emb_key: str = feature_spec.CONTENT_EMBEDDING,
) -> List[str]:
  """Writes items in this job's input format: `num_files` files PREFIX-SSSSS-of-NNNNN.tfrecord
  (one tf.Example per item) or .parquet (row groups of 16,384 items); returns their paths."""
  item_ids = np.asarray(item_ids, np.int64)
  embeddings = np.asarray(embeddings, np.float32)
  ext = "parquet" if fmt is InputFormat.PARQUET else "tfrecord"
  paths = []
  for index, rows in enumerate(np.array_split(np.arange(len(item_ids)), num_files)):
    path = f"{prefix}-{index:05d}-of-{num_files:05d}.{ext}"
    with io_utils.atomic_path(path) as tmp:
      if fmt is InputFormat.PARQUET:
        values = pa.array(embeddings[rows].reshape(-1))
        table = pa.table(
          {
            id_key: pa.array(item_ids[rows]),
            emb_key: pa.FixedSizeListArray.from_arrays(values, embeddings.shape[1]),
          }
        )
        pq.write_table(table, tmp, row_group_size=16_384)
      else:
        with tf.io.TFRecordWriter(tmp) as writer:
          for row in rows:
            feature = {
              id_key: tf.train.Feature(int64_list=tf.train.Int64List(value=[item_ids[row]])),
              emb_key: tf.train.Feature(float_list=tf.train.FloatList(value=embeddings[row])),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())
    paths.append(path)
  return paths


def resolve_format(pattern: str, fmt: str) -> Tuple[InputFormat, List[str]]:
  """(format, matched files) of `--input`; raises app.UsageError when nothing matches."""
  files = sorted(tf.io.gfile.glob(pattern))
  if not files:
    raise app.UsageError(f"--input={pattern} matches no files.")
  chosen = InputFormat(fmt)
  if chosen is InputFormat.AUTO:
    parquet = [f.endswith((".parquet", ".pq")) for f in files]
    if any(parquet) and not all(parquet):
      raise app.UsageError(
        f"--input={pattern} mixes Parquet and other files; pass --input_format or a narrower glob."
      )
    chosen = InputFormat.PARQUET if all(parquet) else InputFormat.TFRECORD
  return chosen, files
