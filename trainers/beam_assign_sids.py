r"""Assigns semantic IDs with Apache Beam: sharded item files -> a sharded SID table + manifest.

  python -m trainers.beam_assign_sids --input='data/items-*.tfrecord' --output=runs/sids \
      --rqvae_dir=runs/rqvae/model [--collision_level] [--overwrite] \
      --direct_num_workers=2 --direct_running_mode=multi_processing   # any Beam pipeline options

The Beam counterpart of `trainers.assign_sids`, for catalogues that do not fit one machine; its
codes equal that job's exactly (both run `model.semantic_id_encoder.assign_codes`, the one SID
loop, with the same padded batch size). Flags this job does not define are Beam pipeline options
(`--runner`, `--direct_num_workers`, `--project`, ...); they may also follow a `--`.

Input (`--input`, a glob; `--input_format` auto-detects from the file names): sharded TFRecord files
of `tf.Example`s (gzip allowed) or Parquet files, each row an item: `item_id` one int64 and
`content_embedding` D floats (`--id_feature`, `--embedding_feature` rename them).

Pipeline: read (each file split across workers) -> batch (`BatchElements`) -> parse and validate ->
encode (a `DoFn` whose `setup` loads the frozen RQ-VAE once per worker and checks its fingerprint)
-> group by shard of the item id (repeated item ids found here) -> [--collision_level: group by
full SID (a hash of it), number the items of each SID by ascending item id, group by shard again]
-> write each shard -> write the manifest. A row with a missing or malformed id or embedding goes to
the dead-letter output with its reason (`DeadLetterReason`) and source file, never dropped silently.

Output (`--output=PREFIX`; paths may be gs://, hdfs://, ...):
  PREFIX-RUN-SSSSS-of-NNNNN.npz           one SID table per shard (`features.sid_table` format,
                                          sorted by item id, its own checksum)
  PREFIX-RUN.dead_letter-SSSSS-of-NNNNN.jsonl   rejected rows: {item_id, reason, detail, source}
  PREFIX.manifest.json                    written last (atomically), by the pipeline itself: RQ-VAE
                                          fingerprint, L, K, item count, one entry per shard (file,
                                          items, checksum), dead-letter count by reason and files
  PREFIX.stats.json                       SID quality (as trainers.assign_sids), after the run
RUN is a fresh id per run. A reader follows the manifest, so it never sees a half-written table:
`features.sid_table.read_sid_table(PREFIX)` reads the shards as one table wherever a SID table is
read (e.g. `trainers.train_spm --sids=PREFIX`). An existing table at PREFIX is refused; with
--overwrite the new run's shards are written next to the old ones, the manifest is swapped in (one
atomic rename: readers see the old table or the new one) and the old run's files are then deleted.
"""

import enum
import json
import os
import re
import sys
import time
import uuid
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from features import feature_spec, io_utils, sid_table
from model import rqvae, rqvae_metrics, semantic_id_encoder, sid_collisions
from trainers import cli

try:
  import apache_beam as beam
  import pyarrow as pa
  import pyarrow.compute as pc
  import pyarrow.parquet as pq
  from apache_beam.options import pipeline_options
except (
  ImportError
) as e:  # The core environment has no Beam (protobuf 7; see requirements-beam.txt).
  raise ImportError(
    "trainers.beam_assign_sids needs Apache Beam, which lives in the optional Beam environment: "
    "run `bash scripts/setup_beam.sh`, then `.venv-beam/bin/python -m trainers.beam_assign_sids`."
  ) from e

FLAGS = flags.FLAGS
DEAD = "dead_letter"
STATS_SUFFIX = ".stats.json"
_COUNTERS = "beam_assign_sids"
_RUN_ID = re.compile(r"[0-9a-f]{12}")


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


def define_flags() -> None:
  """The job's flags (defined when run as a program, so importing this module defines none)."""
  flags.DEFINE_string("input", None, "Glob of the item files (TFRecord of tf.Example, or Parquet).")
  flags.DEFINE_enum(
    "input_format", "auto", [f.value for f in InputFormat], "Input format (auto: by file name)."
  )
  flags.DEFINE_string("output", None, "Prefix of the sharded SID table (PREFIX.manifest.json ...).")
  flags.DEFINE_string("rqvae_dir", None, "The RQ-VAE directory written by train_rqvae (DIR/model).")
  flags.DEFINE_bool("collision_level", False, "Add TIGER's collision index (unique ID per item).")
  flags.DEFINE_integer("batch_size", 2048, "Items per encoding batch (as trainers.assign_sids).")
  flags.DEFINE_integer("num_shards", 4, "Shards of the SID table.")
  flags.DEFINE_bool("overwrite", False, "Replace an existing table at --output (atomically).")
  flags.DEFINE_string("id_feature", feature_spec.ITEM_ID, "Name of the item id feature/column.")
  flags.DEFINE_string(
    "embedding_feature", feature_spec.CONTENT_EMBEDDING, "Name of the embedding feature/column."
  )


def _mix(x: np.ndarray) -> np.ndarray:
  """splitmix64 finaliser over uint64 (wrapping arithmetic): spreads structured ids evenly."""
  x = x.astype(np.uint64, copy=True)
  x ^= x >> np.uint64(30)
  x *= np.uint64(0xBF58476D1CE4E5B9)
  x ^= x >> np.uint64(27)
  x *= np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


def item_shard(item_ids: np.ndarray, num_shards: int) -> np.ndarray:
  """int64[N] shard of each item id (a stable hash, the same on every worker and run)."""
  return (_mix(np.asarray(item_ids, np.int64).view(np.uint64)) % np.uint64(num_shards)).astype(
    np.int64
  )


def sid_bucket(codes: np.ndarray, num_buckets: int) -> np.ndarray:
  """int64[N] bucket of each full SID: equal SIDs always share a bucket."""
  h = np.zeros(len(codes), np.uint64)
  for level in range(codes.shape[1]):
    h = _mix(h ^ codes[:, level].astype(np.uint64))
  return (h % np.uint64(num_buckets)).astype(np.int64)


def split_chunk(chunk: Dict[str, np.ndarray], keys: np.ndarray) -> Iterator[Tuple[int, Dict]]:
  """(key, the rows of `chunk` with that key) for each distinct key."""
  order = np.argsort(keys, kind="stable")
  sorted_keys = keys[order]
  starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]) if len(keys) else []
  bounds = list(starts) + [len(keys)]
  for begin, end in zip(bounds[:-1], bounds[1:]):
    rows = order[begin:end]
    yield int(sorted_keys[begin]), {name: array[rows] for name, array in chunk.items()}


def concat_chunks(chunks: Iterable[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
  chunks = list(chunks)
  return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}


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
      beam.metrics.Metrics.counter(_COUNTERS, f"dead_letter_{reason.value}").inc()
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


class EncodeSids(beam.DoFn):
  """Chunks {item_id, embedding} -> {item_id, codes}: the frozen RQ-VAE, loaded once per worker
  (`setup`), through `semantic_id_encoder.assign_codes`, the one SID loop."""

  def __init__(self, rqvae_dir: str, fingerprint: str, batch_size: int):
    self.rqvae_dir, self.fingerprint, self.batch_size = rqvae_dir, fingerprint, batch_size

  def setup(self):
    model = rqvae.load_rqvae(self.rqvae_dir)
    if rqvae.fingerprint(model) != self.fingerprint:
      raise ValueError(
        f"--rqvae_dir={self.rqvae_dir} changed while the job ran: its fingerprint is "
        f"{rqvae.fingerprint(model)}, the job started with {self.fingerprint}."
      )
    kernel, bias, codebooks = model.sid_weights()
    self._weights = (kernel, bias, np.stack(codebooks), model.config.encoder_activation)

  def process(self, chunk: Dict[str, np.ndarray]):
    kernel, bias, codebooks, activation = self._weights
    codes = semantic_id_encoder.assign_codes(
      chunk["embedding"], kernel, bias, codebooks, activation, self.batch_size
    )
    beam.metrics.Metrics.counter(_COUNTERS, "items_encoded").inc(len(codes))
    yield {"item_id": chunk["item_id"], "codes": codes}


def drop_duplicates(element: Tuple[int, Iterable[Dict]]):
  """(shard, chunks) -> (shard, one chunk without repeated ids) + DEAD records for every row of a
  repeated id (all of a shard's rows meet here: the shard is a function of the id)."""
  shard, chunks = element
  chunk = concat_chunks(chunks)
  _, inverse, counts = np.unique(chunk["item_id"], return_inverse=True, return_counts=True)
  repeated = counts[inverse] > 1
  for item_id, count in zip(chunk["item_id"][repeated], counts[inverse][repeated]):
    beam.metrics.Metrics.counter(_COUNTERS, "dead_letter_duplicate_item_id").inc()
    detail = f"item_id {item_id} appears in {count} rows; none of them gets a SID"
    yield beam.pvalue.TaggedOutput(
      DEAD, dead_letter(DeadLetterReason.DUPLICATE_ITEM_ID, detail, item_id)
    )
  yield shard, {name: array[~repeated] for name, array in chunk.items()}


def with_collision_index(element: Tuple[int, Iterable[Dict]], num_shards: int):
  """(SID bucket, chunks) -> (shard, chunk + collision_index) pieces: TIGER's index numbers the
  items of each full SID by ascending item id (every item of a SID is in this bucket)."""
  _, chunks = element
  chunk = concat_chunks(chunks)
  order = np.argsort(chunk["item_id"], kind="stable")
  chunk = {name: array[order] for name, array in chunk.items()}
  chunk["collision_index"] = sid_collisions.collision_index(chunk["codes"])
  yield from split_chunk(chunk, item_shard(chunk["item_id"], num_shards))


class WriteShard(beam.DoFn):
  """(shard, chunks) -> writes PREFIX-RUN-SSSSS-of-NNNNN.npz (sorted by item id, atomically, so a
  retried bundle rewrites the same bytes) and emits its manifest entry."""

  def __init__(self, prefix: str, run_id: str, num_shards: int, meta: Dict[str, Any]):
    self.prefix, self.run_id, self.num_shards, self.meta = prefix, run_id, num_shards, meta

  def process(self, element: Tuple[int, Iterable[Dict]]):
    shard, chunks = element
    chunk = concat_chunks(chunks)
    order = np.argsort(chunk["item_id"], kind="stable")
    table = sid_table.make_table(
      chunk["item_id"][order],
      chunk["codes"][order],
      fingerprint=self.meta["fingerprint"],
      codebook_size=self.meta["codebook_size"],
      collision_index=chunk["collision_index"][order] if "collision_index" in chunk else None,
      extra={"shard": shard, "num_shards": self.num_shards, "run_id": self.run_id},
    )
    path = sid_table.shard_file_name(self.prefix, self.run_id, shard, self.num_shards)
    sid_table.write_sid_table(path, table)
    coll = table.collision_index
    yield {
      "shard": shard,
      "path": os.path.basename(path),
      "n_items": int(len(table.item_ids)),
      "checksum": table.manifest["checksum"],
      "collision_level_size": sid_collisions.collision_level_size(coll) if coll is not None else 0,
    }


def run_files(prefix: str) -> Dict[str, List[str]]:
  """{run id: its files} of the shard and dead-letter files next to `prefix`."""
  base = re.escape(os.path.basename(prefix))
  pattern = re.compile(
    rf"{base}-([0-9a-f]{{12}})(-\d{{5}}-of-\d{{5}}\.npz|\.dead_letter-\d{{5}}-of-\d{{5}}\.jsonl)"
  )
  out: Dict[str, List[str]] = {}
  for path in tf.io.gfile.glob(prefix + "-*"):
    match = pattern.fullmatch(os.path.basename(path))
    if match:
      out.setdefault(match.group(1), []).append(path)
  return out


def commit(shards, dead_counts, dead_files, prefix: str, run_id: str, meta: Dict[str, Any]):
  """Writes PREFIX.manifest.json (after every shard and dead-letter file: they are this step's
  inputs), then deletes the files of other runs at PREFIX (the replaced table, failed runs)."""
  shards = sorted(shards, key=lambda s: s["shard"])
  by_reason = dict(sorted((reason, int(count)) for reason, count in dead_counts))
  manifest = dict(
    meta,
    run_id=run_id,
    n_items=sum(s["n_items"] for s in shards),
    shards=[{k: s[k] for k in ("path", "n_items", "checksum")} for s in shards],
    dead_letter={
      "count": sum(by_reason.values()),
      "by_reason": by_reason,
      "files": sorted(os.path.basename(f) for f in dead_files),
    },
  )
  if meta["has_collision_index"]:
    manifest["collision_level_size"] = max([s["collision_level_size"] for s in shards], default=0)
  sid_table.write_sharded_manifest(prefix, manifest)
  for other, paths in run_files(prefix).items():
    if other != run_id:
      for path in paths:
        tf.io.gfile.remove(path)
  yield manifest


def _read(pipeline, pattern: str, fmt: InputFormat, parse_args: Tuple, batch_size: int):
  files = pipeline | "Pattern" >> beam.Create([pattern])
  if fmt is InputFormat.PARQUET:
    rows = files | "ReadParquet" >> beam.io.ReadAllFromParquetBatched(with_filename=True)
    parser = ParseArrowTables(*parse_args, chunk_rows=batch_size)
  else:
    records = files | "ReadTFRecord" >> beam.io.ReadAllFromTFRecord(with_filename=True)
    rows = records | "Batch" >> beam.BatchElements(batch_size, batch_size)
    parser = ParseExamples(*parse_args, chunk_rows=batch_size)
  return rows | "Parse" >> beam.ParDo(parser).with_outputs(DEAD, main="rows")


def build_pipeline(
  pipeline,
  pattern: str,
  fmt: InputFormat,
  prefix: str,
  rqvae_dir: str,
  meta: Dict[str, Any],
  run_id: str,
  num_shards: int,
  batch_size: int,
  collision_level: bool,
  id_key: str = feature_spec.ITEM_ID,
  emb_key: str = feature_spec.CONTENT_EMBEDDING,
):
  """Adds the SID assignment to `pipeline` (see the module docstring); returns the PCollection of
  the one manifest."""
  parsed = _read(pipeline, pattern, fmt, (meta["input_dim"], id_key, emb_key), batch_size)
  codes = parsed.rows | "Encode" >> beam.ParDo(
    EncodeSids(rqvae_dir, meta["fingerprint"], batch_size)
  )
  unique = (
    codes
    | "ByItemShard" >> beam.FlatMap(lambda c: split_chunk(c, item_shard(c["item_id"], num_shards)))
    | "GroupItems" >> beam.GroupByKey()
    | "DropDuplicates" >> beam.FlatMap(drop_duplicates).with_outputs(DEAD, main="chunks")
  )
  if collision_level:
    by_sid = lambda kv: split_chunk(kv[1], sid_bucket(kv[1]["codes"], num_shards))  # noqa: E731
    by_shard = (
      unique.chunks
      | "BySid" >> beam.FlatMap(by_sid)
      | "GroupSids" >> beam.GroupByKey()
      | "CollisionIndex" >> beam.FlatMap(with_collision_index, num_shards)
      | "GroupShards" >> beam.GroupByKey()
    )  # fmt: skip
  else:
    by_shard = unique.chunks | "AsGroups" >> beam.MapTuple(lambda shard, chunk: (shard, [chunk]))
  shards = by_shard | "WriteShards" >> beam.ParDo(WriteShard(prefix, run_id, num_shards, meta))
  dead = (parsed[DEAD], unique[DEAD]) | "DeadLetters" >> beam.Flatten()
  dead_files = (
    dead
    | "DeadJson" >> beam.Map(lambda r: json.dumps(r, sort_keys=True))
    | "WriteDead" >> beam.io.WriteToText(f"{prefix}-{run_id}.dead_letter", ".jsonl")
  )
  dead_counts = (
    dead
    | "Reasons" >> beam.Map(lambda r: r["reason"])
    | "CountReasons" >> beam.combiners.Count.PerElement()
    | "ReasonList" >> beam.combiners.ToList()
  )
  return (
    shards
    | "ShardList" >> beam.combiners.ToList()
    | "Commit"
    >> beam.FlatMap(
      commit,
      beam.pvalue.AsSingleton(dead_counts),
      beam.pvalue.AsList(dead_files),
      prefix=prefix,
      run_id=run_id,
      meta=meta,
    )
  )


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


def load_rqvae(rqvae_dir: str) -> Tuple[str, rqvae.RQVAE]:
  """(the model directory, the RQ-VAE) of `--rqvae_dir` (train_rqvae's DIR or DIR/model)."""
  nested = os.path.join(rqvae_dir, "model")
  if not tf.io.gfile.exists(os.path.join(rqvae_dir, rqvae.CONFIG_FILE)) and tf.io.gfile.isdir(
    nested
  ):
    rqvae_dir = nested
  try:
    return rqvae_dir, rqvae.load_rqvae(rqvae_dir)
  except rqvae.RQVAEFormatError as e:
    raise app.UsageError(f"--rqvae_dir={rqvae_dir}: {e}") from e


def check_output(prefix: str, overwrite: bool) -> None:
  """Refuses an existing table at `prefix` unless `overwrite`, and a prefix that is a folder."""
  if tf.io.gfile.isdir(prefix):
    raise app.UsageError(
      f"--output={prefix} is a folder; pass a file prefix inside it, e.g. {prefix}/sids."
    )
  manifest = prefix + sid_table.MANIFEST_SUFFIX
  if tf.io.gfile.exists(manifest) and not overwrite:
    raise FileExistsError(
      f"--output={prefix} already holds a SID table ({manifest}); pass --overwrite to replace it "
      "(the old table stays readable until the new one is complete), or choose another prefix."
    )


def pipeline_args(argv: Sequence[str], known: Iterable[str]) -> List[str]:
  """`argv` with every flag this process does not define moved behind `--`, where absl leaves it
  for Beam (`--runner=...`, `--direct_num_workers 2`)."""
  known = set(known) | {"help", "helpshort", "helpfull", "helpxml"}
  ours, beams = [argv[0]], []
  args = list(argv[1:])
  while args:
    arg = args.pop(0)
    if arg == "--":
      beams += args
      break
    name = arg.lstrip("-").split("=", 1)[0]
    if not arg.startswith("-") or name in known or (name[:2] == "no" and name[2:] in known):
      ours.append(arg)
      continue
    beams.append(arg)
    if "=" not in arg and args and not args[0].startswith("-"):
      beams.append(args.pop(0))
  return ours + (["--", *beams] if beams else [])


def run(
  pattern: str, prefix: str, rqvae_dir: str, beam_args: Sequence[str], **options
) -> Dict[str, Any]:
  """Runs the pipeline (blocking) and returns its manifest; `options`: input_format, num_shards,
  batch_size, collision_level, overwrite, id_feature, embedding_feature (the flags)."""
  fmt, files = resolve_format(pattern, options.get("input_format", "auto"))
  check_output(prefix, options.get("overwrite", False))
  model_dir, model = load_rqvae(rqvae_dir)
  config = model.config
  meta = {
    "fingerprint": rqvae.fingerprint(model),
    "num_levels": config.num_levels,
    "codebook_size": config.codebook_size,
    "input_dim": config.input_dim,
    "has_collision_index": bool(options.get("collision_level", False)),
    "num_shards": options.get("num_shards", 4),
    "rqvae_dir": os.path.abspath(model_dir),
    "input": pattern,
    "input_format": fmt.value,
    "input_files": len(files),
  }
  project_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
  if project_root not in paths:  # So local multi-process workers import this project.
    os.environ["PYTHONPATH"] = os.pathsep.join([project_root, *paths])
  run_id = uuid.uuid4().hex[:12]
  beam_args = list(beam_args)
  if not any(a.startswith("--default_sdk_harness_log_level") for a in beam_args):
    beam_args.append("--default_sdk_harness_log_level=WARNING")
  try:
    _run_pipeline(
      pipeline_options.PipelineOptions(beam_args), pattern, fmt, prefix, meta, run_id, options
    )
  except BaseException:
    remove_failed_run(prefix, run_id)
    raise
  return sid_table.read_manifest(prefix)


def _run_pipeline(beam_options, pattern, fmt, prefix, meta, run_id, options) -> None:
  with beam.Pipeline(options=beam_options) as pipeline:
    build_pipeline(
      pipeline, pattern, fmt, prefix, meta["rqvae_dir"], meta, run_id, meta["num_shards"],
      options.get("batch_size", 2048), meta["has_collision_index"],
      options.get("id_feature", feature_spec.ITEM_ID),
      options.get("embedding_feature", feature_spec.CONTENT_EMBEDDING),
    )  # fmt: skip


def remove_failed_run(prefix: str, run_id: str) -> None:
  """Deletes the files of run `run_id` at `prefix` (and Beam's temp folders of it), unless the
  manifest already names that run (then it is the table)."""
  manifest = prefix + sid_table.MANIFEST_SUFFIX
  if tf.io.gfile.exists(manifest) and sid_table.read_manifest(prefix).get("run_id") == run_id:
    return
  for path in run_files(prefix).get(run_id, []):
    tf.io.gfile.remove(path)
  folder, base = os.path.split(prefix)
  for path in tf.io.gfile.glob(os.path.join(folder or ".", f"beam-temp-{base}-{run_id}*")):
    tf.io.gfile.rmtree(path)


def main(argv):
  for name in ("input", "output", "rqvae_dir"):
    if not FLAGS[name].value:
      raise app.UsageError(f"--{name} is required.")
  for name in ("batch_size", "num_shards"):
    cli_value = FLAGS[name].value
    if cli_value <= 0:
      raise app.UsageError(f"--{name} must be positive. Received: --{name}={cli_value}")
  logging.set_verbosity(logging.WARNING)
  start = time.perf_counter()
  manifest = run(
    FLAGS.input,
    FLAGS.output,
    FLAGS.rqvae_dir,
    argv[1:],
    input_format=FLAGS.input_format,
    num_shards=FLAGS.num_shards,
    batch_size=FLAGS.batch_size,
    collision_level=FLAGS.collision_level,
    overwrite=FLAGS.overwrite,
    id_feature=FLAGS.id_feature,
    embedding_feature=FLAGS.embedding_feature,
  )
  seconds = time.perf_counter() - start
  table = sid_table.read_sid_table(FLAGS.output, expected_fingerprint=manifest["fingerprint"])
  stats = rqvae_metrics.sid_stats(table.codes, manifest["codebook_size"])
  stats.update(
    n_items=manifest["n_items"],
    dead_letter=manifest["dead_letter"],
    seconds=seconds,
    items_per_second=manifest["n_items"] / max(seconds, 1e-9),
    fingerprint=manifest["fingerprint"],
  )
  io_utils.write_json(FLAGS.output + STATS_SUFFIX, stats)
  dead = manifest["dead_letter"]
  print(
    f"wrote {FLAGS.output}{sid_table.MANIFEST_SUFFIX}: {manifest['n_items']:,} items in "
    f"{len(manifest['shards'])} shards, L={manifest['num_levels']}, "
    f"K={manifest['codebook_size']}, unique-SID fraction {stats['unique_sid_fraction']:.3f}, "
    f"{dead['count']:,} rows in the dead-letter output {dead['by_reason']} "
    f"({stats['items_per_second']:,.0f} items/s); stats: {FLAGS.output}{STATS_SUFFIX}"
  )


if __name__ == "__main__":
  define_flags()
  sys.argv = pipeline_args(sys.argv, FLAGS)
  cli.run(main)
