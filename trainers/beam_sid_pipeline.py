"""The Beam SID assignment's transforms: encode, shard by item id, collision index, write, commit.

The middle of `trainers.beam_assign_sids` (its docstring describes the whole job). Shards and SID
buckets are stable hashes (`item_shard`, `sid_bucket`), the same on every worker and run, so all
rows of an item id meet in one shard (repeated ids are found there) and all items of one full SID
meet in one bucket (TIGER's collision index is computed across shards). `commit` writes the
manifest last, after every shard and dead-letter file, and removes other runs' files.
"""

import json
import os
import re
from typing import Any, Dict, Iterable, Iterator, List, Tuple

import numpy as np
import tensorflow as tf

from features import feature_spec, sid_table
from model import rqvae, semantic_id_encoder, sid_collisions
from trainers import beam_items
from trainers.beam_items import beam  # Beam, behind beam_items' clear ImportError.


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
    beam.metrics.Metrics.counter(beam_items.COUNTERS, "items_encoded").inc(len(codes))
    yield {"item_id": chunk["item_id"], "codes": codes}


def drop_duplicates(element: Tuple[int, Iterable[Dict]]):
  """(shard, chunks) -> (shard, one chunk without repeated ids) + DEAD records for every row of a
  repeated id (all of a shard's rows meet here: the shard is a function of the id)."""
  shard, chunks = element
  chunk = concat_chunks(chunks)
  _, inverse, counts = np.unique(chunk["item_id"], return_inverse=True, return_counts=True)
  repeated = counts[inverse] > 1
  for item_id, count in zip(chunk["item_id"][repeated], counts[inverse][repeated]):
    beam.metrics.Metrics.counter(beam_items.COUNTERS, "dead_letter_duplicate_item_id").inc()
    detail = f"item_id {item_id} appears in {count} rows; none of them gets a SID"
    yield beam.pvalue.TaggedOutput(
      beam_items.DEAD,
      beam_items.dead_letter(beam_items.DeadLetterReason.DUPLICATE_ITEM_ID, detail, item_id),
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


def build_pipeline(
  pipeline,
  pattern: str,
  fmt: beam_items.InputFormat,
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
  parsed = beam_items.read_items(
    pipeline, pattern, fmt, (meta["input_dim"], id_key, emb_key), batch_size
  )
  codes = parsed.rows | "Encode" >> beam.ParDo(
    EncodeSids(rqvae_dir, meta["fingerprint"], batch_size)
  )
  unique = (
    codes
    | "ByItemShard" >> beam.FlatMap(lambda c: split_chunk(c, item_shard(c["item_id"], num_shards)))
    | "GroupItems" >> beam.GroupByKey()
    | "DropDuplicates" >> beam.FlatMap(drop_duplicates).with_outputs(beam_items.DEAD, main="chunks")
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
  dead = (parsed[beam_items.DEAD], unique[beam_items.DEAD]) | "DeadLetters" >> beam.Flatten()
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
